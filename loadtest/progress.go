package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// progress prints the recorder's state every period: rewriting one line on
// a terminal, one plain line per period otherwise (a log, a CI job).
type progress struct {
	w      io.Writer
	tty    bool
	rec    *Recorder
	period time.Duration
	limit  time.Duration // bounds the loop with the run's own bound
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// run samples and prints until ctx ends, then samples once more so that the
// timeline covers the whole run; a last window shorter than half a period
// is left out, as its rates would be mostly noise.
func (p *progress) run(ctx context.Context) {
	ticker := time.NewTicker(p.period)
	defer ticker.Stop()
	var last Sample
	lastAt := time.Now()
	for range int(p.limit/p.period) + 1 {
		select {
		case <-ctx.Done():
			if now := time.Now(); now.Sub(lastAt) >= p.period/2 {
				last = p.rec.Sample(now)
			}
			p.print(last)
			if p.tty {
				fmt.Fprintln(p.w)
			}
			return
		case now := <-ticker.C:
			last, lastAt = p.rec.Sample(now), now
			p.print(last)
		}
	}
}

func (p *progress) print(s Sample) {
	line := formatProgress(s, p.rec.Players(outCreated), p.rec.Players(outMatched), p.rec.Players(outAssigned))
	if p.tty {
		// Return to the line's start and clear it.
		fmt.Fprint(p.w, "\r\x1b[K"+line)
		return
	}
	fmt.Fprintln(p.w, line)
}

// formatProgress renders one progress line: players queued, matched and
// assigned so far; rates and percentiles over the last period.
func formatProgress(s Sample, queued, matched, assigned int64) string {
	return fmt.Sprintf("%6.1fs  queued %s  matched %s  assigned %s  in flight %s  created %s/s  assigned %s/s  p50 %s  p99 %s  errors %s",
		s.T, thousands(queued), thousands(matched), thousands(assigned), thousands(s.InFlight),
		thousands(int64(s.CreatedPerS+0.5)), thousands(int64(s.AssignedPerS+0.5)),
		fmtMS(s.P50MS), fmtMS(s.P99MS), thousands(s.Errors))
}

// thousands writes n with comma separators: 12,345.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// fmtMS renders milliseconds with precision that suits their size.
func fmtMS(ms float64) string {
	switch {
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
	case ms < 100:
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	case ms < 10000:
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	}
	return strconv.FormatFloat(ms/1000, 'f', 1, 64) + "s"
}

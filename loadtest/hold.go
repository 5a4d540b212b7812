package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/quickmatch/quickmatch/contracts"
)

// HoldReport is the outcome of a hold run: the memory a front spends per
// held long-poll, and how fast it answers them all at once.
type HoldReport struct {
	Requested   int    `json:"requested"`
	Created     int64  `json:"created"`
	Sent        int64  `json:"sent"`     // polls written to the front
	Held        int64  `json:"held"`     // polls the front reported waiting at once
	Answered    int64  `json:"answered"` // polls answered after the wake
	Early       int64  `json:"answered_before_wake"`
	SourceAddrs int    `json:"source_addrs"`
	Wake        string `json:"wake"`
	// Stream says the connections held were ticket streams, not polls.
	Stream bool `json:"stream,omitempty"`

	FrontPID            int   `json:"front_pid,omitempty"`
	FrontOpenFilesLimit int64 `json:"front_open_files_limit,omitempty"`
	// RSS of the front: before any ticket, with the tickets created and
	// no poll held, and with every poll held.
	RSSBeforeKiB  int64   `json:"rss_before_kib,omitempty"`
	RSSCreatedKiB int64   `json:"rss_created_kib,omitempty"`
	RSSHoldingKiB int64   `json:"rss_holding_kib,omitempty"`
	PerPollKiB    float64 `json:"rss_per_poll_kib,omitempty"`
	// The front's Go heap and stacks in use (from its /metrics), with the
	// tickets created and while holding: memory the process uses, without
	// the garbage and free pages that RSS also counts.
	GoMemCreatedKiB int64   `json:"go_mem_created_kib,omitempty"`
	GoMemHoldingKiB int64   `json:"go_mem_holding_kib,omitempty"`
	GoMemPerPollKiB float64 `json:"go_mem_per_poll_kib,omitempty"`
	// FrontGoroutines is the front's go_goroutines while holding.
	FrontGoroutines float64 `json:"front_goroutines,omitempty"`

	CreateS float64 `json:"create_s"`
	HoldS   float64 `json:"hold_s"` // from the first poll sent to all held
	// WakeAllMS is from the wake (the signal, or the first cancel) to the
	// last answer read; WakeLatency is per poll from the wake.
	WakeAllMS   float64 `json:"wake_all_ms"`
	WakeLatency Latency `json:"wake_latency"`

	Errors map[string]int64 `json:"errors"`
}

// holdFilesMargin is the files a process needs beyond one per held poll.
const holdFilesMargin = 256

// runHold is the hold mode. Its tickets have skills 1,000 apart, so that no
// matcher pairs them whatever its window: they stay searching and their
// polls stay held until the wake.
func runHold(ctx context.Context, c *Config, stdout io.Writer) (*Report, error) {
	n := c.Hold
	nofile, err := raiseOpenFiles()
	if err != nil {
		return nil, err
	}
	if need := uint64(n + holdFilesMargin); nofile < need {
		return nil, fmt.Errorf("holding %d polls needs about %d open files, but this process may open %d (its hard limit): lower -hold or raise `ulimit -Hn`", n, need, nofile)
	}
	hr := &HoldReport{Requested: n, Wake: c.Wake, Stream: c.HoldStream, FrontPID: c.FrontPID, Errors: map[string]int64{}}
	if c.FrontPID > 0 {
		if hr.FrontOpenFilesLimit, err = procOpenFilesLimit(c.FrontPID); err != nil {
			return nil, err
		}
		if hr.FrontOpenFilesLimit < int64(n+64) {
			return nil, fmt.Errorf("the front (pid %d) may open %d files, too few to hold %d polls: start it under a higher `ulimit -n`", c.FrontPID, hr.FrontOpenFilesLimit, n)
		}
	}
	hr.SourceAddrs = c.SourceAddrs
	if hr.SourceAddrs == 0 {
		// About 28k ephemeral ports per source address and destination.
		hr.SourceAddrs = (n + 24_999) / 25_000
	}
	u, err := url.Parse(c.Front)
	if err != nil {
		return nil, fmt.Errorf("parsing -front: %w", err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("hold mode speaks plain HTTP/1.1; -front must be http://")
	}
	hostport := u.Host
	if u.Port() == "" {
		hostport = net.JoinHostPort(u.Hostname(), "80")
	}

	tr := newTransport(1, 256)
	defer tr.CloseIdleConnections()
	client := newClient(tr, c.Fronts, c.Front)
	if err := client.authenticate(c.AuthSecret); err != nil {
		return nil, err
	}
	if err := checkLive(ctx, client, c.Front); err != nil {
		return nil, err
	}
	start := time.Now()
	meter := startCPUMeter()
	rss := func() int64 {
		if c.FrontPID <= 0 {
			return 0
		}
		kib, err := procRSS(c.FrontPID)
		if err != nil {
			hr.Errors["rss: "+err.Error()]++
		}
		return kib
	}
	var errMu sync.Mutex
	countErr := func(kind string) {
		errMu.Lock()
		hr.Errors[kind]++
		errMu.Unlock()
	}

	hr.RSSBeforeKiB = rss()
	fmt.Fprintf(stdout, "hold: creating %d tickets\n", n)
	phase, cancel := context.WithTimeout(ctx, c.HoldTimeout)
	ids := createHoldTickets(phase, client, c, n, countErr)
	cancel()
	hr.CreateS = time.Since(start).Seconds()
	var created []string
	for _, id := range ids {
		if id != "" {
			created = append(created, id)
		}
	}
	hr.Created = int64(len(created))
	tr.CloseIdleConnections()
	hr.RSSCreatedKiB = rss()
	hr.GoMemCreatedKiB = goMem(ctx, client, c.Front)

	fmt.Fprintf(stdout, "hold: holding %d polls from %d source addresses\n", len(created), hr.SourceAddrs)
	h := &holder{
		hostport: hostport,
		host:     u.Host,
		wait:     2 * c.HoldTimeout,
		stream:   c.HoldStream,
		authorization: func() string {
			if client.tokens == nil {
				return ""
			}
			return "Authorization: Bearer " + client.tokens.service + "\r\n"
		}(),
		dialer:   &spreadDialer{sources: sourceAddrs(hr.SourceAddrs), timeout: 10 * time.Second},
		hist:     newHistogram(),
		countErr: countErr,
	}
	// The polls live until they are answered, or the last phase's bound.
	pollCtx, stopPolls := context.WithTimeout(ctx, 3*c.HoldTimeout+10*time.Second)
	defer stopPolls()
	holdStart := time.Now()
	var polls sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, id := range created {
		sem <- struct{}{} // a few dials at a time, within the listen backlog
		polls.Go(func() { h.poll(pollCtx, id, sem) })
	}
	gauge := `mm_long_polls_waiting{kind="ticket"}`
	if c.HoldStream {
		gauge = `mm_long_polls_waiting{kind="ticket_stream"}`
	}
	held, err := waitHeld(ctx, client, c.Front, gauge, int64(len(created)), c.HoldTimeout)
	if err != nil {
		countErr("metrics: " + err.Error())
	}
	hr.Sent, hr.Held = h.sent.Load(), held
	hr.HoldS = time.Since(holdStart).Seconds()
	sleep(ctx, time.Second) // let the front settle before its memory is read
	hr.RSSHoldingKiB = rss()
	hr.GoMemHoldingKiB = goMem(ctx, client, c.Front)
	if body, err := client.GetBody(ctx, c.Front, "/metrics"); err == nil {
		hr.FrontGoroutines, _ = metricValue(body, "go_goroutines")
	}
	if hr.Held > 0 && hr.RSSHoldingKiB > 0 {
		hr.PerPollKiB = float64(hr.RSSHoldingKiB-hr.RSSCreatedKiB) / float64(hr.Held)
	}
	if hr.Held > 0 && hr.GoMemHoldingKiB > 0 && hr.GoMemCreatedKiB > 0 {
		hr.GoMemPerPollKiB = float64(hr.GoMemHoldingKiB-hr.GoMemCreatedKiB) / float64(hr.Held)
	}

	fmt.Fprintf(stdout, "hold: %d held; waking them (%s)\n", hr.Held, c.Wake)
	h.wakeAt.Store(time.Now().UnixNano())
	switch c.Wake {
	case "sigterm":
		if err := syscall.Kill(c.FrontPID, syscall.SIGTERM); err != nil {
			return nil, fmt.Errorf("signalling the front: %w", err)
		}
	case "cancel":
		phase, cancel := context.WithTimeout(ctx, c.HoldTimeout)
		cancelHoldTickets(phase, client, created, countErr)
		cancel()
	}
	done := make(chan struct{})
	go func() { polls.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(c.HoldTimeout):
		stopPolls()
		<-done
	}
	hr.Answered, hr.Early = h.answered.Load(), h.early.Load()
	if last := h.lastAnswer.Load(); last > 0 {
		hr.WakeAllMS = float64(last-h.wakeAt.Load()) / 1e6
	}
	hr.WakeLatency = summarize(h.hist)

	rep := newReport(c, start)
	rep.Hold = hr
	rep.Generator, _ = meter.stop()
	rep.Failures = append(rep.Failures, hr.check()...)
	return rep, nil
}

// check lists what kept the run from holding and waking every poll.
func (hr *HoldReport) check() []string {
	var fails []string
	if hr.Created < int64(hr.Requested) {
		fails = append(fails, fmt.Sprintf("created %d of %d tickets", hr.Created, hr.Requested))
	}
	if hr.Held < hr.Created {
		fails = append(fails, fmt.Sprintf("the front held %d of %d polls at once", hr.Held, hr.Created))
	}
	if hr.Answered < hr.Sent {
		fails = append(fails, fmt.Sprintf("%d of %d polls were answered after the wake", hr.Answered, hr.Sent))
	}
	var errs int64
	for _, n := range hr.Errors {
		errs += n
	}
	if errs > 0 {
		fails = append(fails, fmt.Sprintf("%d errors", errs))
	}
	return fails
}

// createHoldTickets creates n tickets, a few at a time, and returns their
// ids by index; a failed create leaves "".
func createHoldTickets(ctx context.Context, client *Client, c *Config, n int, countErr func(string)) []string {
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(128, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				req := &contracts.TicketRequest{Queue: c.Queue, Players: []contracts.Player{{
					ID:    fmt.Sprintf("%s-h%d", c.RunID, i),
					Skill: float64(i) * 1000,
				}}}
				t, err := client.CreateOnce(ctx, client.Front(0), req)
				if err != nil {
					countErr(errorKind(err))
					continue
				}
				ids[i] = t.ID
			}
		})
	}
	wg.Wait()
	return ids
}

func cancelHoldTickets(ctx context.Context, client *Client, ids []string, countErr func(string)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(128, len(ids)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) || ctx.Err() != nil {
					return
				}
				if _, err := client.CancelTicket(ctx, client.Front(0), ids[i]); err != nil {
					countErr(errorKind(err))
				}
			}
		})
	}
	wg.Wait()
}

// holder holds long-polls over raw connections, one goroutine each: far
// lighter than http.Transport's three per connection, so that the
// generator's own memory does not limit how many it holds.
type holder struct {
	hostport string
	host     string
	// stream holds a ticket stream rather than a poll.
	stream bool
	// authorization is the request's Authorization line, with its CRLF,
	// or empty.
	authorization string
	wait          time.Duration
	dialer        *spreadDialer
	countErr      func(string)

	sent       atomic.Int64
	answered   atomic.Int64
	early      atomic.Int64
	wakeAt     atomic.Int64 // unix ns; 0 until the wake
	lastAnswer atomic.Int64 // unix ns

	mu   sync.Mutex
	hist *hdrhistogram.Histogram // from the wake to each answer
}

// poll dials, sends the long-poll, releases its slot in sem, and waits for
// the answer.
func (h *holder) poll(ctx context.Context, id string, sem <-chan struct{}) {
	released := false
	release := func() {
		if !released {
			released = true
			<-sem
		}
	}
	defer release()
	conn, err := h.dialer.DialContext(ctx, "tcp", h.hostport)
	if err != nil {
		h.countErr("hold dial: " + transportCode(err))
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	target := "/v1/tickets/" + url.PathEscape(id) + "?wait=" + h.wait.String() + "&after=1"
	if h.stream {
		// Answered at once with the stream's headers; the body ends
		// after the cancel's event, which is the answer timed.
		target = "/v1/tickets/" + url.PathEscape(id) + "/events?after=1"
	}
	req := "GET " + target + " HTTP/1.1\r\nHost: " + h.host + "\r\nUser-Agent: quickmatch-loadtest\r\n" + h.authorization + "\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		h.countErr("hold write: " + transportCode(err))
		return
	}
	h.sent.Add(1)
	release()
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 2048), nil)
	if err != nil {
		if ctx.Err() == nil {
			h.countErr("hold read: " + transportCode(err))
		}
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	now := time.Now().UnixNano()
	if err != nil || resp.StatusCode != http.StatusOK {
		h.countErr(fmt.Sprintf("hold answer: %d", resp.StatusCode))
		return
	}
	wake := h.wakeAt.Load()
	if wake == 0 {
		h.early.Add(1)
		return
	}
	h.answered.Add(1)
	for {
		last := h.lastAnswer.Load()
		if now <= last || h.lastAnswer.CompareAndSwap(last, now) {
			break
		}
	}
	h.mu.Lock()
	recordDuration(h.hist, time.Duration(now-wake))
	h.mu.Unlock()
}

// waitHeld waits until the front reports every poll waiting, or timeout; it returns the most the front reported at once.
// The gauge appears with the first held poll, so its absence reads as 0.
func waitHeld(ctx context.Context, client *Client, front, gauge string, want int64, timeout time.Duration) (int64, error) {
	deadline := time.Now().Add(timeout)
	var (
		best    int64
		lastErr error
		seen    bool
	)
	for time.Now().Before(deadline) {
		body, err := client.GetBody(ctx, front, "/metrics")
		if err == nil {
			if v, ok := metricValue(body, gauge); ok {
				seen = true
				best = max(best, int64(v))
			}
			if best >= want {
				return best, nil
			}
		} else {
			lastErr = err
		}
		if !sleep(ctx, 100*time.Millisecond) {
			break
		}
	}
	switch {
	case lastErr != nil && best == 0:
		return 0, lastErr
	case !seen:
		return 0, fmt.Errorf("the front's /metrics has no mm_long_polls_waiting{kind=\"ticket\"}")
	}
	return best, nil
}

// goMem is the Go heap and stacks a front has in use, in KiB, from its
// /metrics; 0 if it does not say.
func goMem(ctx context.Context, client *Client, front string) int64 {
	body, err := client.GetBody(ctx, front, "/metrics")
	if err != nil {
		return 0
	}
	heap, ok1 := metricValue(body, "go_memstats_heap_inuse_bytes")
	stack, ok2 := metricValue(body, "go_memstats_stack_inuse_bytes")
	if !ok1 || !ok2 {
		return 0
	}
	return int64(heap+stack) / 1024
}

// metricValue finds an unlabelled or exactly labelled sample in a
// Prometheus text exposition.
func metricValue(body []byte, series string) (float64, bool) {
	for line := range strings.SplitSeq(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

func writeHoldText(w io.Writer, h *HoldReport) {
	fmt.Fprintf(w, "polls\trequested %s, created %s, sent %s, held at once %s, answered after the wake %s (before: %d)\n",
		thousands(int64(h.Requested)), thousands(h.Created), thousands(h.Sent), thousands(h.Held), thousands(h.Answered), h.Early)
	fmt.Fprintf(w, "source addresses\t%d\n", h.SourceAddrs)
	if h.RSSHoldingKiB > 0 {
		fmt.Fprintf(w, "front RSS\tbefore %s KiB, tickets created %s KiB, holding %s KiB\n",
			thousands(h.RSSBeforeKiB), thousands(h.RSSCreatedKiB), thousands(h.RSSHoldingKiB))
		fmt.Fprintf(w, "per held poll\t%.1f KiB\n", h.PerPollKiB)
	}
	if h.GoMemHoldingKiB > 0 {
		fmt.Fprintf(w, "front Go heap+stacks\ttickets created %s KiB, holding %s KiB: %.1f KiB per held poll\n",
			thousands(h.GoMemCreatedKiB), thousands(h.GoMemHoldingKiB), h.GoMemPerPollKiB)
	}
	if h.FrontGoroutines > 0 {
		fmt.Fprintf(w, "front goroutines\t%s while holding\n", thousands(int64(h.FrontGoroutines)))
	}
	fmt.Fprintf(w, "phases\tcreate %.1f s, hold %.1f s\n", h.CreateS, h.HoldS)
	fmt.Fprintf(w, "wake (%s)\tall answered %s after it; per poll p50 %s p99 %s max %s\n",
		h.Wake, fmtMS(h.WakeAllMS), fmtMS(h.WakeLatency.P50), fmtMS(h.WakeLatency.P99), fmtMS(h.WakeLatency.Max))
	for _, k := range slices.Sorted(maps.Keys(h.Errors)) {
		fmt.Fprintf(w, "  %s\t%d\n", k, h.Errors[k])
	}
}

package main

import (
	"bytes"
	"fmt"
	"image/png"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

func TestParseStatCPU(t *testing.T) {
	// Fields 14 and 15 are utime and stime; the name may hold spaces and parentheses.
	stat := "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 123 456 789"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 3250*time.Millisecond {
		t.Errorf("parseStatCPU = %v, %v; want 3.25s", got, err)
	}
	for _, bad := range []string{"", "42 (x) S 1 2", "42 (x) S 1 2 3 4 5 6 7 8 9 10 x 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) accepted", bad)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	stat := "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n"
	busy, total, err := parseProcStat([]byte(stat))
	// Busy is all but idle (800) and iowait (40): 160 ticks of 1,000.
	if err != nil || busy != 1600*time.Millisecond || total != 10*time.Second {
		t.Errorf("parseProcStat = %v, %v, %v; want 1.6s busy of 10s", busy, total, err)
	}
	if _, _, err := parseProcStat([]byte("intr 1 2 3\n")); err == nil {
		t.Error("parseProcStat accepted a file without the cpu line")
	}
}

func TestProcOfSelf(t *testing.T) {
	pid := os.Getpid()
	if kib, err := procRSS(pid); err != nil || kib <= 0 {
		t.Errorf("procRSS(self) = %d, %v", kib, err)
	}
	if n, err := procOpenFilesLimit(pid); err != nil || n <= 0 {
		t.Errorf("procOpenFilesLimit(self) = %d, %v", n, err)
	}
	if _, err := procCPU(pid); err != nil {
		t.Errorf("procCPU(self): %v", err)
	}
	if _, err := procRSS(-1); err == nil {
		t.Error("procRSS of no process succeeded")
	}
}

func TestMetricValue(t *testing.T) {
	body := []byte(`# HELP mm_long_polls_waiting Long-poll requests held open now.
# TYPE mm_long_polls_waiting gauge
mm_long_polls_waiting{kind="server"} 2
mm_long_polls_waiting{kind="ticket"} 49999
go_goroutines 50123
go_goroutines_extra 1
`)
	tests := []struct {
		series string
		want   float64
		ok     bool
	}{
		{`mm_long_polls_waiting{kind="ticket"}`, 49999, true},
		{`mm_long_polls_waiting{kind="server"}`, 2, true},
		{"go_goroutines", 50123, true},
		{"mm_absent", 0, false},
	}
	for _, tt := range tests {
		got, ok := metricValue(body, tt.series)
		if got != tt.want || ok != tt.ok {
			t.Errorf("metricValue(%s) = %v, %v; want %v, %v", tt.series, got, ok, tt.want, tt.ok)
		}
	}
}

func TestThousands(t *testing.T) {
	tests := map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 1234567: "1,234,567", -45678: "-45,678"}
	for n, want := range tests {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFmtMS(t *testing.T) {
	tests := map[float64]string{0: "0.00ms", 1.234: "1.23ms", 45.67: "45.7ms", 456.7: "457ms", 12345: "12.3s"}
	for ms, want := range tests {
		if got := fmtMS(ms); got != want {
			t.Errorf("fmtMS(%v) = %q, want %q", ms, got, want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	line := formatProgress(Sample{T: 12, CreatedPerS: 1999.6, AssignedPerS: 2001, P50MS: 3.21, P99MS: 18, InFlight: 42, Errors: 1}, 24000, 23950, 23900)
	for _, want := range []string{"12.0s", "queued 24,000", "matched 23,950", "assigned 23,900", "in flight 42",
		"created 2,000/s", "assigned 2,001/s", "p50 3.21ms", "p99 18.0ms", "errors 1"} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %q lacks %q", line, want)
		}
	}
	var buf bytes.Buffer
	if isTerminal(&buf) {
		t.Error("a buffer counts as a terminal")
	}
	now := time.Now()
	p := &progress{w: &buf, rec: NewRecorder(now, now)}
	p.print(Sample{})
	p.print(Sample{})
	if n := strings.Count(buf.String(), "\n"); n != 2 || strings.Contains(buf.String(), "\r") {
		t.Errorf("plain progress %q: want two plain lines", buf.String())
	}
	buf.Reset()
	p.tty = true
	p.print(Sample{})
	if !strings.HasPrefix(buf.String(), "\r\x1b[K") || strings.Contains(buf.String(), "\n") {
		t.Errorf("terminal progress %q: want one rewritten line", buf.String())
	}
}

func TestSourceAddrs(t *testing.T) {
	got := sourceAddrs(3)
	want := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3)}
	if len(got) != 3 {
		t.Fatalf("sourceAddrs(3) = %v", got)
	}
	for i := range want {
		if !got[i].Equal(want[i]) || !got[i].IsLoopback() {
			t.Errorf("source %d = %v, want %v", i, got[i], want[i])
		}
	}
	if n := len(sourceAddrs(1000)); n != 250 {
		t.Errorf("sourceAddrs(1000) gave %d, want at most 250", n)
	}
}

func TestWriteChart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chart.png")
	if err := writeChart(path, "x", []Sample{{T: 1}}); err == nil {
		t.Error("a one-point timeline was drawn")
	}
	tl := []Sample{{T: 1, CreatedPerS: 2000, AssignedPerS: 1990, P50MS: 2, P99MS: 9}, {T: 2, CreatedPerS: 2010, AssignedPerS: 2000, P50MS: 2.5, P99MS: 30}, {T: 3}}
	if err := writeChart(path, "x", tl); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != chartWidth || b.Dy() != 2*panelHeight {
		t.Errorf("chart is %v, want %d×%d", b, chartWidth, 2*panelHeight)
	}
}

// TestOutcomeUnknownIsUnanswered: a create answered 503 outcome_unknown may
// have made its ticket, as one that got no answer may; a 503 unavailable
// made none.
func TestOutcomeUnknownIsUnanswered(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&apiError{Op: "create", Status: 503, Code: contracts.CodeOutcomeUnknown}, true},
		{&apiError{Op: "create", Status: 503, Code: contracts.CodeUnavailable}, false},
		{&apiError{Op: "create", Status: 0, Code: "reset"}, false},
	} {
		if got := outcomeUnknown(fmt.Errorf("try: %w", tc.err)); got != tc.want {
			t.Errorf("outcomeUnknown(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

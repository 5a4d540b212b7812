package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGates(t *testing.T) {
	healthy := func() *PlayersReport {
		return &PlayersReport{
			TargetRate: 1000,
			Tickets:    map[string]int64{"attempted": 1000, "created": 1000, "assigned": 1000},
			Requests:   3000, AssignedPerS: 990,
			TimeToAssign: Latency{P99: 40},
		}
	}
	g := gates{maxErrorRate: 0.001, maxUnassigned: 0, maxP99: 50 * time.Millisecond, minThroughput: 0.95}
	tests := []struct {
		name   string
		change func(*PlayersReport)
		gates  gates
		want   string // a failure mentioning this; "" for a pass
	}{
		{"healthy", func(*PlayersReport) {}, g, ""},
		{"lost", func(r *PlayersReport) { r.Lost = 1 }, g, "1 tickets lost"},
		{"skipped", func(r *PlayersReport) { r.Tickets["skipped"] = 3 }, g, "3 arrivals skipped"},
		{"errors", func(r *PlayersReport) { r.ErrorCount, r.ErrorRate = 4, 4.0/3000 }, g, "error rate"},
		{"errors within bound", func(r *PlayersReport) { r.ErrorCount, r.ErrorRate = 3, 3.0/3000 }, g, ""},
		{"expired", func(r *PlayersReport) { r.Tickets["expired"] = 1 }, g, "expired"},
		{"abandoned", func(r *PlayersReport) { r.Tickets["abandoned"] = 2 }, g, "abandoned"},
		{"unassigned allowed", func(r *PlayersReport) { r.Tickets["abandoned"] = 2 }, gates{maxUnassigned: 1, maxErrorRate: 1}, ""},
		{"slow", func(r *PlayersReport) { r.TimeToAssign.P99 = 51 }, g, "p99"},
		{"no p99 bound", func(r *PlayersReport) { r.TimeToAssign.P99 = 5000 }, gates{maxErrorRate: 1}, ""},
		{"behind", func(r *PlayersReport) { r.AssignedPerS = 900 }, g, "below 95%"},
		{"closed loop has no rate", func(r *PlayersReport) { r.TargetRate, r.AssignedPerS = 0, 1 }, g, ""},
		{"nothing created", func(r *PlayersReport) { r.Tickets = map[string]int64{"attempted": 5} }, gates{maxErrorRate: 1}, "no ticket was created"},
		{"nothing attempted", func(r *PlayersReport) { r.Tickets = map[string]int64{} }, gates{maxErrorRate: 1}, "no ticket was attempted"},
	}
	for _, tt := range tests {
		r := healthy()
		tt.change(r)
		fails := tt.gates.check(r)
		got := strings.Join(fails, "\n")
		switch {
		case tt.want == "" && len(fails) > 0:
			t.Errorf("%s: failures %q, want a pass", tt.name, fails)
		case tt.want != "" && !strings.Contains(got, tt.want):
			t.Errorf("%s: failures %q, want one mentioning %q", tt.name, fails, tt.want)
		}
	}
}

func TestRecorder(t *testing.T) {
	start := time.Unix(100, 0)
	r := NewRecorder(start, start)
	r.Count(outAttempted, 2)
	r.Created(2, start, start.Add(100*time.Millisecond))
	r.Count(outAttempted, 1)
	r.Created(1, start, start.Add(200*time.Millisecond))
	r.Matched(2, start, start.Add(3*time.Millisecond))
	r.Assigned(2, start.Add(396*time.Millisecond), start.Add(400*time.Millisecond))
	r.Error(&apiError{Op: "poll", Code: "timeout", Err: errors.New("x")})
	r.Error(&apiError{Op: "create", Status: 503, Code: "unavailable"})
	r.Error(&apiError{Op: "create", Status: 503, Code: "unavailable"})

	s := r.Sample(start.Add(time.Second))
	if s.CreatedPerS != 3 || s.AssignedPerS != 2 || s.Errors != 3 {
		t.Errorf("first sample %+v: want 3 created/s, 2 assigned/s, 3 errors", s)
	}
	if s.P50MS < 3.9 || s.P50MS > 4.1 {
		t.Errorf("window p50 %v ms, want 4", s.P50MS)
	}
	// The window starts afresh; the totals do not.
	s = r.Sample(start.Add(3 * time.Second))
	if s.CreatedPerS != 0 || s.AssignedPerS != 0 || s.P99MS != 0 || s.T != 3 {
		t.Errorf("second sample %+v: want an empty window at t=3", s)
	}
	snap := r.snapshot()
	if snap.tickets[outCreated] != 2 || snap.players[outCreated] != 3 || snap.players[outAssigned] != 2 {
		t.Errorf("counts: tickets %v players %v", snap.tickets, snap.players)
	}
	if snap.errors["create: 503 unavailable"] != 2 || snap.errors["poll: timeout"] != 1 {
		t.Errorf("errors %v", snap.errors)
	}
	if len(snap.timeline) != 2 || snap.assign.TotalCount() != 1 || snap.match.TotalCount() != 1 {
		t.Errorf("timeline %d samples, %d assigned, %d matched", len(snap.timeline), snap.assign.TotalCount(), snap.match.TotalCount())
	}

	// Arrivals end at 500 ms; what completes afterwards is outside the window.
	r.CloseWindow(start.Add(500 * time.Millisecond))
	r.Created(1, start, start.Add(600*time.Millisecond))
	r.Assigned(1, start, start.Add(700*time.Millisecond))
	rep := playersReport(&Config{Rate: 3}, r.snapshot(), start, start.Add(2*time.Second), 30)
	if rep.Lost != 0 || rep.ErrorCount != 3 || rep.ErrorRate != 0.1 {
		t.Errorf("report: lost %d, errors %d, rate %v", rep.Lost, rep.ErrorCount, rep.ErrorRate)
	}
	if rep.CreatedPerS != 6 || rep.AssignedPerS != 4 || rep.DurationS != 0.5 {
		t.Errorf("created/s %v, assigned/s %v over %v s; want 3 and 2 players in 0.5 s", rep.CreatedPerS, rep.AssignedPerS, rep.DurationS)
	}
}

// TestRecorderWarmup: players who arrive during the warm-up count for the
// outcomes, not for the latency figures; throughput counts what completes
// after the warm-up.
func TestRecorderWarmup(t *testing.T) {
	start := time.Unix(100, 0)
	from := start.Add(2 * time.Second)
	r := NewRecorder(start, from)
	// A warm-up player, slow as a cold suite is, and one assigned within
	// the window.
	r.Created(1, start, start.Add(time.Second))
	r.Matched(1, start, start.Add(time.Second))
	r.Assigned(1, start, start.Add(1500*time.Millisecond))
	r.Created(1, start.Add(time.Second), start.Add(time.Second))
	r.Assigned(1, start.Add(time.Second), from.Add(time.Millisecond))
	// Two measured players, one lost.
	r.Created(1, from, from.Add(time.Millisecond))
	r.Matched(1, from, from.Add(2*time.Millisecond))
	r.Assigned(1, from, from.Add(2*time.Millisecond))
	r.Created(1, from.Add(500*time.Millisecond), from.Add(500*time.Millisecond))
	r.Count(outLost, 1)
	r.CloseWindow(from.Add(time.Second))

	if s := r.Sample(from); s.P99MS < 1400 {
		t.Errorf("window p99 %v ms: the timeline should show the warm-up", s.P99MS)
	}
	rep := playersReport(&Config{Rate: 1}, r.snapshot(), start, from.Add(2*time.Second), 10)
	if rep.Players["created"] != 4 || rep.Players["assigned"] != 3 || rep.Lost != 1 {
		t.Errorf("outcomes %v, lost %d: want every player counted", rep.Players, rep.Lost)
	}
	if rep.TimeToAssign.Count != 1 || rep.TimeToAssign.Max > 3 || rep.TimeToMatch.Count != 1 {
		t.Errorf("time to assign %+v, to match %+v: want the measured player only", rep.TimeToAssign, rep.TimeToMatch)
	}
	if rep.CreatedPerS != 2 || rep.AssignedPerS != 2 || rep.WarmupS != 2 {
		t.Errorf("created/s %v, assigned/s %v after a warm-up of %v s; want 2 and 2 in the 1 s window", rep.CreatedPerS, rep.AssignedPerS, rep.WarmupS)
	}
}

func TestRecorderInFlight(t *testing.T) {
	now := time.Now()
	r := NewRecorder(now, now)
	r.Begin()
	r.Begin()
	r.End()
	r.Begin()
	r.End()
	r.End()
	if r.InFlight() != 0 || r.snapshot().maxInFlight != 2 {
		t.Errorf("in flight %d, max %d; want 0 and 2", r.InFlight(), r.snapshot().maxInFlight)
	}
}

func TestErrorKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&apiError{Op: "create", Status: 409, Code: "player_has_ticket"}, "create: 409 player_has_ticket"},
		{&apiError{Op: "poll", Status: 502}, "poll: 502"},
		{fmt.Errorf("wrapped: %w", &apiError{Op: "poll", Code: "connection refused"}), "poll: connection refused"},
		{errors.New("odd"), "other: transport"},
	}
	for _, tt := range tests {
		if got := errorKind(tt.err); got != tt.want {
			t.Errorf("errorKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&apiError{Op: "create", Code: "connection reset"}, true},
		{&apiError{Op: "create", Code: "timeout"}, true},
		{&apiError{Op: "create", Code: "cancelled"}, false},
		{&apiError{Op: "create", Status: 503, Code: "unavailable"}, true},
		{&apiError{Op: "create", Status: 500, Code: "internal"}, true},
		{&apiError{Op: "create", Status: 409, Code: "player_has_ticket"}, false},
		{&apiError{Op: "create", Status: 400, Code: "bad_request"}, false},
		{errors.New("odd"), false},
	}
	for _, tt := range tests {
		if got := retryable(tt.err); got != tt.want {
			t.Errorf("retryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestReportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	r := &Report{Label: "x", Mode: modePlayers, Players: &PlayersReport{Tickets: map[string]int64{"created": 4}, Lost: 1},
		Failures: []string{"1 tickets lost"}}
	if err := r.write(dir); err != nil {
		t.Fatal(err)
	}
	got, err := readReport(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Players.Lost != 1 || got.Label != "x" {
		t.Errorf("read back %+v", got)
	}
	txt, err := os.ReadFile(filepath.Join(dir, "report.txt"))
	if err != nil || !strings.Contains(string(txt), "FAIL") || !strings.Contains(string(txt), "- 1 tickets lost") {
		t.Errorf("report.txt = %q, %v", txt, err)
	}
}

// TestReportText: the text names every front, and the creates' retries.
func TestReportText(t *testing.T) {
	players := &PlayersReport{Tickets: map[string]int64{}, Players: map[string]int64{"create_unanswered": 3},
		CreatesRetried: 7, CreatesReplayed: 5, CreatesConflicted: 1}
	tests := []struct {
		r    Report
		want []string
	}{
		{Report{Mode: modePlayers, Front: "http://127.0.0.1:8080", Players: players},
			[]string{"against http://127.0.0.1:8080\n", "create unanswered 3", "7 creates retried, 5 answers replayed, 1 answered 409 after a retry"}},
		{Report{Mode: modePlayers, Front: "http://127.0.0.1:8080", Fronts: []string{"http://127.0.0.1:8080", "http://127.0.0.1:8090"}, Players: players},
			[]string{"against http://127.0.0.1:8080, http://127.0.0.1:8090\n"}},
		{Report{Mode: modeHTTP, Front: "http://127.0.0.1:8080", Fronts: []string{"http://127.0.0.1:8080"}, HTTP: &HTTPReport{}},
			[]string{"against http://127.0.0.1:8080\n"}},
	}
	for _, tt := range tests {
		var b strings.Builder
		tt.r.writeText(&b)
		for _, want := range tt.want {
			if !strings.Contains(b.String(), want) {
				t.Errorf("report text lacks %q:\n%s", want, b.String())
			}
		}
	}
}

func TestTable(t *testing.T) {
	dir := t.TempDir()
	write := func(sub string, r *Report) {
		t.Helper()
		if err := r.write(filepath.Join(dir, sub)); err != nil {
			t.Fatal(err)
		}
	}
	players := func(label, suite string, rate, assigned float64, pass bool) *Report {
		return &Report{Label: label, Suite: suite, Mode: modePlayers, Pass: pass, Players: &PlayersReport{
			TargetRate: rate, DurationS: 20, AssignedPerS: assigned, RequestsPerS: 3 * assigned,
			Tickets: map[string]int64{}, TimeToAssign: Latency{P50: 2, P99: 9},
		}}
	}
	write("10-embedded-fixed", players("embedded 2000/s", "embedded", 2000, 2000, true))
	write("20-distributed-fixed", players("distributed 2000/s", "distributed", 2000, 1000, true))
	write("21-distributed-ramp-04000", players("distributed 4000/s", "distributed", 4000, 1500, false))
	write("01-http", &Report{Label: limitHTTPTrivial, Mode: modeHTTP, HTTP: &HTTPReport{Target: "GET /livez", PerS: 30000, Concurrency: 64, DurationS: 5}})
	write("02-create", &Report{Label: limitFrontCreate, Mode: modeHTTP, HTTP: &HTTPReport{Target: "POST /v1/tickets", PerS: 4000, Concurrency: 64, DurationS: 5}})
	write("30-hold", &Report{Mode: modeHold, Pass: true, Hold: &HoldReport{Requested: 100, Held: 100, PerPollKiB: 9.5, Wake: "sigterm"}})
	limits, _ := json.Marshal(map[string]Limit{limitRabbit: {Value: 10000, Unit: "msgs/s", How: "go test -bench"}, limitRedisEval: {Value: 50000, Unit: "ops/s", How: "redis-benchmark"}})
	if err := os.WriteFile(filepath.Join(dir, "limits.json"), limits, 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := printTable(&b, dir); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| embedded 2000/s | 2,000/s × 20 s | 0 | 2,000 |",
		// 6,000 ÷ 30,000 requests/s; no broker nor distributed front in the embedded mode.
		"| embedded 2000/s | — | 0.20 | — | — |",
		// 1,000 ÷ 10,000 msgs/s and ÷ 50,000 EVAL/s.
		"| distributed 2000/s | 0.25 | 0.10 | 0.10 | 0.02 |",
		"| distributed 4000/s | 4,000/s × 20 s | 1,500 |",
		"| rabbitmq | 10,000 msgs/s | go test -bench |",
		"| http_trivial | 30,000 requests/s |",
		"| 100 of 100 |",
		"9.5 KiB",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "distributed 4000/s") != 1 {
		t.Errorf("a ramp step appears outside the ramp table:\n%s", out)
	}
}

func TestTableWithoutReports(t *testing.T) {
	if err := printTable(&strings.Builder{}, t.TempDir()); err == nil {
		t.Error("an empty directory gave a table")
	}
}

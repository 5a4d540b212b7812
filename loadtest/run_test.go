package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runCmd runs the command with args and returns its exit code and output.
func runCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, args, &out, &errOut)
	return code, out.String() + errOut.String()
}

func loadReport(t *testing.T, dir string) *Report {
	t.Helper()
	r, err := readReport(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCountsEveryFate runs players against a fake suite whose tickets are
// assigned, expire, search forever, stay matched, are refused, or are
// created with the answer lost, and checks that each is counted where it
// belongs, in the report and in the outcomes file, and that the lost ones
// fail the run. The players whose answer was lost find their tickets
// through their second create: replayed by a suite that honours the
// Idempotency-Key, a 409 from one that does not.
func TestCountsEveryFate(t *testing.T) {
	tests := []struct {
		name                 string
		ignoreKeys           bool
		replayed, conflicted int64
	}{
		{"keys honoured", false, 2, 0},
		{"keys ignored", true, 0, 2},
	}
	for _, tt := range tests {
		// Not parallel: the chart library's lazy default font is not safe
		// for two runs at once.
		t.Run(tt.name, func(t *testing.T) {
			_, srvs := newFakeFronts(t, &fakeSuite{ignoreKeys: tt.ignoreKeys}, frontHealthy)
			out := t.TempDir()
			outcomes := filepath.Join(out, "outcomes.jsonl")
			code, text := runCmd(t, "-front", srvs[0].URL, "-run-id", "x", "-rate", "200", "-players", "12",
				"-duration", "1s", "-drain", "6s", "-servers", "1", "-game-length", "0", "-regions", "eu-west=10",
				"-max-error-rate", "0.9", "-out", out, "-outcomes", outcomes)
			if code != exitFail {
				t.Fatalf("exit %d, want %d (lost tickets)\n%s", code, exitFail, text)
			}
			r := loadReport(t, out)
			checkFateCounts(t, r)
			p := r.Players
			if p.CreatesRetried != 4 || p.CreatesReplayed != tt.replayed || p.CreatesConflicted != tt.conflicted {
				t.Errorf("creates retried %d, replayed %d, conflicted %d; want 4, %d, %d",
					p.CreatesRetried, p.CreatesReplayed, p.CreatesConflicted, tt.replayed, tt.conflicted)
			}
			checkFateLines(t, readOutcomes(t, outcomes), srvs[0].URL)
		})
	}
}

// checkFateCounts checks the report of TestCountsEveryFate.
func checkFateCounts(t *testing.T, r *Report) {
	t.Helper()
	p := r.Players
	want := map[string]int64{
		"attempted": 12, "created": 10, "create_failed": 2, "create_unanswered": 0,
		"matched": 6, "assigned": 4, "expired": 2, "abandoned": 2, "lost": 2,
	}
	for k, v := range want {
		if p.Tickets[k] != v {
			t.Errorf("tickets %s = %d, want %d (all: %v)", k, p.Tickets[k], v, p.Tickets)
		}
	}
	if p.Lost != 2 || p.LostAt["matched"] != 2 || p.TimeToAssign.Count != 4 {
		t.Errorf("lost %d (%v), assigned in histogram %d; want 2 last seen matched, and 4", p.Lost, p.LostAt, p.TimeToAssign.Count)
	}
	// Every attempt of each refused create, one for each lost answer.
	if p.Errors["create: 503 unavailable"] != 2*createTries || p.ErrorCount != 2*createTries+2 {
		t.Errorf("errors %v: want %d × create: 503 unavailable and 2 lost answers", p.Errors, 2*createTries)
	}
	if r.Pass || !strings.Contains(strings.Join(r.Failures, "\n"), "2 tickets lost") {
		t.Errorf("failures %q, want the lost tickets named", r.Failures)
	}
	if p.Fleet.Servers != 1 {
		t.Errorf("fleet of %d servers, want 1", p.Fleet.Servers)
	}
	if len(r.Fronts) != 1 || r.Front != r.Fronts[0] {
		t.Errorf("front %q, fronts %q: want the one", r.Front, r.Fronts)
	}
}

// checkFateLines checks the outcomes of TestCountsEveryFate: one line per
// player, with the fate, ticket and tries its number gave it.
func checkFateLines(t *testing.T, lines map[string]outcomeLine, front string) {
	t.Helper()
	wantFate := map[fate]struct {
		fate  string
		tries int
	}{
		fateUnavailable: {"create_failed", createTries},
		fateAssigned:    {"assigned", 1},
		fateExpired:     {"expired", 1},
		fateSearching:   {"abandoned", 1},
		fateStuck:       {"lost", 1},
		fateAnswerLost:  {"assigned", 2},
	}
	if len(lines) != 12 {
		t.Errorf("%d outcome lines, want 12", len(lines))
	}
	for n := 1; n <= 12; n++ {
		id := "x-p" + strconv.Itoa(n)
		w := wantFate[fate(n%int(numFates))]
		want := outcomeLine{Players: []string{id}, Ticket: "t-" + id, Fate: w.fate, Front: front, Tries: w.tries}
		if w.fate == "create_failed" {
			want.Ticket = ""
		}
		if got := lines[id]; !reflect.DeepEqual(got, want) {
			t.Errorf("outcome of %s = %+v, want %+v", id, got, want)
		}
	}
}

// readOutcomes reads an outcomes file by each line's first player, and
// fails on a player in two lines.
func readOutcomes(t *testing.T, path string) map[string]outcomeLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]outcomeLine{}
	for raw := range strings.Lines(string(b)) {
		var l outcomeLine
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil || len(l.Players) == 0 {
			t.Fatalf("outcome line %q: %v", raw, err)
		}
		if _, dup := out[l.Players[0]]; dup {
			t.Errorf("player %s in two outcome lines", l.Players[0])
		}
		out[l.Players[0]] = l
	}
	return out
}

func TestRefusesRemoteTargets(t *testing.T) {
	code, text := runCmd(t, "-front", "http://192.0.2.1:8080")
	if code != exitSetup || !strings.Contains(text, "not a loopback address") {
		t.Errorf("exit %d, output %q; want a refusal", code, text)
	}
}

func TestFailsFastWithoutSuite(t *testing.T) {
	code, text := runCmd(t, "-front", "http://127.0.0.1:1", "-duration", "1s")
	if code != exitSetup || !strings.Contains(text, "/livez") {
		t.Errorf("exit %d, output %q; want the unreachable front named", code, text)
	}
}

// TestPipelineAgainstEmbedded runs the pipeline scenario against the real
// embedded suite: every ticket is assigned and none is lost.
func TestPipelineAgainstEmbedded(t *testing.T) {
	url := startEmbedded(t)
	out := t.TempDir()
	code, text := runCmd(t, "-front", url, "-scenario", "pipeline", "-rate", "300", "-duration", "1s",
		"-warmup", "300ms", "-progress", "200ms", "-service-pids", "self="+strconv.Itoa(os.Getpid()), "-out", out)
	if code != exitPass {
		t.Fatalf("exit %d\n%s", code, text)
	}
	r := loadReport(t, out)
	p := r.Players
	if p.Lost != 0 || p.Tickets["created"] < 330 || p.Tickets["assigned"] != p.Tickets["created"] {
		t.Errorf("tickets %v, lost %d: want about 390 created, all assigned", p.Tickets, p.Lost)
	}
	if p.Tickets["created"]%2 != 0 {
		t.Errorf("%d tickets in a 1v1 pipeline: want whole matches", p.Tickets["created"])
	}
	// With no game ending, every match is still on the fleet.
	if p.Fleet.AllocatedAtEnd != p.Tickets["assigned"]/2 {
		t.Errorf("fleet hosts %d matches, want %d", p.Fleet.AllocatedAtEnd, p.Tickets["assigned"]/2)
	}
	// The warm-up's players count for the outcomes only.
	if n := p.TimeToAssign.Count; n >= p.Tickets["assigned"] || n < 250 || p.TimeToAssign.P50 <= 0 || p.TimeToAssign.Max < p.TimeToAssign.P99 {
		t.Errorf("time to assign %+v of %d tickets: want the measured ~300", p.TimeToAssign, p.Tickets["assigned"])
	}
	if len(p.Timeline) < 5 {
		t.Errorf("timeline of %d samples, want one per 200 ms", len(p.Timeline))
	}
	if len(r.Services) != 1 || r.Services[0].CPUSeconds <= 0 || p.ServicesCPUPerPlayerMS <= 0 {
		t.Errorf("services CPU %+v, per player %v ms", r.Services, p.ServicesCPUPerPlayerMS)
	}
	if r.CPU.BusyCores <= 0 {
		t.Errorf("machine CPU %+v: want the busy cores", r.CPU)
	}
	f, err := os.Open(filepath.Join(out, "chart.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("chart.png: %v", err)
	}
}

// TestGamesEndAgainstEmbedded has the fleet poll its allocations and end
// each game, so that a small fleet serves more matches than its capacity.
func TestGamesEndAgainstEmbedded(t *testing.T) {
	url := startEmbedded(t)
	out := t.TempDir()
	code, text := runCmd(t, "-front", url, "-rate", "100", "-players", "80", "-duration", "2s",
		"-skill-stddev", "0", "-regions", "eu-west=10", "-latency-jitter", "0",
		"-servers", "2", "-server-capacity", "5", "-game-length", "50ms", "-out", out)
	if code != exitPass {
		t.Fatalf("exit %d\n%s", code, text)
	}
	p := loadReport(t, out).Players
	if p.Tickets["assigned"] != 80 || p.Lost != 0 {
		t.Errorf("tickets %v: want 80 assigned", p.Tickets)
	}
	// 40 matches on 10 slots: games must have ended for all to be placed.
	// The fleet stops with the last player, so it may miss the last few.
	if p.Fleet.MatchesSeen < 30 || p.Fleet.MatchesSeen > 40 || p.Fleet.MatchesEnded < 25 {
		t.Errorf("fleet %+v: want most of the 40 matches seen and ended", p.Fleet)
	}
}

// TestClosedLoopAgainstEmbedded keeps a fixed number of players queued.
func TestClosedLoopAgainstEmbedded(t *testing.T) {
	url := startEmbedded(t)
	out := t.TempDir()
	code, text := runCmd(t, "-front", url, "-scenario", "pipeline", "-concurrency", "8", "-duration", "1s", "-out", out)
	if code != exitPass {
		t.Fatalf("exit %d\n%s", code, text)
	}
	p := loadReport(t, out).Players
	if p.Tickets["assigned"] == 0 || p.Tickets["assigned"] != p.Tickets["created"] || p.MaxInFlight > 9 {
		t.Errorf("tickets %v, max in flight %d: want all assigned, at most 8 (+1 to complete a match) at once", p.Tickets, p.MaxInFlight)
	}
}

// TestHoldAgainstEmbedded holds polls on the embedded front and wakes them
// by cancelling their tickets. The front is this process, whose memory the
// report reads.
func TestHoldAgainstEmbedded(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			url := startEmbedded(t)
			out := t.TempDir()
			code, text := runCmd(t, "-mode", "hold", "-front", url, "-hold", "60", "-wake", "cancel", fmt.Sprintf("-hold-stream=%v", stream),
				"-front-pid", strconv.Itoa(os.Getpid()), "-source-addrs", "2", "-hold-timeout", "20s", "-out", out)
			if code != exitPass {
				t.Fatalf("exit %d\n%s", code, text)
			}
			h := loadReport(t, out).Hold
			if h.Created != 60 || h.Held != 60 || h.Answered != 60 || h.Early != 0 || h.Stream != stream {
				t.Errorf("hold %+v: want 60 created, held and answered", h)
			}
			if h.RSSHoldingKiB <= 0 || h.GoMemHoldingKiB <= 0 || h.WakeAllMS <= 0 || h.WakeLatency.Count != 60 {
				t.Errorf("hold %+v: want memory and wake figures", h)
			}
		})
	}
}

func TestHTTPAgainstEmbedded(t *testing.T) {
	url := startEmbedded(t)
	for _, args := range [][]string{
		{"-http-path", "/livez"},
		{"-http-create"},
	} {
		out := t.TempDir()
		code, text := runCmd(t, append([]string{"-mode", "http", "-front", url, "-concurrency", "4", "-duration", "300ms", "-out", out}, args...)...)
		if code != exitPass {
			t.Fatalf("%v: exit %d\n%s", args, code, text)
		}
		h := loadReport(t, out).HTTP
		if h.OK == 0 || h.PerS <= 0 || len(h.Errors) != 0 {
			t.Errorf("%v: %+v", args, h)
		}
	}
}

// TestPollUntilAgainstEmbedded: players that poll with -poll-until assigned
// make fewer polls, since the matched step does not answer them.
func TestPollUntilAgainstEmbedded(t *testing.T) {
	url := startEmbedded(t)
	requests := map[string]int64{}
	for _, until := range []string{"", "assigned"} {
		out := t.TempDir()
		code, text := runCmd(t, "-front", url, "-scenario", "pipeline", "-rate", "200", "-players", "100",
			"-duration", "2s", "-poll-until", until, "-run-id", "until-"+until, "-out", out)
		if code != exitPass {
			t.Fatalf("-poll-until %q: exit %d\n%s", until, code, text)
		}
		p := loadReport(t, out).Players
		if p.Tickets["assigned"] != 100 {
			t.Fatalf("-poll-until %q: tickets %v, want 100 assigned", until, p.Tickets)
		}
		requests[until] = p.Requests
	}
	// The fleet's requests are about the same in both runs; what goes is
	// the poll answered at matched, for every player whose first poll saw
	// the ticket matched but not yet assigned (about half of them here).
	if requests["assigned"] >= requests[""] {
		t.Errorf("requests %v: -poll-until assigned saved none", requests)
	}
	t.Logf("requests without and with -poll-until assigned: %v", requests)
}

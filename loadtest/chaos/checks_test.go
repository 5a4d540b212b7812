package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A fabricated phase: p1+p2 matched and assigned, p3 in two live matches
// (one of them also lists ticket t3 twice over), p4 in a failed match and
// a live one, p5 stuck searching, p6 told failed but present, p7 lost,
// p8 a stale claim, t9 a ticket nobody was told of, t15 the ticket of a
// create that got no answer.
func fabricated() (*storeState, []outcome) {
	st := &storeState{
		Queue: "duel",
		Tickets: map[string]ticketRec{
			"duel.t1":  {ID: "duel.t1", Status: "assigned", Players: []string{"r-p1"}, Match: "duel.m1"},
			"duel.t2":  {ID: "duel.t2", Status: "assigned", Players: []string{"r-p2"}, Match: "duel.m1"},
			"duel.t3":  {ID: "duel.t3", Status: "assigned", Players: []string{"r-p3"}, Match: "duel.m2"},
			"duel.t3b": {ID: "duel.t3b", Status: "assigned", Players: []string{"r-p3"}, Match: "duel.m3"},
			"duel.t4":  {ID: "duel.t4", Status: "assigned", Players: []string{"r-p4"}, Match: "duel.m5"},
			"duel.t5":  {ID: "duel.t5", Status: "searching", Players: []string{"r-p5"}},
			"duel.t6":  {ID: "duel.t6", Status: "expired", Players: []string{"r-p6"}},
			"duel.t8":  {ID: "duel.t8", Status: "expired", Players: []string{"r-p8"}},
			"duel.t9":  {ID: "duel.t9", Status: "expired", Players: []string{"r-p9"}},
			"duel.t10": {ID: "duel.t10", Status: "matched", Players: []string{"r-p10"}, Match: "duel.m6"},
			"duel.t15": {ID: "duel.t15", Status: "expired", Players: []string{"r-p15"}},
		},
		Matches: map[string]matchRec{
			"duel.m1": {ID: "duel.m1", Status: "assigned", Tickets: []string{"duel.t1", "duel.t2"}, Players: []string{"r-p1", "r-p2"}},
			"duel.m2": {ID: "duel.m2", Status: "assigned", Tickets: []string{"duel.t3", "duel.x"}, Players: []string{"r-p3", "r-x"}},
			"duel.m3": {ID: "duel.m3", Status: "pending", Tickets: []string{"duel.t3b", "duel.x"}, Players: []string{"r-p3", "r-x"}},
			"duel.m4": {ID: "duel.m4", Status: "failed", Tickets: []string{"duel.t4f"}, Players: []string{"r-p4"}},
			"duel.m5": {ID: "duel.m5", Status: "assigned", Tickets: []string{"duel.t4"}, Players: []string{"r-p4"}},
		},
		Claims: map[string]string{
			"r-p5":  "duel.t5",  // live: fine
			"r-p8":  "duel.t8",  // ended: stale
			"r-p7":  "duel.t7",  // missing: stale
			"r-p11": "duel.old", // another phase's ticket, ended: stale
			"r-p12": "duel.liv", // another phase's ticket, live: fine
		},
		ClaimTickets: map[string]string{"duel.t7": "", "duel.old": "cancelled", "duel.liv": "matched"},
	}
	outs := []outcome{
		{Players: []string{"r-p1"}, Ticket: "duel.t1", Fate: "assigned"},
		{Players: []string{"r-p2"}, Ticket: "duel.t2", Fate: "assigned"},
		{Players: []string{"r-p3"}, Ticket: "duel.t3", Fate: "assigned"},
		{Players: []string{"r-p4"}, Ticket: "duel.t4", Fate: "assigned"},
		{Players: []string{"r-p5"}, Ticket: "duel.t5", Fate: "lost"},
		{Players: []string{"r-p6"}, Fate: "create_failed", Tries: 8},
		{Players: []string{"r-p7"}, Ticket: "duel.t7", Fate: "assigned"},
		{Players: []string{"r-p8"}, Ticket: "duel.t8", Fate: "expired"},
		{Players: []string{"r-p10"}, Ticket: "duel.t10", Fate: "matched"},
		{Players: []string{"r-p13"}, Fate: "create_failed"}, // truly absent: fine
		{Players: []string{"r-p14"}, Fate: "skipped"},
		{Players: []string{"r-p15"}, Fate: "create_unanswered", Tries: 8}, // may exist: no violation
		{Players: []string{"r-p16"}, Fate: "create_unanswered"},
	}
	return st, outs
}

func TestEvaluateCountsEveryViolation(t *testing.T) {
	st, outs := fabricated()
	k := keys{prefix: "mm:"}
	f := evaluate(st, k, outs, true)
	for _, c := range []struct {
		name  string
		items []item
		want  []string // a fragment of each item, in order
	}{
		// p4's failed match does not count; r-x is in m2 and m3.
		{"double players", f.DoublePlayers, []string{"player r-p3 ", "player r-x "}},
		{"double tickets", f.DoubleTickets, []string{"ticket duel.x "}},
		{"stuck", f.Stuck, []string{"duel.t10 still matched", "duel.t5 still searching"}},
		{"told failed but present", f.ToldFailedPresent, []string{"store holds duel.t6 expired"}},
		// t5: the client saw it lost; t7: gone from the store.
		{"lost", f.Lost, []string{`"duel.t5"`, `"duel.t7"`}},
		{"stale", f.Stale, []string{"r-p11 names ticket duel.old, which is cancelled", "r-p7 names ticket duel.t7, which is missing", "r-p8 names ticket duel.t8, which is expired"}},
		// t3b is a second ticket of p3; t9 nobody asked for.
		{"phantom", f.Phantom, []string{"duel.t3b", "duel.t9"}},
		{"unanswered", f.Unanswered, []string{"duel.t15 (expired)"}},
	} {
		if len(c.items) != len(c.want) {
			t.Errorf("%s: %d findings, want %d: %+v", c.name, len(c.items), len(c.want), c.items)
			continue
		}
		for i, w := range c.want {
			if !strings.Contains(c.items[i].What, w) {
				t.Errorf("%s[%d] = %q, want it to mention %q", c.name, i, c.items[i].What, w)
			}
		}
	}
}

func TestEvaluateCleanState(t *testing.T) {
	st := &storeState{
		Queue: "duel",
		Tickets: map[string]ticketRec{
			"duel.a": {ID: "duel.a", Status: "assigned", Players: []string{"r-p1"}, Match: "duel.m"},
			"duel.b": {ID: "duel.b", Status: "assigned", Players: []string{"r-p2"}, Match: "duel.m"},
			"duel.c": {ID: "duel.c", Status: "failed", Players: []string{"r-p3"}, Match: "duel.f"},
		},
		Matches: map[string]matchRec{
			"duel.m": {ID: "duel.m", Status: "assigned", Tickets: []string{"duel.a", "duel.b"}, Players: []string{"r-p1", "r-p2"}},
			"duel.f": {ID: "duel.f", Status: "failed", Tickets: []string{"duel.c"}, Players: []string{"r-p3"}},
		},
		Claims:       map[string]string{},
		ClaimTickets: map[string]string{},
	}
	outs := []outcome{
		{Players: []string{"r-p1"}, Ticket: "duel.a", Fate: "assigned"},
		{Players: []string{"r-p2"}, Ticket: "duel.b", Fate: "assigned"},
		{Players: []string{"r-p3"}, Ticket: "duel.c", Fate: "failed"},
		{Players: []string{"r-p4"}, Fate: "create_failed"},
	}
	f := evaluate(st, keys{prefix: "mm:"}, outs, true)
	all := [][]item{f.DoublePlayers, f.DoubleTickets, f.Stuck, f.ToldFailedPresent, f.Lost, f.Stale, f.Phantom}
	for i, items := range all {
		if len(items) != 0 {
			t.Errorf("check %d found %+v in a clean state", i, items)
		}
	}
	// Without outcomes the checks that need them find nothing, rather
	// than everything.
	f = evaluate(st, keys{prefix: "mm:"}, nil, false)
	if len(f.Lost)+len(f.Phantom)+len(f.ToldFailedPresent) != 0 {
		t.Errorf("without outcomes: %+v", f)
	}
}

func TestClassifyWithinDurability(t *testing.T) {
	st, outs := fabricated()
	k := keys{prefix: "mm:"}
	f := evaluate(st, k, outs, true)
	// Match m3 was written just before a Redis kill and lost: the double
	// matches that depend on it are within durability, nothing else.
	durable := map[string]bool{k.match("duel", "duel.m3"): true}
	c := classify(f.DoublePlayers, durable)
	if c.Violations != 0 || c.Durable != 2 {
		t.Errorf("double players: %+v, want 0 violations and 2 within durability", c)
	}
	c = classify(f.Stale, durable)
	if c.Violations != 3 || c.Durable != 0 || len(c.Examples) != 3 {
		t.Errorf("stale claims: %+v, want 3 violations with examples", c)
	}
	c = classify(f.Stale, map[string]bool{k.claim("r-p8"): true})
	if c.Violations != 2 || c.Durable != 1 {
		t.Errorf("stale claims with p8's claim lost: %+v", c)
	}
}

func TestOverCapacity(t *testing.T) {
	var s sampler
	s.add([]serverSample{{ID: "a", Exists: true, Capacity: 2, Allocated: 2, Allocs: 2}}, nil)
	s.add([]serverSample{{ID: "a", Exists: true, Capacity: 2, Allocated: 3, Allocs: 2}}, nil)
	s.add([]serverSample{{ID: "a", Exists: true, Capacity: 2, Allocated: 2, Allocs: 3}, {ID: "b", Exists: true, Capacity: 1, Allocated: 2, Allocs: 2}}, nil)
	s.add([]serverSample{{ID: "gone", Allocs: 5}}, nil)
	s.add(nil, os.ErrDeadlineExceeded)
	samples, errs, over, examples := s.result()
	if samples != 4 || errs != 1 || over != 2 || len(examples) != 3 {
		t.Errorf("samples %d, errors %d, over %d, examples %q; want 4, 1, 2 and 3 examples", samples, errs, over, examples)
	}
}

func TestReadOutcomes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.jsonl")
	body := `{"players":["a","b"],"ticket":"duel.1","fate":"assigned","front":"http://x","tries":2}

{"players":[{"id":"c","skill":1}],"ticket":"","fate":"create_failed","front":"http://y","tries":8}
`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	outs, err := readOutcomes(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []outcome{
		{Players: []string{"a", "b"}, Ticket: "duel.1", Fate: "assigned", Front: "http://x", Tries: 2},
		{Players: []string{"c"}, Fate: "create_failed", Front: "http://y", Tries: 8},
	}
	got, _ := json.Marshal(outs)
	exp, _ := json.Marshal(want)
	if !bytes.Equal(got, exp) {
		t.Errorf("got %s, want %s", got, exp)
	}
	if err := os.WriteFile(path, []byte(`{"players":["a"],"ticket":"x"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readOutcomes(path); err == nil {
		t.Error("an outcome without a fate was accepted")
	}
}

func TestTableAndExitCode(t *testing.T) {
	cfg, err := parseConfig(nil, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	rs := []phaseResult{
		{Phase: 1, Fault: faultNone, Creates: 10, Assigned: 10, P99ms: 12.5},
		{Phase: 2, Fault: faultRedis, Creates: 10, Assigned: 8, Stale: count{Violations: 2, Durable: 1, Examples: []string{"claim x"}},
			Injections: []injection{{Kind: faultRedis}, {Kind: faultRedis, Error: "boom"}}},
	}
	var b strings.Builder
	writeTable(&b, rs, &cfg, caps{MultiFront: true, Idempotency: true, Outcomes: true}, 1)
	out := b.String()
	for _, want := range []string{
		"| 1 | none (baseline) | 0 | 10 | 10 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 13ms | ok |",
		"| 2 | SIGKILL Redis | 1 (1 failed) | 10 | 8 | 0 | 0 | 0 | 0 | 0 | 2 | 0 | 1 | - | FAIL |",
		"stale claim: claim x", "injection redis  failed: boom", "within durability:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	ctx := t.Context()
	if code := exitCode(ctx, rs, 2); code != exitViolation {
		t.Errorf("exit %d with a violation, want %d", code, exitViolation)
	}
	if code := exitCode(ctx, rs[:1], 1); code != exitPass {
		t.Errorf("exit %d for a clean run, want 0", code)
	}
	if code := exitCode(ctx, rs[:1], 2); code != exitSetup {
		t.Errorf("exit %d for a run that stopped early, want %d", code, exitSetup)
	}
	partial := []phaseResult{{Phase: 1, Lost: count{NA: true}}}
	if code := exitCode(ctx, partial, 1); code != exitPartial {
		t.Errorf("exit %d for a partial run, want %d", code, exitPartial)
	}
}

func TestParseConfig(t *testing.T) {
	c, err := parseConfig([]string{"-phases", "none,redis", "-seed", "7"}, os.Stderr)
	if err != nil || len(c.Phases) != 2 || c.Phases[1] != faultRedis || c.Seed != 7 {
		t.Errorf("got %+v, %v", c, err)
	}
	var sink bytes.Buffer
	for _, bad := range [][]string{
		{"-phases", "nope"}, {"-amqp", "amqp://guest:guest@10.0.0.1:5672/"}, {"-amqp", "amqp://127.0.0.1:5672/vh"},
		{"-rate", "0"}, {"-phase-duration", "0s"}, {"-retry-delay", "1m", "-max-wait", "10s"},
	} {
		if _, err := parseConfig(bad, &sink); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

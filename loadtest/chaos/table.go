package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// phaseResult is one row of the table.
type phaseResult struct {
	Phase      int         `json:"phase"`
	Fault      fault       `json:"fault"`
	RunID      string      `json:"run_id"`
	Injections []injection `json:"injections"`

	Creates  int64 `json:"creates"`
	Assigned int64 `json:"assigned"`

	DoublePlayers     count `json:"double_matched_players"`
	DoubleTickets     count `json:"tickets_in_two_matches"`
	OverCapacity      count `json:"over_capacity_samples"`
	Stuck             count `json:"stuck"`
	ToldFailedPresent count `json:"told_failed_but_present"`
	Lost              count `json:"lost"`
	Stale             count `json:"stale_claims"`
	Phantom           count `json:"phantom_tickets"`

	Samples      int     `json:"samples"`
	SampleErrors int     `json:"sample_errors"`
	P99ms        float64 `json:"p99_time_to_assign_ms"`
	Requests     int64   `json:"requests"`
	Errors       int64   `json:"request_errors"`
	// Deaths are exits of services or Redis the run did not cause.
	Deaths []string `json:"unexpected_exits,omitempty"`
	Notes  []string `json:"notes,omitempty"`
	// Error is set when the phase could not run or be checked; it counts
	// as a failure.
	Error string `json:"error,omitempty"`
}

func (r *phaseResult) checks() []*count {
	return []*count{&r.DoublePlayers, &r.DoubleTickets, &r.OverCapacity, &r.Stuck,
		&r.ToldFailedPresent, &r.Lost, &r.Stale, &r.Phantom}
}

func (r *phaseResult) violations() int {
	n := 0
	for _, c := range r.checks() {
		n += c.Violations
	}
	return n
}

func (r *phaseResult) withinDurability() int {
	n := 0
	for _, c := range r.checks() {
		n += c.Durable
	}
	return n
}

func (r *phaseResult) incomplete() bool {
	for _, c := range r.checks() {
		if c.NA {
			return true
		}
	}
	return false
}

func (r *phaseResult) verdict() string {
	switch {
	case r.Error != "":
		return "ERROR"
	case r.violations() > 0:
		return "FAIL"
	case r.incomplete():
		return "incomplete"
	}
	return "ok"
}

func (r *phaseResult) injected() int {
	n := 0
	for _, i := range r.Injections {
		if i.Error == "" {
			n++
		}
	}
	return n
}

func cell(c count) string {
	if c.NA {
		return "n/a"
	}
	return fmt.Sprint(c.Violations)
}

// writeTable prints the markdown table, its legend, and the examples of
// every violation.
func writeTable(w io.Writer, rs []phaseResult, c *config, cp caps, seed uint64) {
	fmt.Fprintf(w, "chaos: %d phases of %s at %.0f players/s, a fault every ~%s, seed %d\n", len(rs), c.PhaseDuration, c.Rate, c.Every, seed)
	fmt.Fprintf(w, "load tester: %s\n\n", cp)
	fmt.Fprintln(w, "| phase | fault | injections | creates | assigned | double-matched | over-capacity samples | stuck | told-failed-but-present | lost | stale claims | phantom | within durability | p99 time to assign | verdict |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
	for i := range rs {
		r := &rs[i]
		double := cell(r.DoublePlayers)
		if r.DoubleTickets.Violations > 0 {
			double += fmt.Sprintf(" (+%d tickets)", r.DoubleTickets.Violations)
		}
		inj := fmt.Sprint(r.injected())
		if failed := len(r.Injections) - r.injected(); failed > 0 {
			inj += fmt.Sprintf(" (%d failed)", failed)
		}
		p99 := "-"
		if r.P99ms > 0 {
			p99 = (time.Duration(r.P99ms * float64(time.Millisecond))).Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "| %d | %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |\n",
			r.Phase, faultText[r.Fault], inj, r.Creates, r.Assigned, double, cell(r.OverCapacity), cell(r.Stuck),
			cell(r.ToldFailedPresent), cell(r.Lost), cell(r.Stale), cell(r.Phantom), r.withinDurability(), p99, r.verdict())
	}
	fmt.Fprint(w, legend(c))
	details := false
	for i := range rs {
		r := &rs[i]
		var lines []string
		named := []struct {
			name string
			c    count
		}{
			{"double-matched player", r.DoublePlayers}, {"ticket in two matches", r.DoubleTickets},
			{"over capacity", r.OverCapacity}, {"stuck", r.Stuck}, {"told failed but present", r.ToldFailedPresent},
			{"lost", r.Lost}, {"stale claim", r.Stale}, {"phantom", r.Phantom},
		}
		for _, n := range named {
			for _, e := range n.c.Examples {
				lines = append(lines, fmt.Sprintf("  - %s: %s", n.name, e))
			}
		}
		if r.Error != "" {
			lines = append(lines, "  - error: "+r.Error)
		}
		for _, d := range r.Deaths {
			lines = append(lines, "  - unexpected exit: "+d)
		}
		for _, inj := range r.Injections {
			if inj.Error != "" {
				lines = append(lines, fmt.Sprintf("  - injection %s %s failed: %s", inj.Kind, inj.Target, inj.Error))
			}
		}
		for _, n := range r.Notes {
			lines = append(lines, "  - "+n)
		}
		if len(lines) == 0 {
			continue
		}
		if !details {
			fmt.Fprintln(w, "\nDetails: at most 3 examples of each violation, and notes:")
			details = true
		}
		fmt.Fprintf(w, "- phase %d (%s, run id %s):\n%s\n", r.Phase, r.Fault, r.RunID, strings.Join(lines, "\n"))
	}
}

func legend(c *config) string {
	return fmt.Sprintf(`
Each phase has its own players (ids <run id>-p<n>) and game servers, so a
row counts only what happened to them. Columns, every one a violation
count unless named otherwise:
- injections, creates, assigned: faults injected (each process SIGKILLed is
  restarted on its address), logical creates the load tester made, tickets
  it saw assigned.
- double-matched: players in more than one match that did not fail (and,
  in brackets, tickets listed in more than one match).
- over-capacity samples: samples (every %s) in which a game server held
  more matches than its capacity, by its allocated count or its allocations.
- stuck: tickets still searching or matched %s after arrivals ended
  (max wait %s + assign deadline %s + grace %s).
- told-failed-but-present: creates the client was told failed whose players
  a ticket in the store holds.
- lost: creates answered 201 that the load tester never saw end, or whose
  ticket is not in the store (a stuck ticket counts here too).
- stale claims: player claims, at the end, naming a ticket that ended or
  does not exist.
- phantom: tickets of the phase the client was never told of (a create
  retried into a second ticket).
- within durability: findings of any column above explained by writes the
  restarted Redis lost (appendfsync everysec may lose about a second): the
  finding depends on a key written after the last write the restarted Redis
  kept, at most %s before the kill. They are not violations and not in the
  other columns; when Redis kept every write it acknowledged, it is 0.
- n/a: the check needs a load tester feature it lacks (-partial).
`, c.SampleEvery, c.drain(), c.MaxWait, c.AssignDeadline, c.Grace, c.DurabilityWindow)
}

// writeOut writes table.md and chaos.json into dir.
func writeOut(dir string, table string, rs []phaseResult, c *config, cp caps, seed uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "table.md"), []byte(table), 0o644); err != nil {
		return err
	}
	b, err := json.MarshalIndent(struct {
		Seed   uint64        `json:"seed"`
		Config config        `json:"config"`
		Caps   caps          `json:"load_tester"`
		Phases []phaseResult `json:"phases"`
	}{seed, *c, cp, rs}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "chaos.json"), append(b, '\n'), 0o644)
}

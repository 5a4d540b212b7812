package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
)

// maxExamples bounds the examples kept of each kind of violation.
const maxExamples = 3

// outcome is one line of the load tester's -outcomes file: one logical
// create, with every retry it took.
type outcome struct {
	Players []string
	Ticket  string // the id the client was given; empty if none
	Fate    string // assigned, create_failed, lost, expired, ...
	Front   string
	Tries   int
}

func (o *outcome) UnmarshalJSON(b []byte) error {
	var raw struct {
		Players []json.RawMessage `json:"players"`
		Ticket  string            `json:"ticket"`
		Fate    string            `json:"fate"`
		Front   string            `json:"front"`
		Tries   int               `json:"tries"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*o = outcome{Ticket: raw.Ticket, Fate: raw.Fate, Front: raw.Front, Tries: raw.Tries}
	// A player is its id, or an object with one.
	for _, p := range raw.Players {
		var id string
		if err := json.Unmarshal(p, &id); err != nil {
			var obj struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(p, &obj); err != nil || obj.ID == "" {
				return fmt.Errorf("a player is neither an id nor an object with one: %s", p)
			}
			id = obj.ID
		}
		o.Players = append(o.Players, id)
	}
	if o.Fate == "" {
		return fmt.Errorf("an outcome has no fate: %s", b)
	}
	return nil
}

// Fates the checks tell apart.
const (
	fateCreateFailed     = "create_failed"     // the suite refused every try: no ticket may exist
	fateCreateUnanswered = "create_unanswered" // a try got no answer: a ticket may exist
	fateLost             = "lost"
	fateSkipped          = "skipped"
)

func readOutcomes(path string) ([]outcome, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []outcome
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var o outcome
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			return out, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, o)
	}
	return out, sc.Err()
}

// item is one violation found, with the store keys whose lost writes
// could explain it.
type item struct {
	What string
	Keys []string
}

// findings are the violations of one phase, by check.
type findings struct {
	DoublePlayers     []item // players in more than one match that did not fail
	DoubleTickets     []item // tickets listed in more than one match
	Stuck             []item // tickets still searching or matched after the deadline
	ToldFailedPresent []item // creates answered as failed whose players hold a ticket
	Lost              []item // creates answered 201 the client never saw end, or whose ticket is gone
	Stale             []item // claims naming a ticket that ended or does not exist
	Phantom           []item // tickets of the phase the client was never told of
	// Unanswered are the tickets of creates that got no answer: they may
	// exist, so they are no violation, but they are counted.
	Unanswered []item
}

// evaluate runs every check on the phase's store state and, if the load
// tester wrote them, its outcomes.
func evaluate(st *storeState, k keys, outs []outcome, haveOutcomes bool) findings {
	var f findings
	q := st.Queue
	ticketKey := func(id string) string { return k.ticket(q, id) }

	byPlayer := map[string][]string{}
	byTicket := map[string][]string{}
	for _, id := range slices.Sorted(maps.Keys(st.Matches)) {
		m := st.Matches[id]
		for _, t := range dedupe(m.Tickets) {
			byTicket[t] = append(byTicket[t], id)
		}
		if m.Status == "failed" {
			continue
		}
		for _, p := range dedupe(m.Players) {
			byPlayer[p] = append(byPlayer[p], id)
		}
	}
	matchKeys := func(ms []string) []string {
		var out []string
		for _, id := range ms {
			out = append(out, k.match(q, id))
			for _, t := range st.Matches[id].Tickets {
				out = append(out, ticketKey(t))
			}
		}
		return out
	}
	for _, p := range slices.Sorted(maps.Keys(byPlayer)) {
		if ms := byPlayer[p]; len(ms) > 1 {
			f.DoublePlayers = append(f.DoublePlayers, item{
				What: fmt.Sprintf("player %s is in %d matches: %s", p, len(ms), describeMatches(st, ms)),
				Keys: append(matchKeys(ms), k.claim(p)),
			})
		}
	}
	for _, t := range slices.Sorted(maps.Keys(byTicket)) {
		if ms := byTicket[t]; len(ms) > 1 {
			f.DoubleTickets = append(f.DoubleTickets, item{
				What: fmt.Sprintf("ticket %s is listed in %d matches: %s", t, len(ms), describeMatches(st, ms)),
				Keys: matchKeys(ms),
			})
		}
	}

	ticketsOf := map[string][]string{} // player → the phase's tickets holding them
	for _, id := range slices.Sorted(maps.Keys(st.Tickets)) {
		t := st.Tickets[id]
		for _, p := range t.Players {
			ticketsOf[p] = append(ticketsOf[p], id)
		}
		if !terminal(t.Status) {
			keys := []string{ticketKey(id)}
			if t.Match != "" {
				keys = append(keys, k.match(q, t.Match))
			}
			f.Stuck = append(f.Stuck, item{What: fmt.Sprintf("ticket %s still %s (match %q)", id, t.Status, t.Match), Keys: keys})
		}
	}

	if haveOutcomes {
		known := map[string]bool{}
		toldFailed := map[string]bool{}
		for _, o := range outs {
			claimKeys := make([]string, len(o.Players))
			for i, p := range o.Players {
				claimKeys[i] = k.claim(p)
			}
			switch {
			case o.Fate == fateCreateUnanswered:
				for _, p := range o.Players {
					for _, id := range ticketsOf[p] {
						if !known[id] {
							known[id] = true
							f.Unanswered = append(f.Unanswered, item{What: fmt.Sprintf("ticket %s (%s)", id, st.Tickets[id].Status), Keys: []string{ticketKey(id)}})
						}
					}
				}
			case o.Fate == fateCreateFailed:
				var present []string
				for _, p := range o.Players {
					present = append(present, ticketsOf[p]...)
				}
				present = dedupe(present)
				if len(present) == 0 {
					continue
				}
				var keys []string
				var desc []string
				for _, id := range present {
					toldFailed[id] = true
					keys = append(keys, ticketKey(id))
					desc = append(desc, id+" "+st.Tickets[id].Status)
				}
				f.ToldFailedPresent = append(f.ToldFailedPresent, item{
					What: fmt.Sprintf("create of %s failed after %d tries (last via %s), but the store holds %s",
						strings.Join(o.Players, ","), o.Tries, o.Front, strings.Join(desc, ", ")),
					Keys: append(keys, claimKeys...),
				})
			case o.Ticket != "" || o.Fate == fateLost:
				if o.Ticket != "" {
					known[o.Ticket] = true
				}
				t, exists := st.Tickets[o.Ticket]
				if o.Fate != fateLost && exists {
					continue
				}
				inStore := "absent from the store"
				if exists {
					inStore = "store says " + t.Status
				}
				keys := claimKeys
				if o.Ticket != "" {
					keys = append(keys, ticketKey(o.Ticket))
				}
				f.Lost = append(f.Lost, item{
					What: fmt.Sprintf("ticket %q of %s: the client saw %s, %s", o.Ticket, strings.Join(o.Players, ","), o.Fate, inStore),
					Keys: keys,
				})
			}
		}
		for _, id := range slices.Sorted(maps.Keys(st.Tickets)) {
			if !known[id] && !toldFailed[id] {
				t := st.Tickets[id]
				f.Phantom = append(f.Phantom, item{
					What: fmt.Sprintf("ticket %s (%s) of %s was never given to the client", id, t.Status, strings.Join(t.Players, ",")),
					Keys: []string{ticketKey(id)},
				})
			}
		}
	}

	for _, p := range slices.Sorted(maps.Keys(st.Claims)) {
		id := st.Claims[p]
		status, ok := st.ClaimTickets[id]
		if t, in := st.Tickets[id]; in {
			status, ok = t.Status, true
		}
		if ok && status != "" && !terminal(status) {
			continue
		}
		if status == "" {
			status = "missing"
		}
		f.Stale = append(f.Stale, item{
			What: fmt.Sprintf("claim of player %s names ticket %s, which is %s", p, id, status),
			Keys: []string{k.claim(p), k.ticket(queueOfID(id), id)},
		})
	}
	return f
}

func describeMatches(st *storeState, ms []string) string {
	parts := make([]string, len(ms))
	for i, id := range ms {
		m := st.Matches[id]
		parts[i] = fmt.Sprintf("%s (%s, tickets %s)", id, m.Status, strings.Join(m.Tickets, ","))
	}
	return strings.Join(parts, "; ")
}

func dedupe(ss []string) []string {
	seen := make(map[string]bool, len(ss))
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// count is one check's result: violations, and the findings lost Redis
// writes explain (within durability), apart.
type count struct {
	Violations int      `json:"violations"`
	Durable    int      `json:"within_durability"`
	NA         bool     `json:"not_checked,omitempty"`
	Examples   []string `json:"examples,omitempty"`
}

// classify splits items into violations and those within durability: an
// item is within durability when a key it depends on was written in a
// window whose writes a Redis kill lost.
func classify(items []item, durable map[string]bool) count {
	var c count
	for _, it := range items {
		if slices.ContainsFunc(it.Keys, func(k string) bool { return durable[k] }) {
			c.Durable++
			continue
		}
		c.Violations++
		if len(c.Examples) < maxExamples {
			c.Examples = append(c.Examples, it.What)
		}
	}
	return c
}

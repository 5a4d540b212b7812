package memstore

import (
	"maps"
	"slices"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// The store keeps its own copies of everything: nothing it holds shares a
// slice or map with a caller.

func cloneTicket(t contracts.Ticket) contracts.Ticket {
	t.Players = slices.Clone(t.Players)
	t.Latencies = maps.Clone(t.Latencies)
	t.Attributes = maps.Clone(t.Attributes)
	t.Match = cloneRef(t.Match)
	if t.Assignment != nil {
		a := *t.Assignment
		t.Assignment = &a
	}
	if t.Acceptance != nil {
		a := *t.Acceptance
		t.Acceptance = &a
	}
	return t
}

func cloneRef(r *contracts.MatchRef) *contracts.MatchRef {
	if r == nil {
		return nil
	}
	c := *r
	c.Teams = cloneTeams(r.Teams)
	return &c
}

func cloneTeams(teams [][]string) [][]string {
	if teams == nil {
		return nil
	}
	out := make([][]string, len(teams))
	for i, t := range teams {
		out[i] = slices.Clone(t)
	}
	return out
}

func cloneMatch(m contracts.Match) contracts.Match {
	m.Teams = cloneTeams(m.Teams)
	m.TicketIDs = slices.Clone(m.TicketIDs)
	m.Players = slices.Clone(m.Players)
	return m
}

func cloneAllocation(a contracts.Allocation) contracts.Allocation {
	a.Teams = cloneTeams(a.Teams)
	a.Players = slices.Clone(a.Players)
	a.TicketIDs = slices.Clone(a.TicketIDs)
	return a
}

func cloneEntry(e store.PoolEntry) store.PoolEntry {
	e.Latencies = maps.Clone(e.Latencies)
	return e
}

func cloneBackfill(b contracts.Backfill) contracts.Backfill {
	b.Open = slices.Clone(b.Open)
	b.Teams = cloneTeams(b.Teams)
	return b
}

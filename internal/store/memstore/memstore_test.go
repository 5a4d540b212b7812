package memstore_test

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
	"github.com/quickmatch/quickmatch/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memstore.New(memstore.Options{}) })
}

// TestConformanceShared runs the shared-backend checks with both values
// being the same store, the only way to share an in-memory backend.
func TestConformanceShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		s := memstore.New(memstore.Options{})
		return s, s
	})
}

var base = time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)

func ticket(id, player string) contracts.Ticket {
	return contracts.Ticket{
		ID: id, Queue: "duel", Status: contracts.StatusSearching, Version: 1,
		CreatedAt: base, UpdatedAt: base,
		Players: []contracts.Player{{ID: player, Skill: 1500}},
	}
}

// TestRetention checks that ExpireDue purges terminal records once the
// retention has passed, and keeps them before.
func TestRetention(t *testing.T) {
	ctx := t.Context()
	s := memstore.New(memstore.Options{Retention: time.Minute})
	for _, id := range []string{"a", "b", "c", "d"} {
		if err := s.CreateTicket(ctx, ticket(id, "p-"+id), base.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CancelTicket(ctx, "a", base); err != nil {
		t.Fatal(err)
	}
	m := contracts.Match{ID: "m-1", Queue: "duel", TicketIDs: []string{"b", "c"}, Teams: [][]string{{"p-b"}, {"p-c"}}}
	if err := s.ClaimMatch(ctx, m, base); err != nil {
		t.Fatal(err)
	}
	if err := s.FailMatch(ctx, "m-1", "test", base.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		now       time.Time
		gone      []string // tickets purged by now
		kept      []string
		matchGone bool
	}{
		{base.Add(59 * time.Second), nil, []string{"a", "b", "c", "d"}, false},
		{base.Add(time.Minute), []string{"a"}, []string{"b", "c", "d"}, false},
		{base.Add(90 * time.Second), []string{"a", "b", "c"}, []string{"d"}, true},
	}
	for _, tc := range tests {
		if _, err := s.ExpireDue(ctx, tc.now, 10); err != nil {
			t.Fatal(err)
		}
		for _, id := range tc.gone {
			if _, err := s.Ticket(ctx, id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("at %v ticket %s: %v, want purged", tc.now.Sub(base), id, err)
			}
		}
		for _, id := range tc.kept {
			if _, err := s.Ticket(ctx, id); err != nil {
				t.Errorf("at %v ticket %s: %v, want kept", tc.now.Sub(base), id, err)
			}
		}
		if _, err := s.Match(ctx, "m-1"); errors.Is(err, store.ErrNotFound) != tc.matchGone {
			t.Errorf("at %v match: %v, want purged=%v", tc.now.Sub(base), err, tc.matchGone)
		}
	}
}

// TestCandidatesLargePool checks the skill index against a plain scan on a
// pool with many equal skills, where the order of ties matters most.
func TestCandidatesLargePool(t *testing.T) {
	ctx := t.Context()
	s := memstore.New(memstore.Options{})
	const n = 2000
	for i := range n {
		id := fmt.Sprintf("t-%04d", i)
		if err := s.CreateTicket(ctx, ticket(id, "p-"+id), base.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		e := store.PoolEntry{
			TicketID:  id,
			Skill:     float64(1400 + (i*37)%200),
			Players:   1,
			CreatedAt: base.Add(time.Duration((i*7919)%n) * time.Millisecond),
		}
		if ok, err := s.AddToPool(ctx, "duel", e); err != nil || !ok {
			t.Fatalf("AddToPool(%s) = %v, %v", id, ok, err)
		}
	}
	all, err := s.Candidates(ctx, "duel", 0, 1e9, n+1)
	if err != nil || len(all) != n {
		t.Fatalf("Candidates of the whole pool = %d entries, %v; want %d", len(all), err, n)
	}
	for _, q := range []struct {
		skill, gap float64
		limit      int
	}{{1500, 10, 50}, {1500.5, 3, 40}, {1399, 5, 100}, {1600, 0, 10}, {1450, 200, 300}} {
		got, err := s.Candidates(ctx, "duel", q.skill, q.gap, q.limit)
		if err != nil {
			t.Fatal(err)
		}
		want := scan(all, q.skill, q.gap, q.limit)
		if len(got) != len(want) {
			t.Fatalf("Candidates%v: %d entries, want %d", q, len(got), len(want))
		}
		for i := range want {
			if got[i].TicketID != want[i].TicketID {
				t.Fatalf("Candidates%v[%d] = %s, want %s", q, i, got[i].TicketID, want[i].TicketID)
			}
		}
	}
}

// scan is the obvious reference for Candidates.
func scan(all []store.PoolEntry, skill, gap float64, limit int) []store.PoolEntry {
	dist := func(e store.PoolEntry) float64 {
		if e.Skill > skill {
			return e.Skill - skill
		}
		return skill - e.Skill
	}
	var in []store.PoolEntry
	for _, e := range all {
		if dist(e) <= gap {
			in = append(in, e)
		}
	}
	slices.SortFunc(in, func(a, b store.PoolEntry) int {
		if c := cmp.Compare(dist(a), dist(b)); c != 0 {
			return c
		}
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.TicketID, b.TicketID)
	})
	return in[:min(limit, len(in))]
}

func BenchmarkClaim(b *testing.B) {
	ctx := b.Context()
	s := memstore.New(memstore.Options{})
	i := 0
	for b.Loop() {
		x, y := ticket(fmt.Sprintf("x-%d", i), fmt.Sprintf("px-%d", i)), ticket(fmt.Sprintf("y-%d", i), fmt.Sprintf("py-%d", i))
		i++
		for _, tk := range []contracts.Ticket{x, y} {
			if err := s.CreateTicket(ctx, tk, base.Add(time.Hour)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.AddToPool(ctx, "duel", store.PoolEntry{TicketID: x.ID, Skill: 1500, Players: 1, CreatedAt: base}); err != nil {
			b.Fatal(err)
		}
		es, err := s.Candidates(ctx, "duel", 1500, 100, 8)
		if err != nil || len(es) == 0 {
			b.Fatalf("Candidates = %v, %v", es, err)
		}
		m := contracts.Match{ID: "m-" + y.ID, Queue: "duel", TicketIDs: []string{es[0].TicketID, y.ID}}
		if err := s.ClaimMatch(ctx, m, base); err != nil {
			b.Fatal(err)
		}
	}
}

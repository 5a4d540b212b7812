package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Conformance of AssignMatches: a batch answers, id by id, what
// AssignMatch called for each id in turn would, and leaves the same state.

// squad is a second queue, so that a batch spans two queues (two slots of
// a Redis Cluster).
const squad = "squad"

// outcome is what a case wants AssignMatches to answer for one id: the
// server it is placed on, or an error that matches err.
type outcome struct {
	server string
	err    error
}

var (
	noCapacity = outcome{err: store.ErrNoCapacity}
	notFound   = outcome{err: store.ErrNotFound}
	conflict   = outcome{err: store.ErrConflict}
)

func on(server string) outcome { return outcome{server: server} }

type serverSpec struct {
	id, region string
	capacity   int
}

func testAssignMatches(t *testing.T, h *harness) {
	tests := []struct {
		name    string
		servers []serverSpec
		// setup stores the matches of the batch, in the given state.
		setup func(h *harness)
		batch []string
		want  []outcome
		// allocated is each server's allocated count afterwards.
		allocated map[string]int
	}{
		{
			name:    "fills servers in order",
			servers: []serverSpec{{"gs-a", euWest, 3}, {"gs-b", euWest, 2}},
			setup: func(h *harness) {
				for i := range 6 {
					h.matched(mid(fmt.Sprintf("m-%d", i)), euWest)
				}
			},
			batch:     []string{mid("m-0"), mid("m-1"), mid("m-2"), mid("m-3"), mid("m-4"), mid("m-5")},
			want:      []outcome{on("gs-a"), on("gs-a"), on("gs-b"), on("gs-a"), on("gs-b"), noCapacity},
			allocated: map[string]int{"gs-a": 3, "gs-b": 2},
		},
		{
			name:    "every kind of outcome",
			servers: []serverSpec{{"gs-1", euWest, 3}},
			setup: func(h *harness) {
				h.matched(mid("before"), euWest)
				h.assign(mid("before"))
				h.matched(mid("failed"), euWest)
				if err := h.s.FailMatch(h.ctx, mid("failed"), contracts.ReasonNoServerCapacity, at(1)); err != nil {
					h.t.Fatalf("FailMatch: %v", err)
				}
				h.matched(mid("new"), euWest)
				h.matched(mid("elsewhere"), usEast)
			},
			batch:     []string{mid("before"), mid("failed"), mid("unknown"), "m-no-queue", mid("new"), mid("elsewhere")},
			want:      []outcome{on("gs-1"), conflict, notFound, notFound, on("gs-1"), noCapacity},
			allocated: map[string]int{"gs-1": 2},
		},
		{
			name:    "duplicates",
			servers: []serverSpec{{"gs-1", euWest, 1}},
			setup: func(h *harness) {
				h.matched(mid("m-1"), euWest)
				h.matched(mid("m-2"), euWest)
			},
			batch:     []string{mid("m-1"), mid("m-1"), mid("m-2"), mid("m-1"), mid("m-2")},
			want:      []outcome{on("gs-1"), on("gs-1"), noCapacity, on("gs-1"), noCapacity},
			allocated: map[string]int{"gs-1": 1},
		},
		{
			name:    "any region",
			servers: []serverSpec{{"gs-eu", euWest, 1}, {"gs-us", usEast, 2}},
			setup: func(h *harness) {
				for _, id := range []string{"any-1", "any-2", "any-3"} {
					h.matched(mid(id), "")
				}
				h.matched(mid("eu"), euWest)
			},
			// any-2 would find gs-eu and gs-us with a free slot each and
			// take gs-eu, the smaller id, had the eu match before it not
			// taken it.
			batch:     []string{mid("any-1"), mid("eu"), mid("any-2"), mid("any-3")},
			want:      []outcome{on("gs-us"), on("gs-eu"), on("gs-us"), noCapacity},
			allocated: map[string]int{"gs-eu": 1, "gs-us": 2},
		},
		{
			name:    "two queues",
			servers: []serverSpec{{"gs-1", euWest, 2}, {"gs-2", euWest, 1}},
			setup: func(h *harness) {
				h.matched(mid("m-1"), euWest)
				h.matched(squad+".m-1", euWest)
				h.matched(mid("m-2"), euWest)
				h.matched(squad+".m-2", euWest)
			},
			batch:     []string{mid("m-1"), squad + ".m-1", mid("m-2"), squad + ".m-2"},
			want:      []outcome{on("gs-1"), on("gs-1"), on("gs-2"), noCapacity},
			allocated: map[string]int{"gs-1": 2, "gs-2": 1},
		},
		{
			name:  "no servers",
			setup: func(h *harness) { h.matched(mid("m-1"), euWest); h.matched(mid("m-2"), "") },
			batch: []string{mid("m-1"), mid("m-2")},
			want:  []outcome{noCapacity, noCapacity},
		},
		{
			name:  "empty batch",
			setup: func(*harness) {},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := h.fresh(t)
			for _, s := range tc.servers {
				h.server(s.id, s.region, s.capacity)
			}
			tc.setup(h)
			got := h.s.AssignMatches(h.ctx, tc.batch, at(2))
			if len(got) != len(tc.batch) {
				t.Fatalf("AssignMatches answered %d results for %d ids", len(got), len(tc.batch))
			}
			for i, id := range tc.batch {
				h.wantOutcome(id, got[i], tc.want[i])
			}
			for id, n := range tc.allocated {
				if srv := h.getServer(id); srv.Allocated != n || len(h.allocations(id).Allocations) != n {
					t.Errorf("server %s allocated %d (%s), want %d", id, srv.Allocated, jsonOf(h.allocations(id)), n)
				}
			}
		})
	}
}

// wantOutcome checks one result of AssignMatches and the state of the
// match's tickets it leaves.
func (h *harness) wantOutcome(id string, got store.AssignResult, want outcome) {
	h.t.Helper()
	if want.err != nil {
		if !errors.Is(got.Err, want.err) {
			h.t.Errorf("AssignMatches: %s answered %s, %v; want %v", id, jsonOf(got.Assignment), got.Err, want.err)
		}
		if errors.Is(want.err, store.ErrNoCapacity) {
			m, err := h.s.Match(h.ctx, id)
			if err != nil {
				h.t.Fatalf("Match(%s): %v", id, err)
			}
			for _, tk := range m.TicketIDs {
				h.want(tk, contracts.StatusMatched, 2)
			}
		}
		return
	}
	if got.Err != nil || got.Assignment.ServerID != want.server {
		h.t.Errorf("AssignMatches: %s answered %s, %v; want server %s", id, jsonOf(got.Assignment), got.Err, want.server)
		return
	}
	srv := h.getServer(want.server)
	a := contracts.Assignment{ServerID: srv.ID, Address: srv.Address, Region: srv.Region}
	if got.Assignment != a {
		h.t.Errorf("AssignMatches: %s answered %s, want %s", id, jsonOf(got.Assignment), jsonOf(a))
	}
	hosted := slices.ContainsFunc(h.allocations(want.server).Allocations, func(a contracts.Allocation) bool { return a.MatchID == id })
	if !hosted {
		h.t.Errorf("match %s is not among the allocations of %s", id, want.server)
	}
	m, err := h.s.Match(h.ctx, id)
	if err != nil {
		h.t.Fatalf("Match(%s): %v", id, err)
	}
	var players []string
	for _, tk := range m.TicketIDs {
		got := h.want(tk, contracts.StatusAssigned, 3)
		if got.Assignment == nil || *got.Assignment != a {
			h.t.Errorf("ticket %s shows assignment %s, want one on %s", tk, jsonOf(got.Assignment), want.server)
		}
		players = append(players, got.PlayerIDs()...)
	}
	h.wantFree(players...)
}

// testAssignMatchesLikeOneByOne checks a batch against AssignMatch called
// for each id in turn, on two stores set up alike: a fleet that fills up,
// and matches of two regions and any region, some given twice.
func testAssignMatchesLikeOneByOne(t *testing.T, h *harness) {
	regions := []string{euWest, usEast, ""}
	setup := func(h *harness) []string {
		h.server("gs-eu-1", euWest, 2)
		h.server("gs-eu-2", euWest, 3)
		h.server("gs-us-1", usEast, 2)
		var batch []string
		for i := range 12 {
			id := mid(fmt.Sprintf("m-%02d", i))
			h.matched(id, regions[i%len(regions)])
			batch = append(batch, id)
			if i%5 == 0 {
				batch = append(batch, id)
			}
		}
		return batch
	}
	batch := setup(h)
	got := h.s.AssignMatches(h.ctx, batch, at(2))
	other := h.fresh(t)
	setup(other)
	kind := func(err error) string {
		switch {
		case err == nil:
			return "ok"
		case errors.Is(err, store.ErrNoCapacity):
			return "no capacity"
		}
		return err.Error()
	}
	for i, id := range batch {
		a, err := other.s.AssignMatch(other.ctx, id, at(2))
		if kind(got[i].Err) != kind(err) || got[i].Assignment != a {
			t.Errorf("%s: batch answered %s, %v; one by one %s, %v", id, jsonOf(got[i].Assignment), got[i].Err, jsonOf(a), err)
		}
	}
	for _, id := range []string{"gs-eu-1", "gs-eu-2", "gs-us-1"} {
		if g, w := h.getServer(id).Allocated, other.getServer(id).Allocated; g != w {
			t.Errorf("server %s allocated %d by the batch, %d one by one", id, g, w)
		}
	}
}

// testRaceAssignMatches races batches over the same matches, each batch in
// its own order, on a fleet with fewer slots than matches: each match is
// placed once, every batch answers it the same placement, and no server
// goes over its capacity.
func testRaceAssignMatches(t *testing.T, stores []store.Store) {
	const (
		matches = 24
		batches = 4
	)
	h := newHarness(t, stores[0])
	capacity := map[string]int{"gs-1": 3, "gs-2": 5, "gs-3": 7}
	slots := 0
	for id, c := range capacity {
		h.server(id, euWest, c)
		slots += c
	}
	ids := make([]string, matches)
	for i := range ids {
		ids[i] = mid(fmt.Sprintf("m-%02d", i))
		h.matched(ids[i], euWest)
	}
	var (
		mu       sync.Mutex
		assigned = map[string]string{} // match → server
	)
	together(batches, func(b int) {
		batch := slices.Clone(ids)
		// Each batch starts at another match and goes round.
		batch = append(batch[b*matches/batches:], batch[:b*matches/batches]...)
		results := stores[b%len(stores)].AssignMatches(h.ctx, batch, at(1))
		mu.Lock()
		defer mu.Unlock()
		for i, r := range results {
			id := batch[i]
			switch {
			case r.Err == nil:
				if prev, ok := assigned[id]; ok && prev != r.Assignment.ServerID {
					t.Errorf("match %s answered both %s and %s", id, prev, r.Assignment.ServerID)
				}
				assigned[id] = r.Assignment.ServerID
			case !errors.Is(r.Err, store.ErrNoCapacity):
				t.Errorf("AssignMatches: %s: %v, want nil or ErrNoCapacity", id, r.Err)
			}
		}
	})
	if len(assigned) != slots {
		t.Errorf("%d matches assigned, want %d (every slot)", len(assigned), slots)
	}
	for id, c := range capacity {
		srv := h.getServer(id)
		a := h.allocations(id)
		if srv.Allocated != c || len(a.Allocations) != c {
			t.Errorf("server %s of capacity %d: allocated %d, %d allocations", id, c, srv.Allocated, len(a.Allocations))
		}
		for _, al := range a.Allocations {
			if assigned[al.MatchID] != id {
				t.Errorf("match %s hosted by %s, answered %q", al.MatchID, id, assigned[al.MatchID])
			}
		}
	}
}

package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

func sameServer(t *testing.T, got, want contracts.Server) {
	t.Helper()
	if !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("server %s expires at %v, want %v", want.ID, got.ExpiresAt, want.ExpiresAt)
	}
	got.ExpiresAt, want.ExpiresAt = time.Time{}, time.Time{}
	if got != want {
		t.Errorf("server:\n got %s\nwant %s", jsonOf(got), jsonOf(want))
	}
}

func testRegisterServer(t *testing.T, h *harness) {
	req := contracts.ServerRequest{Address: "10.0.0.7:7777", Region: euWest, Capacity: 4}
	srv, err := h.s.RegisterServer(h.ctx, "gs-1", req, serverTT, base)
	if err != nil {
		t.Fatalf("RegisterServer: %v", err)
	}
	want := contracts.Server{ID: "gs-1", Address: req.Address, Region: euWest, Capacity: 4,
		ExpiresAt: base.Add(serverTT), Version: srv.Version}
	sameServer(t, srv, want)
	sameServer(t, h.getServer("gs-1"), want)
	if a := h.allocations("gs-1"); a.ServerID != "gs-1" || a.Version != srv.Version || len(a.Allocations) != 0 {
		t.Errorf("allocations of a new server = %s, want none at version %d", jsonOf(a), srv.Version)
	}

	h.matched(mid("m-1"), euWest)
	h.assign(mid("m-1"))
	allocated := h.getServer("gs-1")

	// A heartbeat updates what the server says of itself and keeps its
	// allocations and version.
	req = contracts.ServerRequest{Address: "10.0.0.8:7777", Region: usEast, Capacity: 6}
	srv, err = h.s.RegisterServer(h.ctx, "gs-1", req, time.Minute, at(10))
	if err != nil {
		t.Fatalf("RegisterServer again: %v", err)
	}
	want = contracts.Server{ID: "gs-1", Address: req.Address, Region: usEast, Capacity: 6, Allocated: 1,
		ExpiresAt: at(70), Version: allocated.Version}
	sameServer(t, srv, want)
	sameServer(t, h.getServer("gs-1"), want)
	if a := h.allocations("gs-1"); a.Version != allocated.Version || len(a.Allocations) != 1 || a.Allocations[0].MatchID != mid("m-1") {
		t.Errorf("allocations after a heartbeat = %s, want m-1 at version %d", jsonOf(a), allocated.Version)
	}

	if _, err := h.s.Server(h.ctx, "gs-unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Server of an unknown id: %v, want ErrNotFound", err)
	}
	if _, err := h.s.Allocations(h.ctx, "gs-unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Allocations of an unknown id: %v, want ErrNotFound", err)
	}
}

func testDrainServer(t *testing.T, h *harness) {
	h.server("gs-1", euWest, 4)
	for i := range 2 { // draining again is harmless
		srv, err := h.s.DrainServer(h.ctx, "gs-1")
		if err != nil || !srv.Draining || srv.ID != "gs-1" {
			t.Fatalf("DrainServer #%d = %s, %v; want gs-1 draining", i+1, jsonOf(srv), err)
		}
	}
	// A heartbeat does not undrain it.
	srv, err := h.s.RegisterServer(h.ctx, "gs-1", contracts.ServerRequest{Address: "a:1", Region: euWest, Capacity: 4}, serverTT, at(10))
	if err != nil || !srv.Draining {
		t.Fatalf("RegisterServer after drain = %s, %v; want still draining", jsonOf(srv), err)
	}
	if !h.getServer("gs-1").Draining {
		t.Errorf("server undrained by a heartbeat")
	}
	h.matched(mid("m-1"), euWest)
	if _, err := h.s.AssignMatch(h.ctx, mid("m-1"), at(11)); !errors.Is(err, store.ErrNoCapacity) {
		t.Errorf("AssignMatch with only a drained server: %v, want ErrNoCapacity", err)
	}
	if _, err := h.s.DrainServer(h.ctx, "gs-unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DrainServer of an unknown id: %v, want ErrNotFound", err)
	}
}

// testAssignChoosesServer checks the documented choice among servers.
func testAssignChoosesServer(t *testing.T, h *harness) {
	type server struct {
		id       string
		region   string
		capacity int
		expired  bool
		drained  bool
	}
	tests := []struct {
		name    string
		servers []server
		region  string
		want    string // "" for ErrNoCapacity
	}{
		{"region before size", []server{{id: "gs-eu", region: euWest, capacity: 1}, {id: "gs-us", region: usEast, capacity: 10}}, euWest, "gs-eu"},
		{"most free slots", []server{{id: "gs-a", region: euWest, capacity: 2}, {id: "gs-b", region: euWest, capacity: 5}}, euWest, "gs-b"},
		{"tie to smallest id", []server{{id: "gs-b", region: euWest, capacity: 3}, {id: "gs-a", region: euWest, capacity: 3}, {id: "gs-c", region: euWest, capacity: 3}}, euWest, "gs-a"},
		{"expired skipped", []server{{id: "gs-a", region: euWest, capacity: 10, expired: true}, {id: "gs-b", region: euWest, capacity: 1}}, euWest, "gs-b"},
		{"drained skipped", []server{{id: "gs-a", region: euWest, capacity: 10, drained: true}, {id: "gs-b", region: euWest, capacity: 1}}, euWest, "gs-b"},
		{"any region when empty", []server{{id: "gs-a", region: euWest, capacity: 2}, {id: "gs-b", region: usEast, capacity: 5}}, "", "gs-b"},
		{"no server in region", []server{{id: "gs-a", region: usEast, capacity: 5}}, euWest, ""},
		{"only expired or drained", []server{{id: "gs-a", region: euWest, capacity: 5, expired: true}, {id: "gs-b", region: euWest, capacity: 5, drained: true}}, euWest, ""},
		{"zero capacity", []server{{id: "gs-a", region: euWest, capacity: 0}}, euWest, ""},
		{"no servers", nil, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := h.fresh(t)
			for _, s := range tc.servers {
				registered := base
				if s.expired {
					registered = base.Add(-time.Minute) // expired 30s before base
				}
				req := contracts.ServerRequest{Address: "addr-" + s.id, Region: s.region, Capacity: s.capacity}
				if _, err := h.s.RegisterServer(h.ctx, s.id, req, serverTT, registered); err != nil {
					t.Fatalf("RegisterServer(%s): %v", s.id, err)
				}
				if s.drained {
					if _, err := h.s.DrainServer(h.ctx, s.id); err != nil {
						t.Fatalf("DrainServer(%s): %v", s.id, err)
					}
				}
			}
			m := h.matched(mid("m-1"), tc.region)
			got, err := h.s.AssignMatch(h.ctx, mid("m-1"), at(1))
			if tc.want == "" {
				if !errors.Is(err, store.ErrNoCapacity) {
					t.Fatalf("AssignMatch = %s, %v; want ErrNoCapacity", jsonOf(got), err)
				}
				for _, id := range m.TicketIDs {
					h.want(id, contracts.StatusMatched, 2)
				}
				return
			}
			if err != nil {
				t.Fatalf("AssignMatch: %v", err)
			}
			if got.ServerID != tc.want {
				t.Errorf("AssignMatch chose %s, want %s", got.ServerID, tc.want)
			}
		})
	}
}

// testAssignFreeSlots checks that the choice follows free slots as
// allocations fill servers up.
func testAssignFreeSlots(t *testing.T, h *harness) {
	h.server("gs-a", euWest, 3)
	h.server("gs-b", euWest, 2)
	for i, want := range []string{"gs-a", "gs-a", "gs-b", "gs-a", "gs-b", ""} {
		id := mid(fmt.Sprintf("m-%d", i))
		h.matched(id, euWest)
		got, err := h.s.AssignMatch(h.ctx, id, at(1))
		if want == "" {
			if !errors.Is(err, store.ErrNoCapacity) {
				t.Fatalf("AssignMatch(%s) with every server full = %s, %v; want ErrNoCapacity", id, jsonOf(got), err)
			}
			continue
		}
		if err != nil || got.ServerID != want {
			t.Fatalf("AssignMatch(%s) = %s, %v; want server %s", id, jsonOf(got), err, want)
		}
	}
	for id, want := range map[string]int{"gs-a": 3, "gs-b": 2} {
		if got := h.getServer(id).Allocated; got != want {
			t.Errorf("server %s allocated %d, want %d", id, got, want)
		}
	}
}

func testAssignMatch(t *testing.T, h *harness) {
	before := h.server("gs-1", euWest, 2)
	tks := []contracts.Ticket{h.create(tid("a"), "p-a1", "p-a2"), h.create(tid("b"), "p-b")}
	m := newMatch(mid("m-1"), euWest, tks...)
	if err := h.s.ClaimMatch(h.ctx, m, at(1)); err != nil {
		t.Fatalf("ClaimMatch: %v", err)
	}
	got, err := h.s.AssignMatch(h.ctx, mid("m-1"), at(5))
	if err != nil {
		t.Fatalf("AssignMatch: %v", err)
	}
	want := contracts.Assignment{ServerID: "gs-1", Address: before.Address, Region: euWest}
	if got != want {
		t.Fatalf("AssignMatch = %s, want %s", jsonOf(got), jsonOf(want))
	}
	check := func() {
		t.Helper()
		for _, tk := range tks {
			tk := h.want(tk.ID, contracts.StatusAssigned, 3)
			if tk.Assignment == nil || *tk.Assignment != want {
				t.Errorf("ticket %s shows assignment %s, want %s", tk.ID, jsonOf(tk.Assignment), jsonOf(want))
			}
			if !reflect.DeepEqual(tk.Match, m.Ref()) {
				t.Errorf("ticket %s shows match %s, want %s", tk.ID, jsonOf(tk.Match), jsonOf(m.Ref()))
			}
		}
		srv := h.getServer("gs-1")
		if srv.Allocated != 1 || srv.Version != before.Version+1 {
			t.Errorf("server allocated %d at version %d, want 1 at version %d", srv.Allocated, srv.Version, before.Version+1)
		}
		a := h.allocations("gs-1")
		if a.ServerID != "gs-1" || a.Version != srv.Version || len(a.Allocations) != 1 {
			t.Fatalf("allocations = %s, want m-1 at version %d", jsonOf(a), srv.Version)
		}
		al := a.Allocations[0]
		if al.MatchID != mid("m-1") || al.Queue != m.Queue || !reflect.DeepEqual(al.Teams, m.Teams) ||
			!reflect.DeepEqual(al.Players, m.Players) || !reflect.DeepEqual(al.TicketIDs, m.TicketIDs) {
			t.Errorf("allocation = %s, want the players, teams and tickets of %s", jsonOf(al), jsonOf(m))
		}
		if !al.AllocatedAt.Equal(at(5)) {
			t.Errorf("allocated at %v, want %v", al.AllocatedAt, at(5))
		}
	}
	check()
	h.wantFree("p-a1", "p-a2", "p-b")

	// Assigning again answers the same assignment and changes nothing, even
	// once the server could no longer be chosen.
	if _, err := h.s.DrainServer(h.ctx, "gs-1"); err != nil {
		t.Fatalf("DrainServer: %v", err)
	}
	again, err := h.s.AssignMatch(h.ctx, mid("m-1"), at(6))
	if err != nil || again != want {
		t.Fatalf("AssignMatch again = %s, %v; want %s", jsonOf(again), err, jsonOf(want))
	}
	check()

	if err := h.s.FailMatch(h.ctx, mid("m-1"), "test", at(7)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("FailMatch of an assigned match: %v, want ErrConflict", err)
	}
	check()
}

func testAssignErrors(t *testing.T, h *harness) {
	h.server("gs-1", euWest, 2)
	for _, id := range []string{mid("m-unknown"), "m-unknown"} {
		if _, err := h.s.AssignMatch(h.ctx, id, at(1)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("AssignMatch(%s) of an unknown match: %v, want ErrNotFound", id, err)
		}
	}
	m := h.matched(mid("m-1"), euWest)
	if err := h.s.FailMatch(h.ctx, mid("m-1"), contracts.ReasonNoServerCapacity, at(1)); err != nil {
		t.Fatalf("FailMatch: %v", err)
	}
	if _, err := h.s.AssignMatch(h.ctx, mid("m-1"), at(2)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("AssignMatch of a failed match: %v, want ErrConflict", err)
	}
	for _, id := range m.TicketIDs {
		h.want(id, contracts.StatusFailed, 3)
	}
	if srv := h.getServer("gs-1"); srv.Allocated != 0 {
		t.Errorf("server allocated %d after refusing a failed match, want 0", srv.Allocated)
	}
}

func testFailMatch(t *testing.T, h *harness) {
	tks := []contracts.Ticket{h.create(tid("a"), "p-a1", "p-a2"), h.create(tid("b"), "p-b")}
	h.claim(mid("m-1"), tks...)
	for i := range 2 { // failing again is harmless
		if err := h.s.FailMatch(h.ctx, mid("m-1"), contracts.ReasonNoServerCapacity, at(5+i)); err != nil {
			t.Fatalf("FailMatch #%d: %v", i+1, err)
		}
		for _, tk := range tks {
			got := h.want(tk.ID, contracts.StatusFailed, 3)
			if got.Reason != contracts.ReasonNoServerCapacity {
				t.Errorf("ticket %s failed with reason %q, want %q", tk.ID, got.Reason, contracts.ReasonNoServerCapacity)
			}
		}
	}
	h.wantFree("p-a1", "p-a2", "p-b")
	for _, id := range []string{mid("m-unknown"), "m-unknown"} {
		if err := h.s.FailMatch(h.ctx, id, "test", at(5)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("FailMatch(%s) of an unknown match: %v, want ErrNotFound", id, err)
		}
	}
}

func testEndMatch(t *testing.T, h *harness) {
	h.server("gs-1", euWest, 1)
	h.server("gs-2", usEast, 1)
	h.matched(mid("m-1"), euWest)
	h.matched(mid("m-2"), euWest)
	h.assign(mid("m-1"))
	if _, err := h.s.AssignMatch(h.ctx, mid("m-2"), at(3)); !errors.Is(err, store.ErrNoCapacity) {
		t.Fatalf("AssignMatch to a full server: %v, want ErrNoCapacity", err)
	}
	full := h.getServer("gs-1")
	if err := h.s.EndMatch(h.ctx, "gs-1", mid("m-1"), at(4)); err != nil {
		t.Fatalf("EndMatch: %v", err)
	}
	srv := h.getServer("gs-1")
	if srv.Allocated != 0 || srv.Version != full.Version+1 {
		t.Errorf("after EndMatch server allocated %d at version %d, want 0 at version %d", srv.Allocated, srv.Version, full.Version+1)
	}
	if a := h.allocations("gs-1"); a.Version != srv.Version || len(a.Allocations) != 0 {
		t.Errorf("allocations after EndMatch = %s, want none at version %d", jsonOf(a), srv.Version)
	}
	// The freed slot takes the next match.
	if got, err := h.s.AssignMatch(h.ctx, mid("m-2"), at(5)); err != nil || got.ServerID != "gs-1" {
		t.Fatalf("AssignMatch after EndMatch = %s, %v; want gs-1", jsonOf(got), err)
	}

	for _, c := range []struct{ server, match string }{
		{"gs-1", mid("m-1")},       // already ended
		{"gs-2", mid("m-2")},       // hosted elsewhere
		{"gs-1", mid("m-unknown")}, // no such match
		{"gs-unknown", mid("m-2")}, // no such server
	} {
		if err := h.s.EndMatch(h.ctx, c.server, c.match, at(6)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("EndMatch(%s, %s): %v, want ErrNotFound", c.server, c.match, err)
		}
	}
	if srv := h.getServer("gs-1"); srv.Allocated != 1 {
		t.Errorf("server allocated %d, want 1", srv.Allocated)
	}
}

func testRegions(t *testing.T, h *harness) {
	listed := func() []string {
		t.Helper()
		regions, err := h.s.Regions(h.ctx)
		if err != nil {
			t.Fatalf("Regions: %v", err)
		}
		slices.Sort(regions)
		return regions
	}
	if got := listed(); len(got) != 0 {
		t.Errorf("regions before any server registered = %q, want none", got)
	}
	for i, region := range []string{euWest, "us-east", euWest} {
		req := contracts.ServerRequest{Address: "10.0.0.7:7777", Region: region, Capacity: 1}
		if _, err := h.s.RegisterServer(h.ctx, fmt.Sprintf("gs-%d", i), req, serverTT, base); err != nil {
			t.Fatalf("RegisterServer: %v", err)
		}
	}
	if got, want := listed(), []string{euWest, "us-east"}; !slices.Equal(got, want) {
		t.Errorf("regions = %q, want %q: each region a server registered in, once", got, want)
	}
}

func testStats(t *testing.T, h *harness) {
	tks := h.solo(tid("a"), tid("b"), tid("c"))
	h.pool(tks[0], 1500)
	h.matched(mid("m-1"), euWest)
	h.server("gs-1", euWest, 4)
	h.server("gs-2", euWest, 2)
	if _, err := h.s.DrainServer(h.ctx, "gs-2"); err != nil {
		t.Fatal(err)
	}
	old := contracts.ServerRequest{Address: "h:1", Region: "us-east", Capacity: 3}
	if _, err := h.s.RegisterServer(h.ctx, "gs-3", old, serverTT, base.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	st, err := h.s.Stats(h.ctx, base.Add(time.Second))
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if got, want := st.Queues[duel], (store.QueueStats{Searching: 3, Pooled: 1, WaitingForServer: 1}); got != want {
		t.Errorf("queue stats %+v, want %+v: three searching, one in the pool, one match waiting", got, want)
	}
	for region, want := range map[string]store.RegionStats{
		euWest:    {Servers: 2, Live: 2, Draining: 1, FreeSlots: 4},
		"us-east": {Servers: 1},
	} {
		if got := st.Regions[region]; got != want {
			t.Errorf("region %s stats %+v, want %+v", region, got, want)
		}
	}
}

package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

func testCreateRoundTrip(t *testing.T, h *harness) {
	tk := newTicket(tid("t-1"), "p-1", "p-2")
	tk.CreatedAt = base.Add(123456789 * time.Nanosecond)
	tk.UpdatedAt = tk.CreatedAt
	tk.Latencies = map[string]float64{euWest: 31, usEast: 112.5}
	tk.Attributes = map[string]string{"platform": "pc", "mode": "ranked"}
	tk.Players[1].Skill = 1732.25
	if err := h.s.CreateTicket(h.ctx, tk, base.Add(time.Hour)); err != nil {
		t.Fatalf("CreateTicket: %v", err)
	}
	sameTicket(t, h.get(tid("t-1")), tk)
	h.wantNoTicket(tid("t-2"))
	h.wantNoTicket("t-1")
}

func testCreatePlayerBusy(t *testing.T, h *harness) {
	h.create(tid("t-1"), "p-1", "p-2")
	err := h.s.CreateTicket(h.ctx, newTicket(tid("t-2"), "p-3", "p-2"), base.Add(time.Hour))
	checkBusy(t, err, "p-2", tid("t-1"))
	h.wantNoTicket(tid("t-2"))
	// Nothing of t-2 was written: its free member can still queue alone.
	h.wantFree("p-3")
	h.want(tid("t-1"), contracts.StatusSearching, 1)
	h.wantBusy("p-1", tid("t-1"))
}

// testPlayersReleased checks that a ticket's players are released when it
// reaches a terminal status, and held while it is matched.
func testPlayersReleased(t *testing.T, h *harness) {
	tests := []struct {
		name     string
		status   contracts.Status
		released bool
		drive    func(h *harness, a, b contracts.Ticket)
	}{
		{"cancelled", contracts.StatusCancelled, true, func(h *harness, a, _ contracts.Ticket) {
			if _, err := h.s.CancelTicket(h.ctx, a.ID, at(1)); err != nil {
				h.t.Fatalf("CancelTicket: %v", err)
			}
		}},
		{"expired", contracts.StatusExpired, true, func(h *harness, a, _ contracts.Ticket) {
			if ok, err := h.s.ExpireTicket(h.ctx, a.ID, at(1)); err != nil || !ok {
				h.t.Fatalf("ExpireTicket = %v, %v; want true", ok, err)
			}
		}},
		{"matched", contracts.StatusMatched, false, func(h *harness, a, b contracts.Ticket) {
			h.claim(mid("m-1"), a, b)
		}},
		{"failed", contracts.StatusFailed, true, func(h *harness, a, b contracts.Ticket) {
			h.claim(mid("m-1"), a, b)
			if err := h.s.FailMatch(h.ctx, mid("m-1"), contracts.ReasonNoServerCapacity, at(2)); err != nil {
				h.t.Fatalf("FailMatch: %v", err)
			}
		}},
		{"assigned", contracts.StatusAssigned, true, func(h *harness, a, b contracts.Ticket) {
			h.server("gs-1", euWest, 1)
			h.claim(mid("m-1"), a, b)
			h.assign(mid("m-1"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := h.fresh(t)
			a := h.create(tid("a"), "p-a1", "p-a2")
			b := h.create(tid("b"), "p-b")
			tc.drive(h, a, b)
			if got := h.get(tid("a")).Status; got != tc.status {
				t.Fatalf("ticket a is %s, want %s", got, tc.status)
			}
			if tc.released {
				h.wantFree("p-a1", "p-a2")
			} else {
				h.wantBusy("p-a1", tid("a"))
				h.wantBusy("p-a2", tid("a"))
			}
		})
	}
}

// testRecordsAreCopied checks that callers cannot change stored records
// through the values they passed in or got back.
func testRecordsAreCopied(t *testing.T, h *harness) {
	mk := func() contracts.Ticket {
		tk := newTicket(tid("t-1"), "p-1")
		tk.Latencies = map[string]float64{euWest: 20}
		tk.Attributes = map[string]string{"platform": "pc"}
		return tk
	}
	tk := mk()
	if err := h.s.CreateTicket(h.ctx, tk, base.Add(time.Hour)); err != nil {
		t.Fatalf("CreateTicket: %v", err)
	}
	tk.Players[0].ID = "changed"
	tk.Latencies[euWest] = 999
	tk.Attributes["platform"] = "changed"
	got := h.get(tid("t-1"))
	sameTicket(t, got, mk())
	got.Players[0].Skill = -1
	got.Latencies["x"] = 1
	got.Attributes["x"] = "y"
	sameTicket(t, h.get(tid("t-1")), mk())

	e := h.entry(mk(), 1500, base)
	e.Latencies = map[string]float64{euWest: 20}
	h.poolAt(duel, e)
	e.Latencies[euWest] = 999
	es := h.candidates(duel, 1500, 0, 10)
	if len(es) != 1 || es[0].Latencies[euWest] != 20 {
		t.Fatalf("pool entry changed through the caller's map: %s", jsonOf(es))
	}
	es[0].Latencies[euWest] = 999
	if es := h.candidates(duel, 1500, 0, 10); len(es) != 1 || es[0].Latencies[euWest] != 20 {
		t.Fatalf("pool entry changed through a returned map: %s", jsonOf(es))
	}

	b := h.create(tid("t-2"), "p-2")
	m := newMatch(mid("m-1"), euWest, mk(), b)
	if err := h.s.ClaimMatch(h.ctx, m, at(1)); err != nil {
		t.Fatalf("ClaimMatch: %v", err)
	}
	want := newMatch(mid("m-1"), euWest, mk(), b)
	m.Teams[0][0] = "changed"
	m.TicketIDs[0] = "changed"
	m.Players[0].ID = "changed"
	got2, err := h.s.Match(h.ctx, mid("m-1"))
	if err != nil {
		t.Fatalf("Match: %v", err)
	}
	sameMatch(t, got2, want)
	got2.Teams[0][0] = "changed"
	tk1 := h.get(tid("t-1"))
	tk1.Match.Teams[0][0] = "changed"
	got3, err := h.s.Match(h.ctx, mid("m-1"))
	if err != nil {
		t.Fatalf("Match: %v", err)
	}
	sameMatch(t, got3, want)
	if r := h.get(tid("t-1")).Match; r == nil || r.Teams[0][0] != "p-1" {
		t.Fatalf("match ref changed through a returned ticket: %s", jsonOf(r))
	}
}

func testDeleteTicket(t *testing.T, h *harness) {
	a := h.createExpiring(at(60), tid("a"), "p-a")
	h.pool(a, 1500)
	if err := h.s.DeleteTicket(h.ctx, tid("a")); err != nil {
		t.Fatalf("DeleteTicket: %v", err)
	}
	h.wantNoTicket(tid("a"))
	if es := h.candidates(duel, 1500, 100, 10); len(es) != 0 {
		t.Errorf("pool still holds %v after DeleteTicket", ids(es))
	}
	if got, err := h.s.ExpireDue(h.ctx, at(3600), 10); err != nil || len(got) != 0 {
		t.Errorf("ExpireDue after DeleteTicket = %v, %v; want nothing", got, err)
	}
	h.wantFree("p-a")
	if ok, err := h.s.AddToPool(h.ctx, duel, h.entry(a, 1500, base)); err != nil || ok {
		t.Errorf("AddToPool of a deleted ticket = %v, %v; want false", ok, err)
	}
	for _, id := range []string{tid("a"), tid("never-existed"), "never-existed"} {
		if err := h.s.DeleteTicket(h.ctx, id); err != nil {
			t.Errorf("DeleteTicket(%s) of an unknown ticket: %v", id, err)
		}
	}

	// A ticket a matcher has claimed was announced after all: deleting it
	// would leave a match naming a ticket that is gone, and free its
	// players for a second match.
	b, c := h.create(tid("b"), "p-b"), h.create(tid("c"), "p-c")
	h.claim(mid("m-del"), b, c)
	err := h.s.DeleteTicket(h.ctx, tid("b"))
	var ce *store.ConflictError
	if !errors.As(err, &ce) || ce.TicketID != tid("b") || ce.Status != contracts.StatusMatched {
		t.Errorf("DeleteTicket of a matched ticket = %v; want a ConflictError naming it as matched", err)
	}
	h.want(tid("b"), contracts.StatusMatched, 2)
	h.wantBusy("p-b", tid("b"))
	cancelled := h.create(tid("d"), "p-d")
	if _, err := h.s.CancelTicket(h.ctx, cancelled.ID, at(1)); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	if err := h.s.DeleteTicket(h.ctx, cancelled.ID); !errors.Is(err, store.ErrConflict) {
		t.Errorf("DeleteTicket of a cancelled ticket = %v; want ErrConflict", err)
	}
	h.want(cancelled.ID, contracts.StatusCancelled, 2)
}

func testCancelTicket(t *testing.T, h *harness) {
	a := h.create(tid("a"), "p-a1", "p-a2")
	h.pool(a, 1500)
	got, err := h.s.CancelTicket(h.ctx, tid("a"), at(5))
	if err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	want := a
	want.Status, want.Version, want.UpdatedAt = contracts.StatusCancelled, 2, at(5)
	sameTicket(t, got, want)
	sameTicket(t, h.get(tid("a")), want)
	if h.inPool(tid("a")) {
		t.Errorf("cancelled ticket is still a candidate")
	}
	h.wantFree("p-a1", "p-a2")

	// Cancelling again answers the cancelled ticket and changes nothing.
	got, err = h.s.CancelTicket(h.ctx, tid("a"), at(9))
	if err != nil {
		t.Fatalf("CancelTicket again: %v", err)
	}
	sameTicket(t, got, want)
	sameTicket(t, h.get(tid("a")), want)

	for _, id := range []string{tid("nope"), "nope"} {
		if _, err := h.s.CancelTicket(h.ctx, id, at(9)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CancelTicket(%s) of an unknown ticket: %v, want ErrNotFound", id, err)
		}
	}
}

func testCancelConflict(t *testing.T, h *harness) {
	tests := []struct {
		name    string
		status  contracts.Status
		version int64
		drive   func(h *harness, a, b contracts.Ticket)
	}{
		{"matched", contracts.StatusMatched, 2, func(h *harness, a, b contracts.Ticket) {
			h.claim(mid("m-1"), a, b)
		}},
		{"assigned", contracts.StatusAssigned, 3, func(h *harness, a, b contracts.Ticket) {
			h.server("gs-1", euWest, 1)
			h.claim(mid("m-1"), a, b)
			h.assign(mid("m-1"))
		}},
		{"expired", contracts.StatusExpired, 2, func(h *harness, a, _ contracts.Ticket) {
			if ok, err := h.s.ExpireTicket(h.ctx, a.ID, at(1)); err != nil || !ok {
				h.t.Fatalf("ExpireTicket = %v, %v", ok, err)
			}
		}},
		{"failed", contracts.StatusFailed, 3, func(h *harness, a, b contracts.Ticket) {
			h.claim(mid("m-1"), a, b)
			if err := h.s.FailMatch(h.ctx, mid("m-1"), "test", at(2)); err != nil {
				h.t.Fatalf("FailMatch: %v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := h.fresh(t)
			a, b := h.create(tid("a"), "p-a"), h.create(tid("b"), "p-b")
			tc.drive(h, a, b)
			before := h.want(tid("a"), tc.status, tc.version)
			got, err := h.s.CancelTicket(h.ctx, tid("a"), at(9))
			checkConflict(t, "CancelTicket", err, tid("a"), tc.status)
			sameTicket(t, got, before)
			sameTicket(t, h.get(tid("a")), before)
		})
	}
}

func testExpireTicket(t *testing.T, h *harness) {
	a := h.create(tid("a"), "p-a")
	h.pool(a, 1500)
	if ok, err := h.s.ExpireTicket(h.ctx, tid("a"), at(5)); err != nil || !ok {
		t.Fatalf("ExpireTicket = %v, %v; want true", ok, err)
	}
	h.want(tid("a"), contracts.StatusExpired, 2)
	if h.inPool(tid("a")) {
		t.Errorf("expired ticket is still a candidate")
	}
	h.wantFree("p-a")
	if ok, err := h.s.ExpireTicket(h.ctx, tid("a"), at(6)); err != nil || ok {
		t.Errorf("ExpireTicket again = %v, %v; want false", ok, err)
	}
	h.want(tid("a"), contracts.StatusExpired, 2)

	b, c := h.create(tid("b"), "p-b"), h.create(tid("c"), "p-c")
	h.claim(mid("m-1"), b, c)
	d := h.create(tid("d"), "p-d")
	if _, err := h.s.CancelTicket(h.ctx, d.ID, at(1)); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	for _, id := range []string{tid("b"), tid("d"), tid("unknown"), "unknown"} {
		if ok, err := h.s.ExpireTicket(h.ctx, id, at(6)); err != nil || ok {
			t.Errorf("ExpireTicket(%s) = %v, %v; want false, nil", id, ok, err)
		}
	}
	h.want(tid("b"), contracts.StatusMatched, 2)
	h.want(tid("d"), contracts.StatusCancelled, 2)
}

func testExpireDue(t *testing.T, h *harness) {
	now := at(180)
	// Due tickets in two queues, one of them not in any pool.
	due := []string{tid("d1"), tid("d2"), tid("d3"), "ranked.r1"}
	h.createExpiring(at(60), tid("d1"), "p-d1")
	h.createExpiring(at(120), tid("d2"), "p-d2")
	h.createExpiring(now, tid("d3"), "p-d3") // due exactly at now
	h.createExpiring(at(90), "ranked.r1", "p-r1")
	h.createExpiring(at(600), tid("later"), "p-later")
	c := h.createExpiring(at(60), tid("c"), "p-c")
	m1 := h.createExpiring(at(60), tid("m1"), "p-m1")
	m2 := h.createExpiring(at(60), tid("m2"), "p-m2")
	h.pool(h.get(tid("d1")), 1500)
	if _, err := h.s.CancelTicket(h.ctx, c.ID, at(1)); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	h.claim(mid("m-1"), m1, m2)

	var all []string
	for i, wantN := range []int{2, 2, 0} {
		got, err := h.s.ExpireDue(h.ctx, now, 2)
		if err != nil {
			t.Fatalf("ExpireDue call %d: %v", i+1, err)
		}
		if len(got) != wantN {
			t.Errorf("ExpireDue call %d returned %v, want %d ids", i+1, got, wantN)
		}
		all = append(all, got...)
	}
	if !slices.Equal(sorted(all), due) {
		t.Errorf("ExpireDue returned %v in all, want %v once each", all, due)
	}
	for _, id := range due {
		tk := h.want(id, contracts.StatusExpired, 2)
		h.wantFree(tk.PlayerIDs()...)
	}
	if h.inPool(tid("d1")) {
		t.Errorf("expired ticket d1 is still a candidate")
	}
	h.want(tid("later"), contracts.StatusSearching, 1)
	h.want(tid("c"), contracts.StatusCancelled, 2)
	h.want(tid("m1"), contracts.StatusMatched, 2)
	h.want(tid("m2"), contracts.StatusMatched, 2)

	got, err := h.s.ExpireDue(h.ctx, at(600), 10)
	if err != nil || !slices.Equal(got, []string{tid("later")}) {
		t.Errorf("ExpireDue(at 600s) = %v, %v; want [later]", got, err)
	}
	h.want(tid("later"), contracts.StatusExpired, 2)
}

package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

func testAddToPool(t *testing.T, h *harness) {
	a := h.create(tid("a"), "p-a")
	for i := range 2 { // adding again is harmless
		if ok, err := h.s.AddToPool(h.ctx, duel, h.entry(a, 1500, base)); err != nil || !ok {
			t.Fatalf("AddToPool #%d = %v, %v; want true", i+1, ok, err)
		}
	}
	if got := ids(h.candidates(duel, 1500, 10, 10)); !slices.Equal(got, []string{tid("a")}) {
		t.Errorf("candidates = %v, want [a] once", got)
	}
	if _, err := h.s.CancelTicket(h.ctx, tid("a"), at(1)); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	b, c := h.create(tid("b"), "p-b"), h.create(tid("c"), "p-c")
	h.claim(mid("m-1"), b, c)
	for _, tk := range []contracts.Ticket{a, b, newTicket(tid("unknown"), "p-x"), newTicket("unknown", "p-x")} {
		if ok, err := h.s.AddToPool(h.ctx, duel, h.entry(tk, 1500, base)); err != nil || ok {
			t.Errorf("AddToPool(%s) of a ticket that is not searching = %v, %v; want false", tk.ID, ok, err)
		}
	}
	if got := ids(h.candidates(duel, 1500, 10, 10)); len(got) != 0 {
		t.Errorf("candidates = %v, want none", got)
	}
}

func testCandidatesOrder(t *testing.T, h *harness) {
	// Distances from 1000: 0; 10 (four entries, ordered by creation across
	// both sides); 20 (the edge of the window); 21 (outside).
	pool := []struct {
		id      string
		skill   float64
		created int
	}{
		{"far-low", 979, 0},
		{"edge-low", 980, 0},
		{"low-late", 990, 7},
		{"low-early", 990, 2},
		{"same", 1000, 5},
		{"high-early", 1010, 1},
		{"high-late", 1010, 8},
		{"edge-high", 1020, 3},
		{"far-high", 1021, 0},
	}
	for _, p := range pool {
		tk := h.create(tid(p.id), "p-"+p.id)
		h.poolAt(duel, h.entry(tk, p.skill, at(p.created)))
	}
	other := h.create("ranked.other", "p-other")
	h.poolAt("ranked", h.entry(other, 1000, base))

	tests := []struct {
		name   string
		queue  string
		skill  float64
		maxGap float64
		limit  int
		want   []string // ticket names in queue
	}{
		{"window", duel, 1000, 20, 100, []string{"same", "high-early", "low-early", "low-late", "high-late", "edge-low", "edge-high"}},
		{"limit", duel, 1000, 20, 3, []string{"same", "high-early", "low-early"}},
		{"zero gap", duel, 1000, 0, 100, []string{"same"}},
		{"between entries", duel, 1015, 5, 100, []string{"high-early", "edge-high", "high-late"}},
		{"below everything", duel, 900, 50, 100, nil},
		{"other queue", "ranked", 1000, 20, 100, []string{"other"}},
		{"empty queue", "nobody", 1000, 20, 100, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ids(h.candidates(tc.queue, tc.skill, tc.maxGap, tc.limit))
			var want []string
			for _, name := range tc.want {
				want = append(want, tc.queue+"."+name)
			}
			if len(got) != len(want) || !slices.Equal(got, want) {
				t.Errorf("Candidates(%s, %v, %v, %d) = %v, want %v", tc.queue, tc.skill, tc.maxGap, tc.limit, got, want)
			}
		})
	}
}

func testCandidatesRoundTrip(t *testing.T, h *harness) {
	h.create(tid("a"), "p-a1", "p-a2")
	e := store.PoolEntry{
		TicketID:  tid("a"),
		Skill:     1534.75,
		Players:   2,
		CreatedAt: base.Add(987654321 * time.Nanosecond),
		Latencies: map[string]float64{euWest: 31.5, usEast: 98},
	}
	h.poolAt(duel, e)
	got := h.candidates(duel, 1534.75, 0, 10)
	if len(got) != 1 {
		t.Fatalf("candidates = %s, want the one entry", jsonOf(got))
	}
	sameEntry(t, got[0], e)
}

func testClaimMatch(t *testing.T, h *harness) {
	a, b := h.create(tid("a"), "p-a1", "p-a2"), h.create(tid("b"), "p-b")
	h.pool(a, 1500)
	h.pool(b, 1500)
	m := newMatch(mid("m-1"), euWest, a, b)
	if err := h.s.ClaimMatch(h.ctx, m, at(5)); err != nil {
		t.Fatalf("ClaimMatch: %v", err)
	}
	check := func() {
		t.Helper()
		for _, tk := range []contracts.Ticket{a, b} {
			want := tk
			want.Status, want.Version, want.UpdatedAt, want.Match = contracts.StatusMatched, 2, at(5), m.Ref()
			sameTicket(t, h.get(tk.ID), want)
			if h.inPool(tk.ID) {
				t.Errorf("matched ticket %s is still a candidate", tk.ID)
			}
		}
		got, err := h.s.Match(h.ctx, mid("m-1"))
		if err != nil {
			t.Fatalf("Match: %v", err)
		}
		sameMatch(t, got, m)
	}
	check()
	h.wantBusy("p-a2", tid("a"))

	// Claiming the same match again changes nothing.
	if err := h.s.ClaimMatch(h.ctx, m, at(9)); err != nil {
		t.Fatalf("ClaimMatch again: %v", err)
	}
	check()

	for _, id := range []string{mid("m-unknown"), "m-unknown"} {
		if _, err := h.s.Match(h.ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Match(%s) of an unknown id: %v, want ErrNotFound", id, err)
		}
	}
}

func testClaimAllOrNothing(t *testing.T, h *harness) {
	tks := h.solo(tid("a"), tid("b"), tid("c"), tid("d"))
	for _, tk := range tks {
		h.pool(tk, 1500)
	}
	if _, err := h.s.CancelTicket(h.ctx, tid("c"), at(1)); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	if ok, err := h.s.ExpireTicket(h.ctx, tid("d"), at(1)); err != nil || !ok {
		t.Fatalf("ExpireTicket = %v, %v", ok, err)
	}
	err := h.s.ClaimMatch(h.ctx, newMatch(mid("m-1"), euWest, tks...), at(5))
	checkConflict(t, "ClaimMatch with a cancelled ticket", err, tid("c"), contracts.StatusCancelled)
	for _, id := range []string{tid("a"), tid("b")} {
		sameTicket(t, h.get(id), tks[slices.IndexFunc(tks, func(tk contracts.Ticket) bool { return tk.ID == id })])
		if !h.inPool(id) {
			t.Errorf("ticket %s left the pool in a failed claim", id)
		}
	}
	if _, err := h.s.Match(h.ctx, mid("m-1")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Match after a failed claim: %v, want ErrNotFound", err)
	}
	h.claim(mid("m-2"), tks[0], tks[1])
}

func testClaimMatchedTicket(t *testing.T, h *harness) {
	tks := h.solo(tid("a"), tid("b"), tid("c"))
	h.claim(mid("m-1"), tks[0], tks[1])
	err := h.s.ClaimMatch(h.ctx, newMatch(mid("m-2"), euWest, tks[2], tks[1]), at(5))
	checkConflict(t, "ClaimMatch of a matched ticket", err, tid("b"), contracts.StatusMatched)
	sameTicket(t, h.get(tid("c")), tks[2])
	if r := h.get(tid("b")).Match; r == nil || r.ID != mid("m-1") {
		t.Errorf("ticket b shows match %s, want m-1", jsonOf(r))
	}
}

func testClaimMissingTicket(t *testing.T, h *harness) {
	a := h.create(tid("a"), "p-a")
	h.pool(a, 1500)
	ghost := newTicket(tid("ghost"), "p-ghost")
	err := h.s.ClaimMatch(h.ctx, newMatch(mid("m-1"), euWest, a, ghost), at(5))
	checkConflict(t, "ClaimMatch with a missing ticket", err, tid("ghost"), "")
	sameTicket(t, h.get(tid("a")), a)
	if !h.inPool(tid("a")) {
		t.Errorf("ticket a left the pool in a failed claim")
	}
	h.wantNoTicket(tid("ghost"))
}

func testClaimOutsidePool(t *testing.T, h *harness) {
	tks := h.solo(tid("a"), tid("b"))
	h.claim(mid("m-1"), tks...)
	h.want(tid("a"), contracts.StatusMatched, 2)
	h.want(tid("b"), contracts.StatusMatched, 2)
}

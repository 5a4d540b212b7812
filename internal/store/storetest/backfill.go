package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// running registers server gs in euWest and places a match of two fresh
// solo tickets on it: a running match whose server may ask for backfill.
func (h *harness) running(gs, match string) contracts.Match {
	h.t.Helper()
	h.server(gs, euWest, 4)
	m := h.matched(match, euWest)
	if a := h.assign(match); a.ServerID != gs {
		h.t.Fatalf("match %s placed on %s, want %s", match, a.ServerID, gs)
	}
	return m
}

// backfill asks for open seats per team of the running match m on gs.
func (h *harness) backfill(gs string, m contracts.Match, created time.Time, open ...int) contracts.Backfill {
	h.t.Helper()
	b, err := h.s.RequestBackfill(h.ctx, contracts.Backfill{MatchID: m.ID, ServerID: gs, Queue: m.Queue, Region: m.Region,
		Open: open, Teams: m.Teams, Skill: 1500, CreatedAt: created})
	if err != nil {
		h.t.Fatalf("RequestBackfill(%s, %v): %v", m.ID, open, err)
	}
	return b
}

func (h *harness) backfills() []contracts.Backfill {
	h.t.Helper()
	bs, err := h.s.Backfills(h.ctx, duel)
	if err != nil {
		h.t.Fatalf("Backfills: %v", err)
	}
	return bs
}

// seated is the ref of m with ticket tk's players in team.
func seated(m contracts.Match, team int, tk contracts.Ticket) contracts.MatchRef {
	ref := *m.Ref()
	ref.Teams = cloneTeams(ref.Teams)
	ref.Teams[team] = append(ref.Teams[team], tk.PlayerIDs()...)
	return ref
}

func cloneTeams(teams [][]string) [][]string {
	out := make([][]string, len(teams))
	for i, t := range teams {
		out[i] = slices.Clone(t)
	}
	return out
}

// testBackfill: a seat opened in a running match is filled by a searching
// ticket, which is assigned to the match's server, and the server sees it.
func testBackfill(t *testing.T, h *harness) {
	m := h.running("gs-1", mid("m"))
	c := h.create(tid("c"), "p-c")
	h.pool(c, 1500)
	before := h.getServer("gs-1")
	b := h.backfill("gs-1", m, at(3), 1, 0)
	if got := h.backfills(); len(got) != 1 || got[0].MatchID != m.ID || !slices.Equal(got[0].Open, []int{1, 0}) ||
		got[0].ServerID != "gs-1" || !got[0].CreatedAt.Equal(b.CreatedAt) || got[0].Skill != 1500 {
		t.Fatalf("Backfills = %s, want the request of %s", jsonOf(got), m.ID)
	}
	ref := seated(m, 0, c)
	a, err := h.s.FillBackfill(h.ctx, m.ID, c.ID, 0, ref, at(4))
	if err != nil || a.ServerID != "gs-1" {
		t.Fatalf("FillBackfill = %s, %v; want gs-1", jsonOf(a), err)
	}
	got := h.want(c.ID, contracts.StatusAssigned, 2)
	if got.Assignment == nil || *got.Assignment != a || got.Match == nil || got.Match.ID != m.ID || !slices.Equal(got.Match.Teams[0], ref.Teams[0]) {
		t.Errorf("filled ticket %s, want assigned to %s in match %s", jsonOf(got), jsonOf(a), jsonOf(ref))
	}
	if h.inPool(c.ID) {
		t.Errorf("filled ticket still in the pool")
	}
	h.wantFree("p-c")
	srv := h.getServer("gs-1")
	if srv.Version != before.Version+1 || srv.Allocated != before.Allocated {
		t.Errorf("server after the fill: version %d, allocated %d; want version %d, allocated %d (a backfill takes no slot)",
			srv.Version, srv.Allocated, before.Version+1, before.Allocated)
	}
	al := h.allocations("gs-1")
	if len(al.Allocations) != 1 || !slices.Contains(al.Allocations[0].TicketIDs, c.ID) ||
		!slices.Contains(al.Allocations[0].Teams[0], "p-c") || len(al.Allocations[0].Players) != 3 {
		t.Errorf("allocations after the fill = %s, want %s in team 0", jsonOf(al), c.ID)
	}
	if got := h.backfills(); len(got) != 0 {
		t.Errorf("Backfills after the last seat = %s, want none", jsonOf(got))
	}
	d := h.create(tid("d"), "p-d")
	if _, err := h.s.FillBackfill(h.ctx, m.ID, d.ID, 0, seated(m, 0, d), at(5)); !errors.Is(err, store.ErrNoCapacity) {
		t.Errorf("FillBackfill past the seats: %v, want ErrNoCapacity", err)
	}
	h.want(d.ID, contracts.StatusSearching, 1)
	if n, err := h.s.FinishFills(h.ctx, 10); err != nil || n != 0 {
		t.Errorf("FinishFills after whole fills = %d, %v; want 0", n, err)
	}
}

// testBackfillRules: a fill never exceeds a team's open seats, never takes
// a ticket that is not searching, and a request is replaced, withdrawn and
// ended with its match.
func testBackfillRules(t *testing.T, h *harness) {
	m := h.running("gs-1", mid("m"))
	if _, err := h.s.RequestBackfill(h.ctx, contracts.Backfill{MatchID: mid("nope"), ServerID: "gs-1", Queue: duel, Open: []int{1}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RequestBackfill of a match the server does not host: %v, want ErrNotFound", err)
	}
	h.server("gs-2", euWest, 1)
	if _, err := h.s.RequestBackfill(h.ctx, contracts.Backfill{MatchID: m.ID, ServerID: "gs-2", Queue: duel, Open: []int{1}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RequestBackfill by another server: %v, want ErrNotFound", err)
	}
	first := h.backfill("gs-1", m, at(3), 1, 1)
	duo := h.create(tid("duo"), "p-d1", "p-d2")
	for _, team := range []int{0, 1, 2, -1} {
		if _, err := h.s.FillBackfill(h.ctx, m.ID, duo.ID, team, seated(m, 0, duo), at(4)); !errors.Is(err, store.ErrNoCapacity) {
			t.Errorf("FillBackfill of a duo into team %d of one open seat: %v, want ErrNoCapacity", team, err)
		}
	}
	h.want(duo.ID, contracts.StatusSearching, 1)
	x, y := h.create(tid("x"), "p-x"), h.create(tid("y"), "p-y")
	h.claim(mid("m-xy"), x, y)
	_, err := h.s.FillBackfill(h.ctx, m.ID, x.ID, 0, seated(m, 0, x), at(4))
	checkConflict(t, "FillBackfill of a matched ticket", err, x.ID, contracts.StatusMatched)
	_, err = h.s.FillBackfill(h.ctx, m.ID, tid("nope"), 0, contracts.MatchRef{}, at(4))
	checkConflict(t, "FillBackfill of an unknown ticket", err, tid("nope"), "")

	// Asking again replaces the seats, and keeps the first request's time.
	again := h.backfill("gs-1", m, at(10), 0, 2)
	if !again.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("a replaced request is from %v, want the first's %v", again.CreatedAt, first.CreatedAt)
	}
	if got := h.backfills(); len(got) != 1 || !slices.Equal(got[0].Open, []int{0, 2}) {
		t.Errorf("Backfills after asking again = %s, want open [0 2]", jsonOf(got))
	}
	if _, err := h.s.FillBackfill(h.ctx, m.ID, duo.ID, 1, seated(m, 1, duo), at(11)); err != nil {
		t.Errorf("FillBackfill of a duo into two open seats: %v", err)
	}
	h.want(duo.ID, contracts.StatusAssigned, 2)

	// Withdrawn by asking for none; gone with the match.
	h.backfill("gs-1", m, at(12), 1, 0)
	h.backfill("gs-1", m, at(12), 0, 0)
	if got := h.backfills(); len(got) != 0 {
		t.Errorf("Backfills after withdrawing = %s, want none", jsonOf(got))
	}
	h.backfill("gs-1", m, at(13), 1, 0)
	if err := h.s.EndMatch(h.ctx, "gs-2", m.ID, at(14)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("EndMatch by another server: %v, want ErrNotFound", err)
	}
	if got := h.backfills(); len(got) != 1 {
		t.Errorf("another server's EndMatch withdrew the request: %s", jsonOf(got))
	}
	if err := h.s.EndMatch(h.ctx, "gs-1", m.ID, at(14)); err != nil {
		t.Fatalf("EndMatch: %v", err)
	}
	if got := h.backfills(); len(got) != 0 {
		t.Errorf("Backfills after the match ended = %s, want none", jsonOf(got))
	}
	z := h.create(tid("z"), "p-z")
	if _, err := h.s.FillBackfill(h.ctx, m.ID, z.ID, 0, seated(m, 0, z), at(15)); !errors.Is(err, store.ErrNoCapacity) {
		t.Errorf("FillBackfill of an ended match: %v, want ErrNoCapacity", err)
	}
	if _, err := h.s.RequestBackfill(h.ctx, contracts.Backfill{MatchID: m.ID, ServerID: "gs-1", Queue: duel, Open: []int{1}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RequestBackfill of an ended match: %v, want ErrNotFound", err)
	}
}

// testRaceBackfill races a fill against a matcher's claim of the same
// ticket, and two fills for one seat: a ticket is seated or matched,
// never both, and a seat takes one party.
func testRaceBackfill(t *testing.T, stores []store.Store) {
	h := newHarness(t, stores[0])
	m := h.running("gs-1", mid("m"))
	for round := range 20 {
		h.backfill("gs-1", m, at(3), 1, 0)
		x := h.create(tid(fmt.Sprintf("x-%d", round)), fmt.Sprintf("p-x-%d", round))
		y := h.create(tid(fmt.Sprintf("y-%d", round)), fmt.Sprintf("p-y-%d", round))
		z := h.create(tid(fmt.Sprintf("z-%d", round)), fmt.Sprintf("p-z-%d", round))
		var fillX, fillZ, claim error
		together(3, func(i int) {
			s := stores[(round+i)%len(stores)]
			switch i {
			case 0:
				_, fillX = s.FillBackfill(h.ctx, m.ID, x.ID, 0, seated(m, 0, x), at(4))
			case 1:
				_, fillZ = s.FillBackfill(h.ctx, m.ID, z.ID, 0, seated(m, 0, z), at(4))
			default:
				claim = s.ClaimMatch(h.ctx, newMatch(mid(fmt.Sprintf("m-xy-%d", round)), euWest, x, y), at(4))
			}
		})
		if (fillX == nil) == (claim == nil) {
			t.Fatalf("round %d: fill of x %v and claim of x %v: exactly one must win", round, fillX, claim)
		}
		if fillX == nil && fillZ == nil {
			t.Fatalf("round %d: x and z both took the one seat", round)
		}
		seatedOnce := 0
		for _, tk := range []contracts.Ticket{x, z} {
			if got := h.get(tk.ID); got.Status == contracts.StatusAssigned {
				seatedOnce++
			}
		}
		if fillX == nil || fillZ == nil {
			if seatedOnce != 1 {
				t.Errorf("round %d: %d tickets seated, want 1", round, seatedOnce)
			}
		}
		if fillX == nil {
			h.want(y.ID, contracts.StatusSearching, 1)
		} else {
			h.want(x.ID, contracts.StatusMatched, 2)
		}
	}
	al := h.allocations("gs-1")
	if len(al.Allocations) != 1 {
		t.Fatalf("allocations %s", jsonOf(al))
	}
	for _, id := range al.Allocations[0].TicketIDs {
		if got := h.get(id); got.Status != contracts.StatusAssigned || got.Assignment == nil || got.Assignment.ServerID != "gs-1" {
			t.Errorf("allocation lists ticket %s, which is %s", id, got.Status)
		}
	}
	if n := len(al.Allocations[0].TicketIDs); n != 2+20 {
		t.Errorf("allocation lists %d tickets, want the match's 2 and one per round", n)
	}
}

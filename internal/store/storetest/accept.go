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

// acceptBy is the acceptance deadline of the matches claimed by offer.
var acceptBy = at(31)

// offer claims the tickets as match id at at(1), asking them to accept by
// acceptBy.
func (h *harness) offer(id string, tickets ...contracts.Ticket) contracts.Match {
	h.t.Helper()
	m := newMatch(id, euWest, tickets...)
	m.AcceptDeadline = acceptBy
	m.AssignDeadline = acceptBy.Add(time.Minute)
	if err := h.s.ClaimMatch(h.ctx, m, at(1)); err != nil {
		h.t.Fatalf("ClaimMatch(%s): %v", id, err)
	}
	return m
}

// answer answers for ticket id at now and fails the test on an error.
func (h *harness) answer(id string, accept bool, now time.Time) store.Answer {
	h.t.Helper()
	a, err := h.s.AnswerMatch(h.ctx, id, accept, now)
	if err != nil {
		h.t.Fatalf("AnswerMatch(%s, %v): %v", id, accept, err)
	}
	if a.Ticket.ID != id {
		h.t.Errorf("AnswerMatch(%s) answered ticket %q", id, a.Ticket.ID)
	}
	return a
}

// wantAsked checks that ticket id is offered match m, and whether it has
// accepted.
func (h *harness) wantAsked(id string, version int64, m contracts.Match, accepted bool) {
	h.t.Helper()
	tk := h.want(id, contracts.StatusPendingAcceptance, version)
	switch {
	case tk.Match == nil || tk.Match.ID != m.ID:
		h.t.Errorf("ticket %s offered match %s shows match %s", id, m.ID, jsonOf(tk.Match))
	case tk.Acceptance == nil || !tk.Acceptance.Deadline.Equal(m.AcceptDeadline) || tk.Acceptance.Accepted != accepted:
		h.t.Errorf("ticket %s shows acceptance %s, want deadline %s, accepted %v", id, jsonOf(tk.Acceptance), m.AcceptDeadline, accepted)
	}
}

// wantBack checks that ticket id is searching again at version, as it was
// before it was offered a match.
func (h *harness) wantBack(id string, version int64) {
	h.t.Helper()
	tk := h.want(id, contracts.StatusSearching, version)
	if tk.Match != nil || tk.Acceptance != nil || !tk.CreatedAt.Equal(base) {
		h.t.Errorf("ticket %s back to searching shows match %s, acceptance %s, created %s",
			id, jsonOf(tk.Match), jsonOf(tk.Acceptance), tk.CreatedAt)
	}
}

func (h *harness) wantCancelled(id string, version int64, reason string) {
	h.t.Helper()
	if tk := h.want(id, contracts.StatusCancelled, version); tk.Reason != reason {
		h.t.Errorf("ticket %s cancelled with reason %q, want %q", id, tk.Reason, reason)
	}
}

// pair creates the solo tickets a and b, of players p-a and p-b.
func (h *harness) pair() []contracts.Ticket {
	h.t.Helper()
	return []contracts.Ticket{h.create(tid("a"), "p-a"), h.create(tid("b"), "p-b")}
}

func ticketIDs(ts []contracts.Ticket) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return sorted(out)
}

// testAcceptAll: a match that asks waits for every answer, then goes on
// to a server like any other.
func testAcceptAll(t *testing.T, h *harness) {
	tks := h.pair()
	h.server("gs-1", euWest, 1)
	m := h.offer(mid("m"), tks...)
	h.wantAsked(tks[0].ID, 2, m, false)
	h.wantAsked(tks[1].ID, 2, m, false)
	h.wantBusy("p-a", tks[0].ID)
	if got, err := h.s.OverdueMatches(h.ctx, at(1000), at(1000), 10); err != nil || len(got) != 0 {
		t.Errorf("OverdueMatches of a match waiting for acceptance = %d matches, %v; want none", len(got), err)
	}
	if _, err := h.s.AssignMatch(h.ctx, m.ID, at(2)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("AssignMatch before acceptance: %v, want ErrConflict", err)
	}
	if err := h.s.FailMatch(h.ctx, m.ID, "x", at(2)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("FailMatch before acceptance: %v, want ErrConflict", err)
	}
	h.want(tks[0].ID, contracts.StatusPendingAcceptance, 2)

	if a := h.answer(tks[0].ID, true, at(2)); a.Ready != nil || len(a.Requeued) != 0 || !a.Ticket.Acceptance.Accepted {
		t.Errorf("first acceptance answered ready %v, requeued %d, ticket %s", a.Ready != nil, len(a.Requeued), jsonOf(a.Ticket))
	}
	h.wantAsked(tks[0].ID, 3, m, true)
	h.answer(tks[0].ID, true, at(3)) // again: no change
	h.wantAsked(tks[0].ID, 3, m, true)
	h.wantAsked(tks[1].ID, 2, m, false)

	a := h.answer(tks[1].ID, true, at(4))
	if a.Ready == nil || a.Ready.ID != m.ID || a.Ticket.Status != contracts.StatusMatched {
		t.Fatalf("last acceptance answered ready %s, ticket %s; want match %s, matched", jsonOf(a.Ready), jsonOf(a.Ticket), m.ID)
	}
	sameMatch(t, *a.Ready, m)
	// Every ticket's acceptance is a version, and so is the match going on.
	for _, tk := range tks {
		if got := h.want(tk.ID, contracts.StatusMatched, 4); got.Acceptance != nil || got.Match == nil {
			t.Errorf("accepted ticket %s shows acceptance %s, match %s", tk.ID, jsonOf(got.Acceptance), jsonOf(got.Match))
		}
	}
	// Answering again while the match waits for a server hands it over
	// again, for a caller whose send failed.
	if a := h.answer(tks[0].ID, true, at(5)); a.Ready == nil || a.Ready.ID != m.ID {
		t.Errorf("repeated acceptance of a match waiting for a server answered ready %s", jsonOf(a.Ready))
	}
	if got, err := h.s.OverdueMatches(h.ctx, m.AssignDeadline, at(1000), 10); err != nil || len(got) != 1 {
		t.Errorf("OverdueMatches at the accepted match's deadline = %d matches, %v; want it", len(got), err)
	}
	if _, err := h.s.AnswerMatch(h.ctx, tks[0].ID, false, at(5)); err == nil {
		t.Errorf("declining a match accepted by all succeeded")
	} else {
		checkConflict(t, "declining an accepted match", err, tks[0].ID, contracts.StatusMatched)
	}
	asg := h.assign(m.ID)
	h.want(tks[0].ID, contracts.StatusAssigned, 5)
	if a := h.answer(tks[1].ID, true, at(6)); a.Ready != nil || a.Ticket.Assignment == nil || *a.Ticket.Assignment != asg {
		t.Errorf("acceptance of an assigned ticket answered ready %v, ticket %s", a.Ready != nil, jsonOf(a.Ticket))
	}
	h.wantFree("p-a", "p-b")
}

// testDecline: one declines, after another accepted; both others go back
// to searching with their wait and, pushed back, their expiry.
func testDecline(t *testing.T, h *harness) {
	a := h.createExpiring(at(60), tid("a"), "p-a")
	b := h.createExpiring(at(60), tid("b"), "p-b")
	c := h.createExpiring(at(60), tid("c"), "p-c")
	m := h.offer(mid("m"), a, b, c)
	h.answer(a.ID, true, at(2))
	got := h.answer(b.ID, false, at(11))
	if got.Ready != nil || !slices.Equal(ticketIDs(got.Requeued), sorted([]string{a.ID, c.ID})) {
		t.Errorf("decline answered ready %v, requeued %v; want %s and %s requeued", got.Ready != nil, ticketIDs(got.Requeued), a.ID, c.ID)
	}
	for _, tk := range got.Requeued {
		if tk.Status != contracts.StatusSearching || tk.Match != nil || len(tk.Players) != 1 {
			t.Errorf("requeued ticket answered as %s", jsonOf(tk))
		}
	}
	if got.Ticket.Status != contracts.StatusCancelled || got.Ticket.Reason != contracts.ReasonDeclined {
		t.Errorf("decline answered ticket %s", jsonOf(got.Ticket))
	}
	h.wantCancelled(b.ID, 3, contracts.ReasonDeclined)
	h.wantBack(a.ID, 4)
	h.wantBack(c.ID, 3)
	h.wantFree("p-b")
	h.wantBusy("p-a", a.ID)
	h.wantBusy("p-c", c.ID)

	// Declining again changes nothing; accepting now is too late.
	h.answer(b.ID, false, at(12))
	h.wantCancelled(b.ID, 3, contracts.ReasonDeclined)
	_, err := h.s.AnswerMatch(h.ctx, a.ID, true, at(12))
	checkConflict(t, "accepting after the match fell through", err, a.ID, contracts.StatusSearching)
	if _, err := h.s.AssignMatch(h.ctx, m.ID, at(12)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("AssignMatch of a dissolved match: %v, want ErrConflict", err)
	}
	if got, _, err := h.s.ExpireAcceptances(h.ctx, at(100), 10); err != nil || len(got) != 0 {
		t.Errorf("ExpireAcceptances after the decline = %v, %v; want none", ticketIDs(got), err)
	}

	// Unannounced since the decline, for the reaper should the caller
	// die before announcing them; a matcher may pool and match them.
	un, err := h.s.Unannounced(h.ctx, at(11), at(12), 10)
	if err != nil || !slices.Equal(ticketIDs(un), sorted([]string{a.ID, c.ID})) {
		t.Errorf("Unannounced after the decline = %v, %v; want %s and %s", ticketIDs(un), err, a.ID, c.ID)
	}
	h.pool(c, 1500)
	if !h.inPool(c.ID) {
		t.Errorf("requeued ticket %s does not go in the pool", c.ID)
	}

	// The 10 s in the match came back to their search: they expire at
	// 70 s, not 60.
	if ids, err := h.s.ExpireDue(h.ctx, at(69), 10); err != nil || len(ids) != 0 {
		t.Errorf("ExpireDue(69 s) = %v, %v; want none", ids, err)
	}
	ids, err := h.s.ExpireDue(h.ctx, at(70), 10)
	if err != nil || !slices.Equal(sorted(ids), sorted([]string{a.ID, c.ID})) {
		t.Errorf("ExpireDue(70 s) = %v, %v; want %s and %s", ids, err, a.ID, c.ID)
	}
	h.wantFree("p-a", "p-c")
}

// testAcceptTimeout: those who did not answer in time end cancelled, the
// others search again.
func testAcceptTimeout(t *testing.T, h *harness) {
	tks := h.pair()
	h.offer(mid("m"), tks...)
	h.answer(tks[0].ID, true, at(2))
	if re, out, err := h.s.ExpireAcceptances(h.ctx, acceptBy.Add(-time.Millisecond), 10); err != nil || len(re)+len(out) != 0 {
		t.Errorf("ExpireAcceptances before the deadline = %v, %v, %v; want nothing", ticketIDs(re), out, err)
	}
	h.wantAsked(tks[1].ID, 2, contracts.Match{ID: mid("m"), AcceptDeadline: acceptBy}, false)
	re, out, err := h.s.ExpireAcceptances(h.ctx, acceptBy, 10)
	if err != nil || !slices.Equal(ticketIDs(re), []string{tks[0].ID}) || !slices.Equal(out, []string{tks[1].ID}) {
		t.Errorf("ExpireAcceptances at the deadline = requeued %v, timed out %v, %v; want %s, %s", ticketIDs(re), out, err, tks[0].ID, tks[1].ID)
	}
	h.wantBack(tks[0].ID, 4)
	h.wantCancelled(tks[1].ID, 3, contracts.ReasonAcceptTimeout)
	h.wantFree("p-b")
	if re, out, err := h.s.ExpireAcceptances(h.ctx, at(100), 10); err != nil || len(re)+len(out) != 0 {
		t.Errorf("ExpireAcceptances again = %v, %v, %v; want nothing", ticketIDs(re), out, err)
	}
	_, err = h.s.AnswerMatch(h.ctx, tks[1].ID, true, at(32))
	checkConflict(t, "accepting after the timeout", err, tks[1].ID, contracts.StatusCancelled)
}

// testAnswerNotOffered: only a ticket offered a match may answer.
func testAnswerNotOffered(t *testing.T, h *harness) {
	tks := append(h.pair(), h.create(tid("c"), "p-c"))
	h.claim(mid("m"), tks[1], tks[2])
	for _, accept := range []bool{true, false} {
		_, err := h.s.AnswerMatch(h.ctx, tks[0].ID, accept, at(2))
		checkConflict(t, fmt.Sprintf("AnswerMatch(%v) of a searching ticket", accept), err, tks[0].ID, contracts.StatusSearching)
		_, err = h.s.AnswerMatch(h.ctx, tks[1].ID, accept, at(2))
		checkConflict(t, fmt.Sprintf("AnswerMatch(%v) of a ticket matched without asking", accept), err, tks[1].ID, contracts.StatusMatched)
		if _, err := h.s.AnswerMatch(h.ctx, tid("nope"), accept, at(2)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("AnswerMatch of an unknown ticket: %v, want ErrNotFound", err)
		}
	}
	h.want(tks[0].ID, contracts.StatusSearching, 1)
	h.want(tks[1].ID, contracts.StatusMatched, 2)
}

// testRaceAcceptDecline races the last acceptance against a decline, and
// against the deadline: the match goes on whole or falls through whole.
func testRaceAcceptDecline(t *testing.T, stores []store.Store) {
	h := newHarness(t, stores[0])
	for round := range 30 {
		a := h.create(tid(fmt.Sprintf("a-%d", round)), fmt.Sprintf("p-a-%d", round))
		b := h.create(tid(fmt.Sprintf("b-%d", round)), fmt.Sprintf("p-b-%d", round))
		m := h.offer(mid(fmt.Sprintf("m-%d", round)), a, b)
		h.answer(a.ID, true, at(2))
		var (
			accepted   store.Answer
			acceptErr  error
			refuseErr  error
			timedOut   []string
			byDeadline = round%2 == 1
		)
		together(2, func(i int) {
			s := stores[(round+i)%len(stores)]
			switch {
			case i == 0:
				accepted, acceptErr = s.AnswerMatch(h.ctx, b.ID, true, acceptBy)
			case byDeadline:
				_, timedOut, refuseErr = s.ExpireAcceptances(h.ctx, acceptBy, 100)
			default:
				_, refuseErr = s.AnswerMatch(h.ctx, a.ID, false, acceptBy)
			}
		})
		if refuseErr != nil && !errors.Is(refuseErr, store.ErrConflict) {
			t.Fatalf("round %d: the refusal failed: %v", round, refuseErr)
		}
		wentOn := acceptErr == nil && accepted.Ready != nil
		fellThrough := (byDeadline && len(timedOut) == 1) || (!byDeadline && refuseErr == nil)
		switch {
		case wentOn && !fellThrough:
			h.want(a.ID, contracts.StatusMatched, 4)
			h.want(b.ID, contracts.StatusMatched, 4)
			if _, err := h.s.AssignMatch(h.ctx, m.ID, at(40)); !errors.Is(err, store.ErrNoCapacity) {
				t.Errorf("round %d: AssignMatch of the accepted match: %v, want ErrNoCapacity", round, err)
			}
		case fellThrough && !wentOn:
			if byDeadline {
				checkConflict(t, "an acceptance losing to the deadline", acceptErr, b.ID, contracts.StatusCancelled)
				h.wantBack(a.ID, 4)
				h.wantCancelled(b.ID, 3, contracts.ReasonAcceptTimeout)
			} else {
				checkConflict(t, "an acceptance losing to a decline", acceptErr, b.ID, contracts.StatusSearching)
				h.wantCancelled(a.ID, 4, contracts.ReasonDeclined)
				h.wantBack(b.ID, 3)
			}
		default:
			t.Fatalf("round %d: went on %v (%v) and fell through %v (%v, timed out %v)", round, wentOn, acceptErr, fellThrough, refuseErr, timedOut)
		}
	}
}

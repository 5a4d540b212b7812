package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// testCreateTicketOnce: a second create under one idempotency key stores
// nothing and names the first ticket, flagging a different fingerprint;
// other keys are apart; a deleted ticket frees its key.
func testCreateTicketOnce(t *testing.T, h *harness) {
	key := store.Idempotency{Key: "client-1/k-1", Fingerprint: "f-1"}
	first := newTicket(tid("t-1"), "p-1")
	if err := h.s.CreateTicketOnce(h.ctx, first, base.Add(time.Hour), key); err != nil {
		t.Fatalf("CreateTicketOnce: %v", err)
	}
	tests := []struct {
		name     string
		fp       string
		mismatch bool
	}{
		{"same request", "f-1", false},
		{"other request", "f-2", true},
	}
	for _, tc := range tests {
		retry := newTicket(tid("t-2"), "p-1", "p-2")
		err := h.s.CreateTicketOnce(h.ctx, retry, base.Add(time.Hour), store.Idempotency{Key: key.Key, Fingerprint: tc.fp})
		var replay *store.ReplayError
		if !errors.As(err, &replay) || !errors.Is(err, store.ErrReplay) || replay.TicketID != first.ID || replay.Mismatch != tc.mismatch {
			t.Errorf("%s: CreateTicketOnce again = %v; want a replay of %s, mismatch %v", tc.name, err, first.ID, tc.mismatch)
		}
		h.wantNoTicket(retry.ID)
		h.wantFree("p-2")
	}
	h.want(first.ID, contracts.StatusSearching, 1)
	h.wantBusy("p-1", first.ID)

	// Another key is another request: the player is busy with the first.
	err := h.s.CreateTicketOnce(h.ctx, newTicket(tid("t-3"), "p-1"), base.Add(time.Hour), store.Idempotency{Key: "client-2/k-1", Fingerprint: "f-1"})
	checkBusy(t, err, "p-1", first.ID)

	// A ticket whose create was undone frees its key for the retry.
	if err := h.s.DeleteTicket(h.ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	again := newTicket(tid("t-4"), "p-1")
	if err := h.s.CreateTicketOnce(h.ctx, again, base.Add(time.Hour), key); err != nil {
		t.Fatalf("CreateTicketOnce after the delete: %v", err)
	}
	h.want(again.ID, contracts.StatusSearching, 1)
	err = h.s.CreateTicketOnce(h.ctx, newTicket(tid("t-5"), "p-1"), base.Add(time.Hour), key)
	if replay := (*store.ReplayError)(nil); !errors.As(err, &replay) || replay.TicketID != again.ID {
		t.Errorf("CreateTicketOnce after the retry = %v; want a replay of %s", err, again.ID)
	}

	// A create refused for a busy player holds no key.
	busyKey := store.Idempotency{Key: "client-1/k-2", Fingerprint: "f-3"}
	err = h.s.CreateTicketOnce(h.ctx, newTicket(tid("t-6"), "p-1"), base.Add(time.Hour), busyKey)
	checkBusy(t, err, "p-1", again.ID)
	err = h.s.CreateTicketOnce(h.ctx, newTicket(tid("t-7"), "p-1"), base.Add(time.Hour), busyKey)
	checkBusy(t, err, "p-1", again.ID)
}

// testUnannounced: a ticket that no matcher took up is returned once the
// cutoff passes its creation, then only after another interval; a ticket
// in a pool, in a match or no longer searching is never returned.
func testUnannounced(t *testing.T, h *harness) {
	unannounced := func(before, now time.Time) []string {
		t.Helper()
		got, err := h.s.Unannounced(h.ctx, before, now, 100)
		if err != nil {
			t.Fatalf("Unannounced: %v", err)
		}
		var ids []string
		for _, tk := range got {
			if tk.Status != contracts.StatusSearching || len(tk.Players) == 0 {
				t.Errorf("Unannounced returned %s", jsonOf(tk))
			}
			ids = append(ids, tk.ID)
		}
		slices.Sort(ids)
		return ids
	}
	orphan, pooled, matchedA, matchedB, cancelled := h.create(tid("t-1"), "p-1"), h.create(tid("t-2"), "p-2"),
		h.create(tid("t-3"), "p-3"), h.create(tid("t-4"), "p-4"), h.create(tid("t-5"), "p-5")
	if got := unannounced(base.Add(-time.Second), at(10)); len(got) != 0 {
		t.Errorf("Unannounced before any creation = %v, want none", got)
	}
	h.pool(pooled, 1500)
	h.claim(mid("m-1"), matchedA, matchedB)
	if _, err := h.s.CancelTicket(h.ctx, cancelled.ID, at(1)); err != nil {
		t.Fatal(err)
	}
	if got, want := unannounced(at(5), at(10)), []string{orphan.ID}; !slices.Equal(got, want) {
		t.Errorf("Unannounced = %v, want %v", got, want)
	}
	if got := unannounced(at(9), at(11)); len(got) != 0 {
		t.Errorf("Unannounced before the interval since the last return = %v, want none", got)
	}
	if got, want := unannounced(at(10), at(20)), []string{orphan.ID}; !slices.Equal(got, want) {
		t.Errorf("Unannounced an interval later = %v, want %v", got, want)
	}
	h.pool(orphan, 1500)
	if got := unannounced(at(60), at(60)); len(got) != 0 {
		t.Errorf("Unannounced after AddToPool = %v, want none", got)
	}
}

// testReleaseStaleKeepsLiveClaims: with every release made, ReleaseStale
// has nothing to do and never frees a player of a live ticket.
func testReleaseStaleKeepsLiveClaims(t *testing.T, h *harness) {
	a, b := h.create(tid("t-1"), "p-1"), h.create(tid("t-2"), "p-2")
	if _, err := h.s.CancelTicket(h.ctx, a.ID, at(1)); err != nil {
		t.Fatal(err)
	}
	live := h.create(tid("t-3"), "p-1")
	if n, err := h.s.ReleaseStale(h.ctx, 100); err != nil || n != 0 {
		t.Errorf("ReleaseStale = %d, %v; want 0, nil", n, err)
	}
	h.wantBusy("p-1", live.ID)
	h.wantBusy("p-2", b.ID)
}

// testOverdueMatches: a match waiting for a server is returned once the
// cutoff passes its assignment deadline, then only an interval later; an
// assigned or failed match is never returned.
func testOverdueMatches(t *testing.T, h *harness) {
	overdue := func(before, now time.Time) []string {
		t.Helper()
		got, err := h.s.OverdueMatches(h.ctx, before, now, 100)
		if err != nil {
			t.Fatalf("OverdueMatches: %v", err)
		}
		var ids []string
		for _, m := range got {
			if len(m.TicketIDs) != 2 || m.AssignDeadline.IsZero() {
				t.Errorf("OverdueMatches returned %s", jsonOf(m))
			}
			ids = append(ids, m.ID)
		}
		slices.Sort(ids)
		return ids
	}
	tks := h.solo(tid("t-1"), tid("t-2"), tid("t-3"), tid("t-4"), tid("t-5"), tid("t-6"))
	waiting := h.claim(mid("m-1"), tks[0], tks[1])
	assigned := h.claim(mid("m-2"), tks[2], tks[3])
	failed := h.claim(mid("m-3"), tks[4], tks[5])
	h.server("gs-1", euWest, 1)
	if _, err := h.s.AssignMatch(h.ctx, assigned.ID, at(2)); err != nil {
		t.Fatal(err)
	}
	if err := h.s.FailMatch(h.ctx, failed.ID, contracts.ReasonNoServerCapacity, at(2)); err != nil {
		t.Fatal(err)
	}
	deadline := waiting.AssignDeadline
	if got := overdue(deadline.Add(-time.Second), deadline); len(got) != 0 {
		t.Errorf("OverdueMatches before the deadline = %v, want none", got)
	}
	if got, want := overdue(deadline, deadline.Add(5*time.Second)), []string{waiting.ID}; !slices.Equal(got, want) {
		t.Errorf("OverdueMatches = %v, want %v", got, want)
	}
	if got := overdue(deadline.Add(4*time.Second), deadline.Add(9*time.Second)); len(got) != 0 {
		t.Errorf("OverdueMatches before an interval since the last return = %v, want none", got)
	}
	if got, want := overdue(deadline.Add(5*time.Second), deadline.Add(10*time.Second)), []string{waiting.ID}; !slices.Equal(got, want) {
		t.Errorf("OverdueMatches an interval later = %v, want %v", got, want)
	}
	if err := h.s.FailMatch(h.ctx, waiting.ID, contracts.ReasonNoServerCapacity, deadline.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := overdue(deadline.Add(time.Hour), deadline.Add(time.Hour)); len(got) != 0 {
		t.Errorf("OverdueMatches after the failure = %v, want none", got)
	}
}

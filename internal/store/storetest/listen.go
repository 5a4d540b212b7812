package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// recorder collects the changes a Listen call reports.
type recorder struct {
	mu      sync.Mutex
	changes []store.Change
	arrived chan struct{} // signalled after every change
	// seen holds the changes reported, without what they carry, and the
	// last state carried with each.
	seen map[store.Change]*store.TicketState
	next int // changes[:next] are in seen
}

// bare is c without the state it carries.
func bare(c store.Change) store.Change {
	c.Ticket = nil
	return c
}

// listen starts s.Listen, waits for its first report, which must be a
// resync, and stops it when the test ends, checking that it returns
// ctx.Err().
func listen(t *testing.T, s store.Store) *recorder {
	t.Helper()
	r := &recorder{arrived: make(chan struct{}, 1), seen: map[store.Change]*store.TicketState{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var listenErr error
	go func() {
		defer close(done)
		listenErr = s.Listen(ctx, func(c store.Change) {
			// fn must not block: record and signal without waiting.
			r.mu.Lock()
			r.changes = append(r.changes, c)
			r.mu.Unlock()
			select {
			case r.arrived <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
			if !errors.Is(listenErr, context.Canceled) {
				t.Errorf("Listen returned %v when its context ended, want context.Canceled", listenErr)
			}
		case <-time.After(wait):
			t.Errorf("Listen did not return within %v of its context ending", wait)
		}
	})

	deadline := time.After(wait)
	for {
		r.mu.Lock()
		n := len(r.changes)
		var first store.Change
		if n > 0 {
			first = r.changes[0]
		}
		r.mu.Unlock()
		if n > 0 {
			if first.Kind != store.ChangeResync {
				t.Fatalf("first change reported by Listen is %+v, want a resync", first)
			}
			return r
		}
		select {
		case <-r.arrived:
		case <-done:
			t.Fatalf("Listen returned before reporting anything: %v", listenErr)
		case <-deadline:
			t.Fatalf("Listen reported no resync within %v", wait)
		}
	}
}

// want waits until every one of the changes has been reported, in any order
// and at any time since listening started, whatever they carry.
func (r *recorder) want(t *testing.T, changes ...store.Change) {
	t.Helper()
	deadline := time.After(wait)
	for {
		r.mu.Lock()
		for ; r.next < len(r.changes); r.next++ {
			c := r.changes[r.next]
			r.seen[bare(c)] = c.Ticket
		}
		var missing []store.Change
		for _, c := range changes {
			if _, ok := r.seen[c]; !ok {
				missing = append(missing, c)
			}
		}
		all := jsonOf(r.changes)
		r.mu.Unlock()
		if len(missing) == 0 {
			return
		}
		select {
		case <-r.arrived:
		case <-deadline:
			t.Fatalf("changes %+v not reported within %v; reported: %s", missing, wait, all)
		}
	}
}

func ticketChange(id string, version int64) store.Change {
	return store.Change{Kind: store.ChangeTicket, ID: id, Version: version}
}

// watch has s watch the tickets ids, as a front does before it holds
// their polls: a store that routes ticket changes reports them to s's
// Listen from then on.
func watch(t *testing.T, s store.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		got, err := s.WatchTicket(context.Background(), id)
		if err != nil || got.ID != id {
			t.Fatalf("WatchTicket(%s) = %+v, %v", id, got, err)
		}
	}
}

// testListen listens on one store value and makes changes through another
// (which may be the same value), checking that each change that raises the
// version of a watched ticket, or of a server, is reported with the new
// version.
func testListen(t *testing.T, listenOn, changeOn store.Store) {
	r := listen(t, listenOn)
	h := newHarness(t, changeOn)

	tks := h.solo(tid("a"), tid("b"), tid("c"), tid("d"), tid("e"), tid("g"))
	h.createExpiring(at(60), tid("f"), "p-f")
	watch(t, listenOn, tid("a"), tid("b"), tid("c"), tid("d"), tid("e"), tid("f"), tid("g"))
	srv := h.server("gs-1", euWest, 2)

	if _, err := h.s.CancelTicket(h.ctx, tid("a"), at(1)); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	r.want(t, ticketChange(tid("a"), 2))

	h.claim(mid("m-1"), tks[1], tks[2])
	r.want(t, ticketChange(tid("b"), 2), ticketChange(tid("c"), 2))

	h.assign(mid("m-1"))
	r.want(t, ticketChange(tid("b"), 3), ticketChange(tid("c"), 3),
		store.Change{Kind: store.ChangeServer, ID: "gs-1", Version: srv.Version + 1})

	if err := h.s.EndMatch(h.ctx, "gs-1", mid("m-1"), at(3)); err != nil {
		t.Fatalf("EndMatch: %v", err)
	}
	r.want(t, store.Change{Kind: store.ChangeServer, ID: "gs-1", Version: srv.Version + 2})

	h.claim(mid("m-2"), tks[3], tks[4])
	if err := h.s.FailMatch(h.ctx, mid("m-2"), contracts.ReasonNoServerCapacity, at(4)); err != nil {
		t.Fatalf("FailMatch: %v", err)
	}
	r.want(t, ticketChange(tid("d"), 2), ticketChange(tid("e"), 2), ticketChange(tid("d"), 3), ticketChange(tid("e"), 3))

	if ok, err := h.s.ExpireTicket(h.ctx, tid("g"), at(5)); err != nil || !ok {
		t.Fatalf("ExpireTicket = %v, %v", ok, err)
	}
	r.want(t, ticketChange(tid("g"), 2))
	if got, err := h.s.ExpireDue(h.ctx, at(60), 10); err != nil || len(got) != 1 {
		t.Fatalf("ExpireDue = %v, %v; want [f]", got, err)
	}
	r.want(t, ticketChange(tid("f"), 2))
}

// wantCarried waits for the change of ticket id to version v and checks
// that it carries the ticket as the store holds it now: the caller makes
// no other change of the ticket in between.
func (r *recorder) wantCarried(t *testing.T, h *harness, id string, v int64) {
	t.Helper()
	c := ticketChange(id, v)
	r.want(t, c)
	r.mu.Lock()
	carried := r.seen[c]
	r.mu.Unlock()
	got, err := carried.Get()
	if err != nil {
		t.Errorf("change of ticket %s to version %d carries no ticket: %v", id, v, err)
		return
	}
	if got.Version != v {
		t.Errorf("change of ticket %s to version %d carries version %d", id, v, got.Version)
	}
	sameTicket(t, got, h.get(id))
}

// testListenCarries checks that each change that raises a ticket's version
// carries the ticket as stored at that version: status, version, times,
// party, match, assignment and reason.
func testListenCarries(t *testing.T, listenOn, changeOn store.Store) {
	r := listen(t, listenOn)
	h := newHarness(t, changeOn)

	tk := newTicket(tid("a"), "p-a", "p-a2")
	tk.Latencies = map[string]float64{euWest: 31, usEast: 112}
	tk.Attributes = map[string]string{"platform": "pc"}
	if err := h.s.CreateTicket(h.ctx, tk, base.Add(time.Hour)); err != nil {
		t.Fatalf("CreateTicket: %v", err)
	}
	tks := append([]contracts.Ticket{tk}, h.solo(tid("b"), tid("c"), tid("d"), tid("e"))...)
	h.createExpiring(at(60), tid("f"), "p-f")
	watch(t, listenOn, tid("a"), tid("b"), tid("c"), tid("d"), tid("e"), tid("f"))
	h.server("gs-1", euWest, 2)

	h.claim(mid("m-1"), tks[0], tks[1])
	r.wantCarried(t, h, tid("a"), 2)
	r.wantCarried(t, h, tid("b"), 2)
	if got := h.get(tid("a")); got.Match == nil || got.Match.ID != mid("m-1") {
		t.Fatalf("matched ticket has match %+v", got.Match)
	}

	h.assign(mid("m-1"))
	r.wantCarried(t, h, tid("a"), 3)
	r.wantCarried(t, h, tid("b"), 3)
	if got := h.get(tid("a")); got.Status != contracts.StatusAssigned || got.Assignment == nil {
		t.Fatalf("assigned ticket is %s with assignment %+v", got.Status, got.Assignment)
	}

	if _, err := h.s.CancelTicket(h.ctx, tid("c"), at(3)); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	r.wantCarried(t, h, tid("c"), 2)

	h.claim(mid("m-2"), tks[3], tks[4])
	if err := h.s.FailMatch(h.ctx, mid("m-2"), contracts.ReasonNoServerCapacity, at(4)); err != nil {
		t.Fatalf("FailMatch: %v", err)
	}
	r.wantCarried(t, h, tid("d"), 3)
	if got := h.get(tid("e")); got.Reason != contracts.ReasonNoServerCapacity {
		t.Fatalf("failed ticket has reason %q", got.Reason)
	}
	r.wantCarried(t, h, tid("e"), 3)

	if got, err := h.s.ExpireDue(h.ctx, at(60), 10); err != nil || len(got) != 1 {
		t.Fatalf("ExpireDue = %v, %v; want [f]", got, err)
	}
	r.wantCarried(t, h, tid("f"), 2)
}

// testWatchTicket: WatchTicket answers what Ticket does, and an unknown
// ticket stays unknown.
func testWatchTicket(t *testing.T, h *harness) {
	tk := h.solo(tid("a"))[0]
	for range 2 { // the second watch of one listener changes nothing
		got, err := h.s.WatchTicket(h.ctx, tk.ID)
		if err != nil {
			t.Fatalf("WatchTicket: %v", err)
		}
		sameTicket(t, got, h.get(tk.ID))
	}
	if got := h.get(tk.ID); got.Version != tk.Version {
		t.Errorf("watching raised the version to %d", got.Version)
	}
	for _, id := range []string{tid("nobody"), "no-queue-in-this-id"} {
		if _, err := h.s.WatchTicket(h.ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("WatchTicket(%s) of an unknown ticket: %v, want ErrNotFound", id, err)
		}
		if _, err := h.s.Ticket(h.ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("after watching, Ticket(%s) of an unknown ticket: %v, want ErrNotFound", id, err)
		}
	}
}

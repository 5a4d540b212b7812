package redisstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// heard is what one Listen call has reported.
type heard struct {
	mu      sync.Mutex
	changes []store.Change
	arrived chan struct{}
	stop    context.CancelFunc
	done    chan struct{} // closed when Listen has returned
}

// hear starts s.Listen, waits for its first resync, and stops it when
// the test ends (or earlier, by stop).
func hear(t *testing.T, s *Store) *heard {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &heard{arrived: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		_ = s.Listen(ctx, func(c store.Change) {
			h.mu.Lock()
			h.changes = append(h.changes, c)
			h.mu.Unlock()
			select {
			case h.arrived <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-h.done })
	h.await(t, func(c store.Change) bool { return c.Kind == store.ChangeResync })
	return h
}

// await waits until a change that ok accepts has been reported, and
// answers it.
func (h *heard) await(t *testing.T, ok func(store.Change) bool) store.Change {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		h.mu.Lock()
		for _, c := range h.changes {
			if ok(c) {
				h.mu.Unlock()
				return c
			}
		}
		h.mu.Unlock()
		select {
		case <-h.arrived:
		case <-deadline:
			t.Fatal("the change never came")
		}
	}
}

// ticketsHeard lists the tickets whose changes h has reported.
func (h *heard) ticketsHeard() map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := map[string]bool{}
	for _, c := range h.changes {
		if c.Kind == store.ChangeTicket {
			ids[c.ID] = true
		}
	}
	return ids
}

func changeOf(id string, v int64) func(store.Change) bool {
	return func(c store.Change) bool { return c.Kind == store.ChangeTicket && c.ID == id && c.Version == v }
}

// TestChangesRoutedToWatchers: a ticket's change reaches the fronts that
// watch it, carrying the ticket, and no other; a front that died after
// watching leaves the others' routing intact; an unwatched ticket changes
// without a message; and a ticket keeps its latest watchers only.
func TestChangesRoutedToWatchers(t *testing.T) {
	b := single(t)
	prefix := testenv.Prefix(t)
	b.clean(t, prefix)
	writer := New(b.client(t), Options{Prefix: prefix}) // a matcher or assigner: no listener
	a := New(b.client(t), Options{Prefix: prefix, Listener: "front-a"})
	c := New(b.client(t), Options{Prefix: prefix, Listener: "front-c"})
	heardA, heardC := hear(t, a), hear(t, c)
	ctx := t.Context()
	cancel := func(id string) {
		t.Helper()
		if _, err := writer.CancelTicket(ctx, id, t0.Add(time.Second)); err != nil {
			t.Fatalf("CancelTicket(%s): %v", id, err)
		}
	}
	for _, id := range []string{"duel.t1", "duel.t2", "duel.t3", "duel.t4", "duel.t5"} {
		mustCreate(t, writer, ticket(id, "p-"+id), t0.Add(time.Hour))
	}

	// t1 is watched by a only; t3 by c, as a marker: c hears t3's change
	// after t1's was published, on the same connection, so had t1's been
	// sent to c it would be there.
	for _, w := range []struct {
		s  *Store
		id string
	}{{a, "duel.t1"}, {c, "duel.t3"}} {
		if _, err := w.s.WatchTicket(ctx, w.id); err != nil {
			t.Fatal(err)
		}
	}
	cancel("duel.t1")
	cancel("duel.t3")
	got := heardA.await(t, changeOf("duel.t1", 2))
	if tk, err := got.Ticket.Get(); err != nil || tk.Status != contracts.StatusCancelled {
		t.Errorf("the change carries %+v, %v; want the cancelled ticket", tk, err)
	}
	heardC.await(t, changeOf("duel.t3", 2))
	if heardC.ticketsHeard()["duel.t1"] {
		t.Error("front c heard the change of a ticket only front a watches")
	}

	// a watches t2 and dies; the player's next poll reaches c, which
	// watches t2 in turn and hears its change.
	if _, err := a.WatchTicket(ctx, "duel.t2"); err != nil {
		t.Fatal(err)
	}
	heardA.stop()
	<-heardA.done
	if _, err := c.WatchTicket(ctx, "duel.t2"); err != nil {
		t.Fatal(err)
	}
	cancel("duel.t2")
	got = heardC.await(t, changeOf("duel.t2", 2))
	if tk, err := got.Ticket.Get(); err != nil || tk.Status != contracts.StatusCancelled {
		t.Errorf("the change carries %+v, %v; want the cancelled ticket", tk, err)
	}

	// Nobody watches t4: its change is sent to no one (t5, watched by c,
	// marks the point).
	if _, err := c.WatchTicket(ctx, "duel.t5"); err != nil {
		t.Fatal(err)
	}
	cancel("duel.t4")
	cancel("duel.t5")
	heardC.await(t, changeOf("duel.t5", 2))
	if heardC.ticketsHeard()["duel.t4"] {
		t.Error("front c heard the change of a ticket nobody watches")
	}

	// The latest maxWatchers watchers are kept, each once.
	for _, l := range []string{"l0", "l1", "l2", "l1", "l3", "l4", "l5"} {
		s := New(b.client(t), Options{Prefix: prefix, Listener: l})
		if _, err := s.WatchTicket(ctx, "duel.t5"); err != nil {
			t.Fatal(err)
		}
	}
	key, _ := writer.ticketKeyOf("duel.t5")
	if w, err := b.client(t).HGet(ctx, key, "w").Result(); err != nil || w != "l1 l3 l4 l5" {
		t.Errorf("watchers %q, %v; want the latest %d, each once: \"l1 l3 l4 l5\"", w, err, maxWatchers)
	}
}

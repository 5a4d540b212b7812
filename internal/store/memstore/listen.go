package memstore

import (
	"context"
	"sync"

	"github.com/quickmatch/quickmatch/internal/store"
)

// listener queues the changes for one Listen call. Changes are queued under
// the store's lock, so every listener sees them in the order they were made,
// and delivered by the Listen call itself, outside any lock of the store, so
// fn may call back into the store.
type listener struct {
	mu      sync.Mutex
	pending []store.Change
	wake    chan struct{} // holds a token while pending may be non-empty
}

// notify queues c for every listener. The caller holds s.mu. A ticket's
// change carries a copy of the ticket as it is now, if it is still stored
// at c's version; the copy is shared by every listener and never changed.
func (s *Store) notify(c store.Change) {
	if len(s.listeners) == 0 {
		return
	}
	if c.Kind == store.ChangeTicket && c.Ticket == nil {
		if rec, ok := s.tickets[c.ID]; ok && rec.t.Version == c.Version {
			c.Ticket = store.CarryTicket(cloneTicket(rec.t))
		}
	}
	for l := range s.listeners {
		l.mu.Lock()
		l.pending = append(l.pending, c)
		l.mu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// Listen implements store.Store. fn is called on the caller's goroutine, one
// change at a time, in the order the changes were made. Every change of a
// stored ticket carries the ticket (store.Change.Ticket); the change of a
// deleted one does not.
func (s *Store) Listen(ctx context.Context, fn func(store.Change)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l := &listener{wake: make(chan struct{}, 1)}
	s.mu.Lock()
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	fn(store.Change{Kind: store.ChangeResync})
	var batch []store.Change
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-l.wake:
		}
		l.mu.Lock()
		batch, l.pending = l.pending, batch[:0]
		l.mu.Unlock()
		for _, c := range batch {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fn(c)
		}
	}
}

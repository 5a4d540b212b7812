// Package longpoll holds HTTP long-polls open until the record they watch
// changes. A Hub hands the store's change notifications to the requests
// waiting on this process; a Poller serves one long-poll request on top of
// it, from the record a change carries when it carries one, so that a
// wake-up reads nothing. Since every change any process makes reaches
// every Hub, a long-poll may land on any replica.
package longpoll

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"

	"github.com/quickmatch/quickmatch/internal/store"
)

// Listener is the part of store.Store a Hub listens to.
type Listener interface {
	Listen(ctx context.Context, fn func(store.Change)) error
}

// shardCount spreads waiters over locks so that many requests arriving and
// leaving at once do not queue on one mutex.
const shardCount = 64

type key struct {
	kind store.ChangeKind
	id   string
}

type shard struct {
	mu sync.Mutex
	// Most records have one waiter at a time, so a short slice costs less
	// than a set per record.
	waiters map[key][]chan store.Change
}

// Hub wakes the waiters of a record when the store reports that it changed.
// Its zero value is not usable; make one with NewHub.
type Hub struct {
	log       *slog.Logger
	seed      maphash.Seed
	shards    [shardCount]shard
	ready     chan struct{}
	readyOnce sync.Once
}

// NewHub makes a Hub. It wakes nobody until Run delivers changes to it.
func NewHub(log *slog.Logger) *Hub {
	h := &Hub{log: log, seed: maphash.MakeSeed(), ready: make(chan struct{})}
	for i := range h.shards {
		h.shards[i].waiters = make(map[key][]chan store.Change)
	}
	return h
}

// Run delivers the changes l reports to the waiters until ctx ends, when it
// returns nil. It returns an error if l cannot listen at all.
func (h *Hub) Run(ctx context.Context, l Listener) error {
	err := l.Listen(ctx, h.deliver)
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errors.New("listener stopped")
	}
	// Nobody will be woken by a change any more: let every waiter read
	// once more rather than hold it to the end of its wait for nothing.
	h.wakeAll()
	return fmt.Errorf("listening for store changes: %w", err)
}

// Ready is closed once the Hub receives changes: from then on no change is
// missed.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Watch registers a waiter on record id of the given kind. The channel gets
// the record's change when it changes, with the record's new state if the
// change carries it, or a store.ChangeResync when changes may have been
// missed. It holds one change: a change that arrives while another waits
// to be received takes its place, unless it is older, so what the waiter
// receives is the latest news. Call Watch before reading the record, so
// that a change between the read and the wait is not lost, and call the
// returned func once done.
func (h *Hub) Watch(kind store.ChangeKind, id string) (<-chan store.Change, func()) {
	return h.WatchBuffered(kind, id, 1)
}

// WatchBuffered is Watch with room for n changes before they are merged
// (the newest kept): for a stream, which sends every version it sees.
func (h *Hub) WatchBuffered(kind store.ChangeKind, id string, n int) (<-chan store.Change, func()) {
	k := key{kind: kind, id: id}
	s := h.shard(id)
	ch := make(chan store.Change, max(n, 1))
	s.mu.Lock()
	s.waiters[k] = append(s.waiters[k], ch)
	s.mu.Unlock()
	return ch, func() { h.unwatch(s, k, ch) }
}

func (h *Hub) unwatch(s *shard, k key, ch chan store.Change) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[k]
	for i, w := range ws {
		if w != ch {
			continue
		}
		last := len(ws) - 1
		ws[i] = ws[last]
		ws[last] = nil
		if last == 0 {
			delete(s.waiters, k)
		} else {
			s.waiters[k] = ws[:last]
		}
		return
	}
}

// Waiting reports how many waiters are registered now.
func (h *Hub) Waiting() int {
	n := 0
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		for _, ws := range s.waiters {
			n += len(ws)
		}
		s.mu.Unlock()
	}
	return n
}

func (h *Hub) shard(id string) *shard {
	return &h.shards[maphash.String(h.seed, id)%shardCount]
}

// deliver is the listener callback; it must not block, and does not: each
// waiter's channel holds one pending change, and the latest is enough. A
// carried state is not decoded here but by the waiters that use it, once:
// the listener is one goroutine for every change of the store.
func (h *Hub) deliver(c store.Change) {
	if c.Kind == store.ChangeResync {
		h.wakeAll()
		h.readyOnce.Do(func() {
			if h.log != nil {
				h.log.Debug("long-poll hub listening")
			}
			close(h.ready)
		})
		return
	}
	k := key{kind: c.Kind, id: c.ID}
	s := h.shard(c.ID)
	s.mu.Lock()
	for _, ch := range s.waiters[k] {
		notify(ch, c)
	}
	s.mu.Unlock()
}

func (h *Hub) wakeAll() {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		for _, ws := range s.waiters {
			for _, ch := range ws {
				notify(ch, store.Change{Kind: store.ChangeResync})
			}
		}
		s.mu.Unlock()
	}
}

// notify hands c to a waiter's channel, in place of the change that waits
// there unless that one is newer. Senders hold the shard's lock, so
// nothing else fills the channel between the receive and the send.
func notify(ch chan store.Change, c store.Change) {
	select {
	case ch <- c:
		return
	default:
	}
	select {
	case old := <-ch:
		if old.Kind != store.ChangeResync && c.Kind != store.ChangeResync && old.Version > c.Version {
			c = old
		}
	default:
	}
	select {
	case ch <- c:
	default:
	}
}

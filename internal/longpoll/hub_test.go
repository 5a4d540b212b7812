package longpoll

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// feed is a Listener that relays the changes a test sends it, the way a
// store relays the changes of every process.
type feed struct {
	changes chan store.Change
	err     error
}

func newFeed() *feed { return &feed{changes: make(chan store.Change)} }

func (f *feed) Listen(ctx context.Context, fn func(store.Change)) error {
	if f.err != nil {
		return f.err
	}
	fn(store.Change{Kind: store.ChangeResync})
	for {
		select {
		case c := <-f.changes:
			fn(c)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// send hands c to the hub; it returns once the hub has taken it.
func (f *feed) send(t *testing.T, c store.Change) {
	t.Helper()
	select {
	case f.changes <- c:
	case <-time.After(5 * time.Second):
		t.Fatal("hub is not listening")
	}
}

// runHub runs h on f until the test ends.
func runHub(t *testing.T, h *Hub, f *feed) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx, f) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-h.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("hub never became ready")
	}
}

func woken(ch <-chan store.Change) bool {
	_, ok := pending(ch)
	return ok
}

// pending receives the change that waits in ch, if any.
func pending(ch <-chan store.Change) (store.Change, bool) {
	select {
	case c := <-ch:
		return c, true
	default:
		return store.Change{}, false
	}
}

func TestHubWakesOnlyTheChangedRecord(t *testing.T) {
	h, f := NewHub(nil), newFeed()
	runHub(t, h, f)

	t1a, stop1a := h.Watch(store.ChangeTicket, "t-1")
	defer stop1a()
	t1b, stop1b := h.Watch(store.ChangeTicket, "t-1")
	defer stop1b()
	t2, stop2 := h.Watch(store.ChangeTicket, "t-2")
	defer stop2()
	s1, stopS1 := h.Watch(store.ChangeServer, "t-1")
	defer stopS1()

	f.send(t, store.Change{Kind: store.ChangeTicket, ID: "t-1", Version: 2})
	// The next send returns only after the hub has delivered the first.
	f.send(t, store.Change{Kind: store.ChangeServer, ID: "other", Version: 1})

	if !woken(t1a) || !woken(t1b) {
		t.Error("waiters of t-1 not woken")
	}
	if woken(t2) {
		t.Error("waiter of t-2 woken by a change of t-1")
	}
	if woken(s1) {
		t.Error("server waiter woken by a ticket change with the same id")
	}
}

func TestHubResyncWakesEveryone(t *testing.T) {
	h, f := NewHub(nil), newFeed()
	runHub(t, h, f)
	var chans []<-chan store.Change
	for i := range 100 {
		ch, stop := h.Watch(store.ChangeKind(1+i%2), fmt.Sprint("id-", i))
		defer stop()
		chans = append(chans, ch)
	}
	f.send(t, store.Change{Kind: store.ChangeResync})
	f.send(t, store.Change{Kind: store.ChangeTicket, ID: "nobody"})
	for i, ch := range chans {
		if !woken(ch) {
			t.Fatalf("waiter %d not woken by a resync", i)
		}
	}
}

func TestHubWakeIsNotLostBeforeTheWait(t *testing.T) {
	// Subscribe first, then read: a change between the two must still be
	// seen when the caller gets around to waiting.
	h, f := NewHub(nil), newFeed()
	runHub(t, h, f)
	ch, stop := h.Watch(store.ChangeTicket, "t-1")
	defer stop()
	f.send(t, store.Change{Kind: store.ChangeTicket, ID: "t-1", Version: 2})
	f.send(t, store.Change{Kind: store.ChangeTicket, ID: "t-1", Version: 3})
	f.send(t, store.Change{Kind: store.ChangeTicket, ID: "nobody"}) // version 3 delivered
	select {
	case c := <-ch:
		// The later change took the place of the first.
		if c.Version != 3 {
			t.Errorf("pending change is version %d, want the latest, 3", c.Version)
		}
	case <-time.After(time.Second):
		t.Fatal("pending wake-up lost")
	}
}

func TestHubHandsOverTheLatestChange(t *testing.T) {
	h, f := NewHub(nil), newFeed()
	runHub(t, h, f)
	ch, stop := h.Watch(store.ChangeTicket, "t-1")
	defer stop()
	v3 := store.Change{Kind: store.ChangeTicket, ID: "t-1", Version: 3,
		Ticket: store.CarryTicket(contracts.Ticket{ID: "t-1", Version: 3})}
	v2 := store.Change{Kind: store.ChangeTicket, ID: "t-1", Version: 2}
	v4 := store.Change{Kind: store.ChangeTicket, ID: "t-1", Version: 4}
	resync := store.Change{Kind: store.ChangeResync}
	// send delivers the changes; the hub has handed over the last one
	// once the next send returns.
	send := func(cs ...store.Change) {
		for _, c := range cs {
			f.send(t, c)
		}
		f.send(t, store.Change{Kind: store.ChangeTicket, ID: "nobody"})
	}
	for _, tc := range []struct {
		name string
		sent []store.Change
		want store.Change
	}{
		{"the change as sent, with what it carries", []store.Change{v3}, v3},
		{"an older change leaves a newer one pending", []store.Change{v3, v2}, v3},
		{"a newer change replaces an older one", []store.Change{v3, v4}, v4},
		{"a resync replaces a change: the waiter must read", []store.Change{v3, resync}, resync},
		// A change after a resync is newer than anything the resync may
		// have missed.
		{"a change replaces a resync", []store.Change{resync, v4}, v4},
	} {
		send(tc.sent...)
		if got, ok := pending(ch); !ok || got != tc.want {
			t.Errorf("%s: pending %+v (%v), want %+v", tc.name, got, ok, tc.want)
		}
	}
}

func TestHubUnwatch(t *testing.T) {
	h, f := NewHub(nil), newFeed()
	runHub(t, h, f)
	var stops []func()
	for i := range 10 {
		_, stop := h.Watch(store.ChangeTicket, fmt.Sprint("t-", i%3))
		stops = append(stops, stop)
	}
	if n := h.Waiting(); n != 10 {
		t.Fatalf("Waiting = %d, want 10", n)
	}
	kept, stopKept := h.Watch(store.ChangeTicket, "t-0")
	defer stopKept()
	for _, stop := range stops {
		stop()
	}
	if n := h.Waiting(); n != 1 {
		t.Fatalf("Waiting after unwatch = %d, want 1", n)
	}
	f.send(t, store.Change{Kind: store.ChangeTicket, ID: "t-0", Version: 2})
	f.send(t, store.Change{Kind: store.ChangeTicket, ID: "nobody"})
	if !woken(kept) {
		t.Error("remaining waiter lost when others left")
	}
}

func TestHubConcurrentWatchers(t *testing.T) {
	h, f := NewHub(nil), newFeed()
	runHub(t, h, f)
	ctx, cancel := context.WithCancel(context.Background())
	var senders sync.WaitGroup
	senders.Add(1)
	go func() {
		defer senders.Done()
		for i := 0; ctx.Err() == nil && i < 100_000; i++ {
			select {
			case f.changes <- store.Change{Kind: store.ChangeTicket, ID: fmt.Sprint("t-", i%50)}:
			case <-ctx.Done():
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				_, stop := h.Watch(store.ChangeTicket, fmt.Sprint("t-", (w+i)%50))
				stop()
			}
		}()
	}
	wg.Wait()
	cancel()
	senders.Wait()
	if n := h.Waiting(); n != 0 {
		t.Errorf("Waiting = %d after every watcher left", n)
	}
}

func TestHubRun(t *testing.T) {
	t.Run("returns nil when ctx ends", func(t *testing.T) {
		h := NewHub(nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.Run(ctx, newFeed()) }()
		<-h.Ready()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return")
		}
	})
	t.Run("reports a listener that cannot listen", func(t *testing.T) {
		h := NewHub(nil)
		ch, stop := h.Watch(store.ChangeTicket, "t-1")
		defer stop()
		f := newFeed()
		f.err = errors.New("connection refused")
		err := h.Run(context.Background(), f)
		if !errors.Is(err, f.err) {
			t.Errorf("Run = %v, want it to wrap %v", err, f.err)
		}
		if !woken(ch) {
			t.Error("waiters not released when the hub stopped listening")
		}
		select {
		case <-h.Ready():
			t.Error("ready without ever listening")
		default:
		}
	})
}

func TestHubManyWaiters(t *testing.T) {
	// 50,000 held long-polls must be cheap to hold and to wake.
	const n = 50_000
	h, f := NewHub(nil), newFeed()
	runHub(t, h, f)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	chans := make([]<-chan store.Change, n)
	stops := make([]func(), n)
	for i := range n {
		chans[i], stops[i] = h.Watch(store.ChangeTicket, fmt.Sprintf("ticket-%08d", i))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("%d waiters: about %d bytes each", n, (int64(after.HeapAlloc)-int64(before.HeapAlloc))/n)

	f.send(t, store.Change{Kind: store.ChangeTicket, ID: "ticket-00012345", Version: 2})
	f.send(t, store.Change{Kind: store.ChangeResync})
	f.send(t, store.Change{Kind: store.ChangeTicket, ID: "nobody"})
	for i, ch := range chans {
		if !woken(ch) {
			t.Fatalf("waiter %d not woken", i)
		}
	}
	for _, stop := range stops {
		stop()
	}
	if w := h.Waiting(); w != 0 {
		t.Errorf("Waiting = %d after every waiter left", w)
	}
}

func BenchmarkWatch(b *testing.B) {
	h := NewHub(nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			_, stop := h.Watch(store.ChangeTicket, fmt.Sprint("t-", i))
			stop()
			i++
		}
	})
}

package rabbit

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// ackCall is one call of acker.ack.
type ackCall struct {
	tag      uint64
	multiple bool
}

func TestAckerContiguity(t *testing.T) {
	type settle struct {
		tag uint64
		ok  bool // a success; else nacked by the handler
	}
	ok := func(tag uint64) settle { return settle{tag, true} }
	nacked := func(tag uint64) settle { return settle{tag, false} }
	tests := []struct {
		name    string
		hold    int
		settles []settle
		want    []ackCall
	}{
		{"in order", 8, []settle{ok(1), ok(2), ok(3)},
			[]ackCall{{1, true}, {2, true}, {3, true}}},
		{"reverse order, one frame", 8, []settle{ok(3), ok(2), ok(1)},
			[]ackCall{{3, true}}},
		{"gap filled, then in order", 8, []settle{ok(2), ok(3), ok(1), ok(4)},
			[]ackCall{{3, true}, {4, true}}},
		{"two gaps filled one by one", 8, []settle{ok(2), ok(4), ok(5), ok(1), ok(3)},
			[]ackCall{{2, true}, {5, true}}},
		{"nack first", 8, []settle{nacked(1), ok(2)},
			[]ackCall{{2, true}}},
		{"nacks only", 8, []settle{nacked(2), nacked(1), nacked(3)},
			nil},
		{"nack fills the gap", 8, []settle{ok(2), ok(3), nacked(1)},
			[]ackCall{{3, true}}},
		// The acknowledgement names the highest success, never a tag
		// that was nacked, which RabbitMQ no longer knows.
		{"nack ends the prefix", 8, []settle{ok(2), nacked(3), ok(1)},
			[]ackCall{{2, true}}},
		{"nack inside the prefix", 8, []settle{ok(3), nacked(2), ok(1)},
			[]ackCall{{3, true}}},
		{"nothing before the gap is settled", 8, []settle{ok(3), ok(2)},
			nil},
		// Past hold successes waiting behind the gap, the next go
		// alone, and the prefix still passes over them.
		{"hold reached", 2, []settle{ok(2), ok(3), ok(4), ok(5), ok(1)},
			[]ackCall{{4, false}, {5, false}, {3, true}}},
		{"hold reached, nacks not counted", 1, []settle{nacked(2), ok(3), nacked(4), ok(5), ok(1), ok(6)},
			[]ackCall{{5, false}, {3, true}, {6, true}}},
		{"hold zero", 0, []settle{ok(2), ok(1), ok(3)},
			[]ackCall{{2, false}, {1, true}, {3, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []ackCall
			a := newAcker(func(tag uint64, multiple bool) error {
				got = append(got, ackCall{tag, multiple})
				return nil
			}, tt.hold)
			for _, s := range tt.settles {
				if err := a.settle(s.tag, s.ok); err != nil {
					t.Fatalf("settle(%d, %v): %v", s.tag, s.ok, err)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("acks %v, want %v", got, tt.want)
			}
			if a.held > tt.hold {
				t.Errorf("%d successes held, more than hold %d", a.held, tt.hold)
			}
		})
	}
}

func TestAckerError(t *testing.T) {
	errClosed := errors.New("channel closed")
	a := newAcker(func(uint64, bool) error { return errClosed }, 1)
	if err := a.settle(2, true); err != nil {
		t.Errorf("holding 2 back: %v, want no acknowledgement sent", err)
	}
	if err := a.settle(3, true); !errors.Is(err, errClosed) {
		t.Errorf("acknowledging 3 alone: %v, want %v", err, errClosed)
	}
	if err := a.settle(1, true); !errors.Is(err, errClosed) {
		t.Errorf("acknowledging up to 3: %v, want %v", err, errClosed)
	}
}

// ackServer models how RabbitMQ settles the deliveries of one channel, to
// check an acker driven by concurrent handlers: it fails on an
// acknowledgement of a tag it does not hold (RabbitMQ would close the
// channel) and on one that covers a delivery whose handler has not
// finished, or failed (a message lost).
type ackServer struct {
	mu      sync.Mutex
	unacked map[uint64]bool // delivered, not settled → handler succeeded
	acked   map[uint64]int
	frames  int
	err     error
}

func (s *ackServer) ack(tag uint64, multiple bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frames++
	if _, ok := s.unacked[tag]; !ok {
		s.fail(fmt.Errorf("ack(%d, %v) of a tag not held", tag, multiple))
		return nil
	}
	for t, succeeded := range s.unacked {
		if t == tag || multiple && t < tag {
			if !succeeded {
				s.fail(fmt.Errorf("ack(%d, %v) covers %d, which has not succeeded", tag, multiple, t))
			}
			delete(s.unacked, t)
			s.acked[t]++
		}
	}
	return nil
}

func (s *ackServer) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// TestAckerConcurrent settles deliveries from several goroutines in a
// random order, a few nacked, and checks every success acknowledged once
// and nothing else.
func TestAckerConcurrent(t *testing.T) {
	const n, workers, hold = 5000, 8, 16
	rng := rand.New(rand.NewPCG(3, 5))
	s := &ackServer{unacked: make(map[uint64]bool, n), acked: make(map[uint64]int, n)}
	failed := make(map[uint64]bool)
	for tag := uint64(1); tag <= n; tag++ {
		s.unacked[tag] = false
		if rng.IntN(10) == 0 {
			failed[tag] = true
		}
	}
	// Each worker takes the next tag and settles it after a random
	// number of others, so that they finish well out of order.
	order := make(chan uint64)
	go func() {
		defer close(order)
		for tag := uint64(1); tag <= n; tag++ {
			order <- tag
		}
	}()
	a := newAcker(s.ack, hold)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var mine []uint64
			flush := func(k int) {
				for _, tag := range mine[:k] {
					s.mu.Lock()
					if failed[tag] {
						delete(s.unacked, tag) // the handler's own nack
					} else {
						s.unacked[tag] = true
					}
					s.mu.Unlock()
					if err := a.settle(tag, !failed[tag]); err != nil {
						t.Errorf("settle(%d): %v", tag, err)
					}
				}
				mine = mine[k:]
			}
			for tag := range order {
				mine = append(mine, tag)
				rng.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
				flush(rng.IntN(len(mine) + 1))
			}
			flush(len(mine))
		}()
	}
	wg.Wait()
	if s.err != nil {
		t.Fatal(s.err)
	}
	if len(s.unacked) != 0 {
		t.Errorf("%d deliveries left unacknowledged", len(s.unacked))
	}
	for tag := uint64(1); tag <= n; tag++ {
		if want := map[bool]int{false: 1, true: 0}[failed[tag]]; s.acked[tag] != want {
			t.Errorf("tag %d (nacked %v) acknowledged %d times, want %d", tag, failed[tag], s.acked[tag], want)
		}
	}
	if len(a.ahead) != 0 || a.held != 0 || a.next != n+1 {
		t.Errorf("acker ends with next %d, %d ahead, %d held; want %d, none, none", a.next, len(a.ahead), a.held, n+1)
	}
	t.Logf("%d deliveries, %d nacked, settled in %d acknowledgement frames", n, len(failed), s.frames)
}

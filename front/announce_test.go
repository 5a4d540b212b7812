package front_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/front"
	"github.com/quickmatch/quickmatch/internal/broker/membroker"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
)

// gatedPublisher holds every Publish until the test answers it: the
// outcome sent on answer is what that Publish returns.
type gatedPublisher struct {
	t       testing.TB
	entered chan []contracts.TicketTry // the tickets of each Publish call
	answer  chan error
}

func (p *gatedPublisher) Publish(_ context.Context, _ string, bodies ...[]byte) error {
	var tries []contracts.TicketTry
	for _, b := range bodies {
		m, rejected, err := contracts.DecodeTicketMessage(b)
		if err != nil || len(rejected) > 0 || m.V != contracts.SchemaVersion {
			p.t.Errorf("published message %s: %v, %v", b, rejected, err)
		}
		tries = append(tries, m.Tickets...)
	}
	p.entered <- tries
	return <-p.answer
}

// TestCreatesShareAMessage holds the first create's publish while more
// creates arrive: they wait for it and then go out together in one
// message, and each create answers the outcome of its own message.
func TestCreatesShareAMessage(t *testing.T) {
	for _, tt := range []struct {
		name   string
		second error // the outcome of the shared message
	}{
		{"confirmed", nil},
		{"failed", errors.New("channel closed")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const n = 20
			pub := &gatedPublisher{t: t, entered: make(chan []contracts.TicketTry), answer: make(chan error)}
			st := memstore.New(memstore.Options{})
			e := newFrontEnvWith(t, st, membroker.New(nil), func(c *front.Config) { c.Publisher = pub })

			statuses := make(chan int, n)
			var wg sync.WaitGroup
			start := func(i int) {
				wg.Go(func() {
					r := e.do("POST", "/v1/tickets", strings.NewReader(ticketBody("duel", fmt.Sprintf("p-%d", i))))
					statuses <- r.status
				})
			}
			start(0)
			first := <-pub.entered
			for i := 1; i < n; i++ {
				start(i)
			}
			// The others are stored, then wait for the first message.
			for deadline := time.Now().Add(5 * time.Second); len(e.created.IDs()) < n; {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d tickets stored", len(e.created.IDs()), n)
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond) // from the store to the queue of announcements
			pub.answer <- nil
			second := <-pub.entered
			pub.answer <- tt.second
			wg.Wait()
			close(statuses)

			if len(first) != 1 || len(second) != n-1 {
				t.Fatalf("messages of %d and %d tickets, want 1 and %d", len(first), len(second), n-1)
			}
			counts := map[int]int{}
			for s := range statuses {
				counts[s]++
			}
			want := map[int]int{http.StatusCreated: n}
			if tt.second != nil {
				want = map[int]int{http.StatusCreated: 1, http.StatusServiceUnavailable: n - 1}
			}
			if fmt.Sprint(counts) != fmt.Sprint(want) {
				t.Errorf("answers %v, want %v", counts, want)
			}
			// A create answered 503 left no ticket behind.
			for _, try := range second {
				_, err := st.Ticket(t.Context(), try.Ticket.ID)
				if gone := err != nil; gone != (tt.second != nil) {
					t.Errorf("ticket %s of the shared message: read error %v", try.Ticket.ID, err)
				}
			}
		})
	}
}

package front_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/front"
	"github.com/quickmatch/quickmatch/internal/broker/membroker"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
)

// flakyStore answers the first create with err after (if stored) writing
// the ticket, as a store whose reply is lost on the way back does, and
// fails the first deleteFails deletes, as a store still down does.
type flakyStore struct {
	storeListener
	err         error
	stored      bool
	deleteFails int32
	creates     atomic.Int32
	deletes     atomic.Int32
}

func (f *flakyStore) CreateTicketOnce(ctx context.Context, t contracts.Ticket, expiresAt time.Time, idem store.Idempotency) error {
	if f.creates.Add(1) > 1 {
		return f.storeListener.CreateTicketOnce(ctx, t, expiresAt, idem)
	}
	if f.stored {
		if err := f.storeListener.CreateTicketOnce(ctx, t, expiresAt, idem); err != nil {
			return err
		}
	}
	return f.err
}

func (f *flakyStore) DeleteTicket(ctx context.Context, id string) error {
	if f.deletes.Add(1) <= f.deleteFails {
		return errors.New("dial tcp: connection refused")
	}
	return f.storeListener.DeleteTicket(ctx, id)
}

// TestCreateWhoseStoreReplyIsLost: a 503 must mean that no ticket was
// made. A store error that may have come after the ticket was written is
// undone before the front answers, retrying the removal while the store is
// down; a store that was never reached is refused at once. Before, the
// ticket stayed, the reaper announced it, and a player told that the
// create failed was matched.
func TestCreateWhoseStoreReplyIsLost(t *testing.T) {
	tests := []struct {
		name        string
		store       *flakyStore
		wantDeletes int32
	}{
		{"reply lost after the write", &flakyStore{err: errors.New("EOF"), stored: true, deleteFails: 2}, 3},
		{"failed before the write", &flakyStore{err: errors.New("EOF"), deleteFails: 1}, 2},
		{"never reached", &flakyStore{err: fmt.Errorf("%w: dial tcp: connection refused", store.ErrUnreachable)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := memstore.New(memstore.Options{})
			tt.store.storeListener = s
			b := membroker.New(nil)
			t.Cleanup(func() { b.Close() })
			if err := b.Declare(context.Background(), contracts.TicketQueue("duel"), time.Second); err != nil {
				t.Fatal(err)
			}
			e := newFrontEnv(t, tt.store, b)
			r := e.do("POST", "/v1/tickets", strings.NewReader(ticketBody("duel", "p-1")))
			if p := decodeProblem(t, r); r.status != http.StatusServiceUnavailable || p.Code != contracts.CodeUnavailable {
				t.Fatalf("create: %d %s; want 503", r.status, r.body)
			}
			if got := tt.store.deletes.Load(); got != tt.wantDeletes {
				t.Errorf("%d deletes, want %d", got, tt.wantDeletes)
			}
			for _, id := range e.created.IDs() {
				if _, err := s.Ticket(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("ticket %s of the failed create: %v; want it gone", id, err)
				}
			}
			if r := e.do("POST", "/v1/tickets", strings.NewReader(ticketBody("duel", "p-1"))); r.status != http.StatusCreated {
				t.Errorf("create again: %d %s; want the player free", r.status, r.body)
			}
		})
	}
}

// TestCreateWhoseStoreStaysAway: a create whose store reply was lost, and
// whose store cannot be reached again within the finish timeout to remove
// the ticket, is not told that the create failed: the ticket may exist, so
// the answer is 503 outcome_unknown. Before, it was 503 unavailable, which
// promises that no ticket was made (found by make chaos, with Redis taking
// 14–23 s to replay its AOF against the 10 s budget). A retry with the same
// key, once the store answers, finds the ticket.
func TestCreateWhoseStoreStaysAway(t *testing.T) {
	s := memstore.New(memstore.Options{})
	fs := &flakyStore{storeListener: s, err: errors.New("EOF"), stored: true, deleteFails: 1 << 30}
	b := membroker.New(nil)
	t.Cleanup(func() { b.Close() })
	if err := b.Declare(context.Background(), contracts.TicketQueue("duel"), time.Second); err != nil {
		t.Fatal(err)
	}
	e := newFrontEnvWith(t, fs, b, func(c *front.Config) { c.FinishTimeout = 200 * time.Millisecond })
	key := http.Header{"Idempotency-Key": {"k-away"}, "Content-Type": {"application/json"}}
	r := doWith(t, e.srv.URL, "POST", "/v1/tickets", strings.NewReader(ticketBody("duel", "p-1")), key)
	p := decodeProblem(t, r)
	if r.status != http.StatusServiceUnavailable || p.Code != contracts.CodeOutcomeUnknown || r.header.Get("Retry-After") == "" {
		t.Fatalf("create: %d %s (Retry-After %q); want 503 outcome_unknown with Retry-After", r.status, r.body, r.header.Get("Retry-After"))
	}
	ids := e.created.IDs()
	if len(ids) != 1 {
		t.Fatalf("%d tickets stored, want the one whose reply was lost", len(ids))
	}
	if _, err := s.Ticket(t.Context(), ids[0]); err != nil {
		t.Fatalf("the ticket of the unknown create: %v; want it kept", err)
	}
	r = doWith(t, e.srv.URL, "POST", "/v1/tickets", strings.NewReader(ticketBody("duel", "p-1")), key)
	var tk contracts.Ticket
	if err := json.Unmarshal([]byte(r.body), &tk); r.status != http.StatusCreated || err != nil || tk.ID != ids[0] {
		t.Errorf("retry with the key: %d %s; want 201 with ticket %s", r.status, r.body, ids[0])
	}
}

package front_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
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

package front_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker/membroker"
	"github.com/quickmatch/quickmatch/internal/store/redisstore"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// TestLongPollAcrossFronts checks invariant 5 of docs/design.md: a long-poll held by one front
// wakes promptly when the ticket changes through another front that shares
// only the Redis store with it.
func TestLongPollAcrossFronts(t *testing.T) {
	addr, prefix := testenv.Redis(t)

	newFront := func() *frontEnv {
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { c.Close() })
		b := membroker.New(nil)
		t.Cleanup(func() { b.Close() })
		if err := b.Declare(context.Background(), contracts.TicketQueue("duel"), time.Second); err != nil {
			t.Fatal(err)
		}
		return newFrontEnv(t, redisstore.New(c, redisstore.Options{Prefix: prefix, Listener: uuid.NewString()}), b)
	}
	a, b := newFront(), newFront()

	tk := a.create("duel", "p-1")
	// Any front answers any ticket.
	if r := b.do("GET", "/v1/tickets/"+tk.ID, nil); r.status != http.StatusOK || decodeTicket(t, r).ID != tk.ID {
		t.Fatalf("ticket read through the other front: %d %s", r.status, r.body)
	}

	res := poll(t, b.srv.URL, "/v1/tickets/"+tk.ID+"?wait=10s&after=1")
	b.held(1)
	if r := a.do("DELETE", "/v1/tickets/"+tk.ID, nil); r.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	r := await(t, res, time.Second)
	if got := decodeTicket(t, r); r.status != http.StatusOK || got.Status != contracts.StatusCancelled || got.Version != 2 {
		t.Errorf("poll on the other front: %d %+v", r.status, got)
	}
}

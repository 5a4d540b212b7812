package front_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/front"
	"github.com/quickmatch/quickmatch/internal/broker/membroker"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
	"github.com/quickmatch/quickmatch/internal/store/redisstore"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// countingStore counts the front's ticket reads.
type countingStore struct {
	front.Store
	reads atomic.Int64
}

func (c *countingStore) Ticket(ctx context.Context, id string) (contracts.Ticket, error) {
	c.reads.Add(1)
	return c.Store.Ticket(ctx, id)
}

func (c *countingStore) WatchTicket(ctx context.Context, id string) (contracts.Ticket, error) {
	c.reads.Add(1)
	return c.Store.WatchTicket(ctx, id)
}

// TestHeldPollAnswersFromTheChange: a held poll reads the ticket once,
// before it waits, and answers each change from the ticket the change
// carries, on either store; a poll until assigned sleeps through matched
// without a read.
func TestHeldPollAnswersFromTheChange(t *testing.T) {
	for _, backend := range []string{"memstore", "redisstore"} {
		t.Run(backend, func(t *testing.T) {
			var s store.Store = memstore.New(memstore.Options{})
			if backend == "redisstore" {
				addr, prefix := testenv.Redis(t)
				c := redis.NewClient(&redis.Options{Addr: addr})
				t.Cleanup(func() { c.Close() })
				s = redisstore.New(c, redisstore.Options{Prefix: prefix, Listener: "front"})
			}
			b := membroker.New(nil)
			t.Cleanup(func() { b.Close() })
			if err := b.Declare(context.Background(), contracts.TicketQueue("duel"), time.Second); err != nil {
				t.Fatal(err)
			}
			counting := &countingStore{}
			e := newFrontEnvWith(t, s, b, func(cfg *front.Config) {
				counting.Store = cfg.Store
				cfg.Store = counting
			})
			ctx := context.Background()
			a, o := e.create("duel", "p-1"), e.create("duel", "p-2")

			plain := poll(t, e.srv.URL, "/v1/tickets/"+a.ID+"?wait=10s&after=1")
			until := poll(t, e.srv.URL, "/v1/tickets/"+o.ID+"?wait=10s&after=1&until=assigned")
			e.held(2)
			m := contracts.Match{
				ID: "duel.m-1", Queue: "duel", Region: "eu-west",
				Teams: [][]string{{"p-1"}, {"p-2"}}, TicketIDs: []string{a.ID, o.ID},
				Players: append(a.Players, o.Players...), CreatedAt: clock, AssignDeadline: clock.Add(time.Minute),
			}
			if err := s.ClaimMatch(ctx, m, clock); err != nil {
				t.Fatal(err)
			}
			got := decodeTicket(t, await(t, plain, 5*time.Second))
			if got.Status != contracts.StatusMatched || got.Version != 2 || got.Match == nil || got.Match.ID != m.ID {
				t.Errorf("poll answered %+v, want matched at version 2 in %s", got, m.ID)
			}
			e.held(1)
			if _, err := s.RegisterServer(ctx, "gs-1", contracts.ServerRequest{Address: "10.0.0.1:7777", Region: "eu-west", Capacity: 1}, time.Hour, clock); err != nil {
				t.Fatal(err)
			}
			if _, err := s.AssignMatch(ctx, m.ID, clock); err != nil {
				t.Fatal(err)
			}
			got = decodeTicket(t, await(t, until, 5*time.Second))
			if got.Status != contracts.StatusAssigned || got.Version != 3 || got.Assignment == nil || got.Assignment.ServerID != "gs-1" {
				t.Errorf("until=assigned poll answered %+v, want assigned to gs-1 at version 3", got)
			}
			if n := counting.reads.Load(); n != 2 {
				t.Errorf("the polls read the ticket %d times, want 2: once each before waiting", n)
			}
		})
	}
}

package redisstore

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// privateRedis starts a Redis server of the test's own, so that the test
// may flush its script cache; it dies with the test.
func privateRedis(t *testing.T) backend {
	t.Helper()
	testenv.Command(t, "redis-server")
	ports, err := freeClusterPorts(1)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(ports[0]), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	waitFor(t.Context(), t, "the private redis-server", func() (bool, error) {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		return c.Ping(t.Context()).Err() == nil, nil
	})
	return backend{
		client: func(t testing.TB) redis.UniversalClient {
			c := redis.NewClient(&redis.Options{Addr: addr})
			t.Cleanup(func() { c.Close() })
			return c
		},
		clean: func(testing.TB, string) {},
	}
}

// roundTrips counts what a client sends to Redis: a command alone or a
// pipeline, one round trip each.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestCreateClaimsInOneRoundTrip covers the single-server path of
// CreateTicket that sends the ticket and its first claim in one pipeline:
// a solo create is one round trip, the claim holds, a second ticket of the
// player is refused, a repeated create of the same ticket leaves its
// claim, and a Redis that has forgotten the scripts still ends with the
// ticket written and claimed.
func TestCreateClaimsInOneRoundTrip(t *testing.T) {
	s := privateRedis(t).newStore(t)
	ctx := t.Context()
	trips := &roundTrips{}
	s.client.(*redis.Client).AddHook(trips)
	mustCreate(t, s, ticket("duel.first", "p-0"), t0.Add(time.Hour)) // registers the queue too
	trips.n.Store(0)
	mustCreate(t, s, ticket("duel.a", "p-1"), t0.Add(time.Hour))
	if n := trips.n.Load(); n != 1 {
		t.Errorf("a solo create took %d round trips, want 1", n)
	}
	wantClaim(t, s, "p-1", "duel.a")

	err := s.CreateTicket(ctx, ticket("duel.b", "p-1"), t0.Add(time.Hour))
	if !errors.Is(err, store.ErrPlayerBusy) {
		t.Fatalf("second ticket of p-1: got %v, want ErrPlayerBusy", err)
	}
	wantClaim(t, s, "p-1", "duel.a")

	err = s.CreateTicket(ctx, ticket("duel.a", "p-1"), t0.Add(time.Hour))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("repeated create: got %v, want ErrConflict", err)
	}
	wantClaim(t, s, "p-1", "duel.a")

	if err := s.client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	// The first create after the flush finds no scripts and loads them;
	// the second finds them again.
	for i := range 2 {
		id := fmt.Sprintf("duel.c%d", i)
		mustCreate(t, s, ticket(id, "p-2"+id), t0.Add(time.Hour))
		wantClaim(t, s, "p-2"+id, id)
		if _, err := s.Ticket(ctx, id); err != nil {
			t.Fatalf("reading the ticket created after SCRIPT FLUSH: %v", err)
		}
	}
}

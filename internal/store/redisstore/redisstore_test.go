package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/storetest"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// backend is a Redis that tests run against: the single server of testenv,
// or the test's own cluster.
type backend struct {
	// client returns a new client, closed when t ends.
	client func(t testing.TB) redis.UniversalClient
	// clean deletes every key under prefix when t ends.
	clean func(t testing.TB, prefix string)
}

// newStore returns a Store on its own prefix, emptied when t ends.
func (b backend) newStore(t testing.TB) *Store {
	t.Helper()
	prefix := testenv.Prefix(t)
	b.clean(t, prefix)
	return New(b.client(t), Options{Prefix: prefix, Listener: "test"})
}

// single is the Redis server of testenv.
func single(t testing.TB) backend {
	t.Helper()
	testenv.RedisAddr(t) // skip early if it is not there
	return backend{
		client: func(t testing.TB) redis.UniversalClient { return newClient(t) },
		clean:  cleanPrefix,
	}
}

// cluster is a cluster of three masters of the test's own, on addrs. It
// dies with the test, so nothing needs cleaning.
func cluster(addrs []string) backend {
	return backend{
		client: func(t testing.TB) redis.UniversalClient {
			c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
			t.Cleanup(func() { c.Close() })
			return c
		},
		clean: func(testing.TB, string) {},
	}
}

// newClient connects to the test Redis and closes the client when the test
// ends.
func newClient(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { c.Close() })
	return c
}

// cleanPrefix deletes every key under prefix on the test Redis when the
// test ends, with a client of its own so that it runs after the test's
// clients are closed.
func cleanPrefix(t testing.TB, prefix string) {
	t.Helper()
	addr := testenv.RedisAddr(t)
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
			if len(keys) == 500 {
				if err := c.Unlink(ctx, keys...).Err(); err != nil {
					t.Errorf("deleting test keys: %v", err)
					return
				}
				keys = keys[:0]
			}
		}
		if err := iter.Err(); err != nil {
			t.Errorf("scanning test keys: %v", err)
			return
		}
		if len(keys) > 0 {
			if err := c.Unlink(ctx, keys...).Err(); err != nil {
				t.Errorf("deleting test keys: %v", err)
			}
		}
	})
}

// newStore returns a Store on the single test Redis, on its own prefix.
func newStore(t testing.TB) *Store {
	t.Helper()
	return single(t).newStore(t)
}

func TestConformance(t *testing.T) {
	b := single(t)
	storetest.Run(t, func(t *testing.T) store.Store { return b.newStore(t) })
}

// TestConformanceShared checks two Stores on two clients of one Redis
// behave as one store.
func TestConformanceShared(t *testing.T) {
	runShared(t, single(t))
}

func runShared(t *testing.T, b backend) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		prefix := testenv.Prefix(t)
		b.clean(t, prefix)
		return New(b.client(t), Options{Prefix: prefix, Listener: "a"}), New(b.client(t), Options{Prefix: prefix, Listener: "b"})
	})
}

// TestStore runs the implementation's own tests on the single Redis.
func TestStore(t *testing.T) {
	b := single(t)
	for _, tc := range storeTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
	}
}

// TestCluster runs everything again on a Redis Cluster of three masters
// that it starts, once for the whole run. A cluster client sends each
// script to the node of its keys' slot, and Redis refuses a script whose
// keys span slots, so passing here shows every script stays on one slot.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	b := cluster(startCluster(t))
	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return b.newStore(t) })
	})
	t.Run("ConformanceShared", func(t *testing.T) { runShared(t, b) })
	t.Run("Store", func(t *testing.T) {
		for _, tc := range storeTests {
			t.Run(tc.name, func(t *testing.T) { tc.fn(t, b) })
		}
	})
	t.Run("QueuesSpread", func(t *testing.T) { testQueuesSpread(t, b) })
	t.Run("ReleaseAfterScriptFlush", func(t *testing.T) { testReleaseAfterScriptFlush(t, b) })
}

// testReleaseAfterScriptFlush checks that releases, which run their script
// in a pipeline with no per-call fallback to EVAL, load it when the nodes
// have forgotten it. It flushes the script caches, so it runs only on the
// test's own cluster.
func testReleaseAfterScriptFlush(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	players := []string{"p-1", "p-2", "p-3", "p-4", "p-5", "p-6"}
	mustCreate(t, s, ticket("duel.a", players...), t0.Add(time.Hour))
	if err := s.client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	if _, err := s.CancelTicket(ctx, "duel.a", t0); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	for _, p := range players {
		wantClaim(t, s, p, "")
	}
}

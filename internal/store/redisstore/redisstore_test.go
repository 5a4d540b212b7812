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

// newClient connects to the test Redis and closes the client when the test
// ends.
func newClient(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { c.Close() })
	return c
}

// cleanPrefix deletes every key under prefix when the test ends, with a
// client of its own so that it runs after the test's clients are closed.
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

// newStore returns a Store on its own prefix, emptied when the test ends.
func newStore(t testing.TB) *Store {
	t.Helper()
	prefix := testenv.Prefix(t)
	cleanPrefix(t, prefix)
	return New(newClient(t), Options{Prefix: prefix})
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

// TestConformanceShared checks two Stores on two clients of one Redis
// behave as one store.
func TestConformanceShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		prefix := testenv.Prefix(t)
		cleanPrefix(t, prefix)
		return New(newClient(t), Options{Prefix: prefix}), New(newClient(t), Options{Prefix: prefix})
	})
}

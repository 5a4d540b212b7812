package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis returns the test Redis address and a prefix unique to this test,
// and deletes every key under the prefix when the test ends (after the
// test's own clients are closed, so it dials its own).
func Redis(t testing.TB) (addr, prefix string) {
	t.Helper()
	addr, prefix = RedisAddr(t), Prefix(t)
	t.Cleanup(func() { DeleteKeys(t, addr, prefix) })
	return addr, prefix
}

// DeleteKeys deletes every key under prefix on the Redis at addr.
func DeleteKeys(t testing.TB, addr, prefix string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var keys []string
	flush := func() {
		if len(keys) > 0 {
			if err := c.Unlink(ctx, keys...).Err(); err != nil {
				t.Errorf("deleting test keys: %v", err)
			}
			keys = keys[:0]
		}
	}
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 1000 {
			flush()
		}
	}
	if err := iter.Err(); err != nil {
		t.Errorf("scanning test keys: %v", err)
	}
	flush()
}

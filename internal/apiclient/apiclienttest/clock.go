// Package apiclienttest helps test the API clients: a clock that records
// the waits of a retry policy instead of sleeping them, and the answers of
// a fake suite.
package apiclienttest

import (
	"context"
	"sync"
	"time"
)

// Clock records the waits asked of it. Its Sleep is a RetryPolicy.Sleep.
type Clock struct {
	mu    sync.Mutex
	slept []time.Duration
}

// Sleep records d and returns at once, or ctx's error if it has ended.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slept = append(c.slept, d)
	return nil
}

// Waits are the waits asked so far, in order.
func (c *Clock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

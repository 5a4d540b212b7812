package store

import (
	"context"
	"sync"
	"time"
)

// StatsReader is what reads the store's counts.
type StatsReader interface {
	Stats(ctx context.Context, now time.Time) (Stats, error)
}

// CachedStats reads Stats of Store at most once per TTL, however many ask:
// a reading walks every ticket in memory and every server record in Redis,
// and the gauges, the explanations and the dashboard of one process share
// it. It is a StatsReader itself.
type CachedStats struct {
	Store StatsReader
	TTL   time.Duration

	mu     sync.Mutex // held while reading
	last   Stats
	readAt time.Time
}

// Stats answers the last reading if it is younger than TTL at now, and
// reads again otherwise.
func (c *CachedStats) Stats(ctx context.Context, now time.Time) (Stats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readAt.IsZero() || now.Sub(c.readAt) >= c.TTL || now.Before(c.readAt) {
		st, err := c.Store.Stats(ctx, now)
		if err != nil {
			return Stats{}, err
		}
		c.last, c.readAt = st, now
	}
	return c.last, nil
}

// CachingStats is s with its Stats read through a CachedStats of ttl.
func CachingStats(s Store, ttl time.Duration) Store {
	return cachingStats{Store: s, stats: &CachedStats{Store: s, TTL: ttl}}
}

type cachingStats struct {
	Store
	stats *CachedStats
}

func (s cachingStats) Stats(ctx context.Context, now time.Time) (Stats, error) {
	return s.stats.Stats(ctx, now)
}

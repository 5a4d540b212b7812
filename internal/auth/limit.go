package auth

import (
	"container/list"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter is a set of token buckets by key, such as a client address,
// bounded in memory: it holds at most max keys. A bucket left idle long
// enough to be full again is forgotten, since a new bucket starts full; past
// max keys the least recently used bucket is forgotten even if it is not
// full, which lets a key that comes back start afresh. It is safe for
// concurrent use.
type Limiter struct {
	limit rate.Limit
	burst int
	max   int
	// fill is how long an idle bucket takes to be full again.
	fill time.Duration

	mu      sync.Mutex
	buckets map[string]*list.Element // of *bucket
	lru     list.List                // most recently used first
}

type bucket struct {
	key  string
	lim  *rate.Limiter
	last time.Time
}

// NewLimiter returns a Limiter whose buckets hold burst tokens and gain
// perSecond tokens a second, for at most max keys. It panics unless all
// three are positive.
func NewLimiter(perSecond float64, burst int, max int) *Limiter {
	if !(perSecond > 0) || burst < 1 || max < 1 {
		panic(fmt.Sprintf("auth.NewLimiter(%v, %d, %d): all must be positive", perSecond, burst, max))
	}
	fill := time.Duration(math.MaxInt64)
	if f := float64(burst) / perSecond * float64(time.Second); f < float64(fill) {
		fill = time.Duration(f)
	}
	return &Limiter{
		limit:   rate.Limit(perSecond),
		burst:   burst,
		max:     max,
		fill:    fill,
		buckets: make(map[string]*list.Element),
	}
}

// Allow takes one token for key; when none is left it reports false and how
// long until one is.
func (l *Limiter) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.buckets[key]
	if e == nil {
		l.sweep(now)
		e = l.lru.PushFront(&bucket{key: key, lim: rate.NewLimiter(l.limit, l.burst)})
		l.buckets[key] = e
	} else {
		l.lru.MoveToFront(e)
	}
	b := e.Value.(*bucket)
	if now.After(b.last) {
		b.last = now
	}
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // a refused request takes nothing
		return false, d
	}
	return true, 0
}

// Len reports how many keys l holds a bucket for.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// sweep makes room for one more bucket: it forgets the buckets idle long
// enough to be full, which the list keeps at its back, and then the least
// recently used ones while l is full.
func (l *Limiter) sweep(now time.Time) {
	for e := l.lru.Back(); e != nil; e = l.lru.Back() {
		b := e.Value.(*bucket)
		if len(l.buckets) < l.max && now.Sub(b.last) < l.fill {
			return
		}
		l.lru.Remove(e)
		delete(l.buckets, b.key)
	}
}

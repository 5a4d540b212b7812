package apiclient

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Defaults of a RetryPolicy's zero fields.
const (
	DefaultBase  = 100 * time.Millisecond
	DefaultCap   = 5 * time.Second
	DefaultTries = 8
)

// RetryPolicy says how a failed call is tried again: exponential backoff
// with full jitter (after n failures in a row, a wait drawn evenly from
// zero to Base·2ⁿ⁻¹, capped at Cap), never shorter than the Retry-After
// the suite asked for, until Tries tries have failed or the next wait
// would pass the context's deadline. The zero value is the default policy.
type RetryPolicy struct {
	// Base is the ceiling of the first wait; DefaultBase if zero.
	Base time.Duration
	// Cap bounds the ceiling of any wait (not a Retry-After, which the
	// suite's word makes the minimum); DefaultCap if zero.
	Cap time.Duration
	// Tries bounds the tries of one call, the first included;
	// DefaultTries if zero, and unbounded (until the context ends) if
	// negative. For a watch it bounds the failures in a row.
	Tries int
	// Sleep waits d or until ctx ends, returning ctx's error then; a
	// timer if nil. Tests put a fake clock here.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a number in [0, 1) for the jitter; math/rand/v2's
	// Float64 if nil.
	Rand func() float64
}

func (p RetryPolicy) base() time.Duration {
	if p.Base <= 0 {
		return DefaultBase
	}
	return p.Base
}

func (p RetryPolicy) ceiling() time.Duration {
	if p.Cap <= 0 {
		return DefaultCap
	}
	return p.Cap
}

// MaxTries is how many tries a call gets; 0 means no bound.
func (p RetryPolicy) MaxTries() int {
	switch {
	case p.Tries < 0:
		return 0
	case p.Tries == 0:
		return DefaultTries
	}
	return p.Tries
}

// Delay is the wait after n failures in a row (n from 1): a uniform draw
// from [0, min(Cap, Base·2ⁿ⁻¹)], or retryAfter if that is longer.
func (p RetryPolicy) Delay(n int, retryAfter time.Duration) time.Duration {
	ceil, b, shift := p.ceiling(), p.base(), max(n-1, 0)
	if shift < 62 && b < ceil>>shift {
		ceil = b << shift
	}
	r := rand.Float64
	if p.Rand != nil {
		r = p.Rand
	}
	d := min(max(time.Duration(r()*float64(ceil+1)), 0), ceil)
	return max(d, retryAfter)
}

// Wait sleeps before the next try of a call after n failures in a row (n
// from 1), the last with a Retry-After of retryAfter. It reports false,
// without sleeping, when the policy allows no more tries or the wait would
// end past ctx's deadline, and returns ctx's error if ctx ends while it
// sleeps.
func (p RetryPolicy) Wait(ctx context.Context, n int, retryAfter time.Duration) (bool, error) {
	if limit := p.MaxTries(); limit > 0 && n >= limit {
		return false, nil
	}
	d := p.Delay(n, retryAfter)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false, nil
	}
	sleep := p.Sleep
	if sleep == nil {
		sleep = Sleep
	}
	if err := sleep(ctx, d); err != nil {
		return false, err
	}
	return true, nil
}

// Sleep waits d or until ctx ends, and returns ctx's error if it ended.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// maxRetryAfter bounds the Retry-After the client honours: a proxy's
// "come back tomorrow" is not a wait a game client should make.
const maxRetryAfter = 5 * time.Minute

// RetryAfter reads a Retry-After header: seconds (what the suite sends) or
// an HTTP date, at most five minutes. Absent or malformed: 0.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return 0
}

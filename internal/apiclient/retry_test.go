package apiclient

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/internal/apiclient/apiclienttest"
)

func fixedRand(x float64) func() float64 { return func() float64 { return x } }

func TestDelay(t *testing.T) {
	tests := []struct {
		name       string
		p          RetryPolicy
		n          int
		retryAfter time.Duration
		want       time.Duration
	}{
		{"first wait, top of the jitter", RetryPolicy{Rand: fixedRand(0.999999999)}, 1, 0, 100 * time.Millisecond},
		{"doubles", RetryPolicy{Rand: fixedRand(0.999999999)}, 3, 0, 400 * time.Millisecond},
		{"capped", RetryPolicy{Rand: fixedRand(0.999999999)}, 10, 0, 5 * time.Second},
		{"no overflow far out", RetryPolicy{Rand: fixedRand(0.999999999)}, 500, 0, 5 * time.Second},
		{"full jitter: half", RetryPolicy{Rand: fixedRand(0.5)}, 4, 0, 400 * time.Millisecond},
		{"full jitter: from zero", RetryPolicy{Rand: fixedRand(0)}, 4, 0, 0},
		{"Retry-After is the minimum", RetryPolicy{Rand: fixedRand(0.5)}, 1, 2 * time.Second, 2 * time.Second},
		{"Retry-After past the cap", RetryPolicy{Rand: fixedRand(0.5)}, 1, 30 * time.Second, 30 * time.Second},
		{"jitter longer than Retry-After", RetryPolicy{Rand: fixedRand(0.999999999)}, 8, time.Second, 5 * time.Second},
		{"own base and cap", RetryPolicy{Base: time.Second, Cap: 3 * time.Second, Rand: fixedRand(0.999999999)}, 2, 0, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.p.Delay(tt.n, tt.retryAfter)
			// The draw scales the ceiling by a float: allow a nanosecond.
			if d := got - tt.want; d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("Delay(%d, %v) = %v, want %v", tt.n, tt.retryAfter, got, tt.want)
			}
		})
	}
}

func TestDelayStaysInRange(t *testing.T) {
	p := RetryPolicy{}
	for n := 1; n <= 12; n++ {
		ceil := min(DefaultBase<<(n-1), DefaultCap)
		for range 200 {
			if d := p.Delay(n, 0); d < 0 || d > ceil {
				t.Fatalf("Delay(%d) = %v, want within [0, %v]", n, d, ceil)
			}
		}
	}
}

func TestWait(t *testing.T) {
	tests := []struct {
		name     string
		p        RetryPolicy
		n        int
		deadline time.Duration // 0: none
		ra       time.Duration
		wantOK   bool
		wantWait bool
	}{
		{"within the tries", RetryPolicy{}, 1, 0, 0, true, true},
		{"the last try failed", RetryPolicy{}, DefaultTries, 0, 0, false, false},
		{"own bound", RetryPolicy{Tries: 2}, 2, 0, 0, false, false},
		{"unbounded", RetryPolicy{Tries: -1}, 1000, 0, 0, true, true},
		{"the wait would pass the deadline", RetryPolicy{}, 1, time.Second, 5 * time.Second, false, false},
		{"the wait ends before the deadline", RetryPolicy{}, 1, time.Minute, 5 * time.Second, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &apiclienttest.Clock{}
			tt.p.Sleep = clock.Sleep
			ctx := t.Context()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			ok, err := tt.p.Wait(ctx, tt.n, tt.ra)
			if err != nil || ok != tt.wantOK {
				t.Fatalf("Wait = %v, %v; want %v", ok, err, tt.wantOK)
			}
			if waited := len(clock.Waits()) > 0; waited != tt.wantWait {
				t.Errorf("waited %v, want %v", clock.Waits(), tt.wantWait)
			}
			if tt.ra > 0 && tt.wantWait && clock.Waits()[0] < tt.ra {
				t.Errorf("waited %v, less than the Retry-After %v", clock.Waits()[0], tt.ra)
			}
		})
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if ok, err := (RetryPolicy{}).Wait(ctx, 1, time.Hour); ok || err == nil {
		t.Errorf("Wait on an ended context = %v, %v; want false and its error", ok, err)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"1", time.Second},
		{" 3 ", 3 * time.Second},
		{"0", 0},
		{"-4", 0},
		{"soon", 0},
		{"86400", 5 * time.Minute},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.header != "" {
			h.Set("Retry-After", tt.header)
		}
		if got := RetryAfter(h, now); got != tt.want {
			t.Errorf("Retry-After %q = %v, want %v", tt.header, got, tt.want)
		}
	}
}

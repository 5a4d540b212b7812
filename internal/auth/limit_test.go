package auth_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/internal/auth"
)

func TestLimiterBurstThenRefusal(t *testing.T) {
	l := auth.NewLimiter(2, 3, 100) // a token every 500ms, 3 at most
	for i := range 3 {
		if ok, after := l.Allow("a", now); !ok {
			t.Fatalf("request %d of the burst refused, retry after %v", i+1, after)
		}
	}
	ok, after := l.Allow("a", now)
	if ok {
		t.Fatal("a request past the burst was allowed")
	}
	if after <= 0 || after > 500*time.Millisecond {
		t.Errorf("retryAfter %v, want in (0, 500ms]", after)
	}
	// A refused request takes nothing: the token is there when it said.
	for range 5 {
		l.Allow("a", now)
	}
	if ok, _ := l.Allow("a", now.Add(after)); !ok {
		t.Errorf("refused once the retryAfter %v had passed", after)
	}
	if ok, after2 := l.Allow("a", now.Add(after)); ok || after2 <= 0 || after2 > 500*time.Millisecond {
		t.Errorf("second request after retryAfter: %v, %v; want refused for up to 500ms", ok, after2)
	}
	// Idle, the bucket fills to its burst and no further.
	later := now.Add(time.Hour)
	for i := range 3 {
		if ok, _ := l.Allow("a", later); !ok {
			t.Fatalf("request %d after an idle hour refused", i+1)
		}
	}
	if ok, _ := l.Allow("a", later); ok {
		t.Error("an idle bucket filled past its burst")
	}
}

func TestLimiterKeysIndependent(t *testing.T) {
	l := auth.NewLimiter(1, 1, 100)
	if ok, _ := l.Allow("a", now); !ok {
		t.Fatal("first request of a refused")
	}
	if ok, _ := l.Allow("a", now); ok {
		t.Fatal("second request of a allowed")
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Error("b refused because a was used up")
	}
	if ok, _ := l.Allow("a", now); ok {
		t.Error("a allowed after b was used")
	}
}

func TestLimiterBounded(t *testing.T) {
	l := auth.NewLimiter(1, 5, 100)
	for i := range 10_000 {
		l.Allow(fmt.Sprintf("10.0.%d.%d", i/256, i%256), now.Add(time.Duration(i)*time.Millisecond))
		if n := l.Len(); n > 100 {
			t.Fatalf("%d keys held after %d distinct keys, max 100", n, i+1)
		}
	}
	// The most recent keys keep their buckets: the last one used up its
	// burst here is still refused.
	key := "hot"
	for range 5 {
		l.Allow(key, now.Add(10*time.Second))
	}
	for i := range 50 {
		l.Allow(fmt.Sprintf("new-%d", i), now.Add(10*time.Second))
	}
	if ok, _ := l.Allow(key, now.Add(10*time.Second)); ok {
		t.Error("a recently used key lost its bucket to 50 new keys with room for 100")
	}
	// Buckets idle long enough to be full are forgotten as new keys come.
	l.Allow("late", now.Add(time.Hour))
	if n := l.Len(); n != 1 {
		t.Errorf("%d keys held after all but one idled out; want 1", n)
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := auth.NewLimiter(1, 10, 50)
	var wg sync.WaitGroup
	allowed := make([]int, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				if ok, _ := l.Allow("shared", now); ok {
					allowed[g]++
				}
				l.Allow(fmt.Sprintf("k%d-%d", g, i), now)
			}
		})
	}
	wg.Wait()
	total := 0
	for _, n := range allowed {
		total += n
	}
	// Each goroutine touches "shared" between any two keys it adds, so at
	// most 8 keys come between two touches and it is never evicted: its
	// burst is all it gets.
	if total != 10 {
		t.Errorf("%d requests of the shared key allowed, want its burst of 10", total)
	}
	if n := l.Len(); n > 50 {
		t.Errorf("%d keys held, max 50", n)
	}
}

func TestNewLimiterPanics(t *testing.T) {
	for _, args := range [][3]float64{{0, 1, 1}, {-1, 1, 1}, {1, 0, 1}, {1, 1, 0}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewLimiter(%v, %v, %v) did not panic", args[0], args[1], args[2])
				}
			}()
			auth.NewLimiter(args[0], int(args[1]), int(args[2]))
		}()
	}
}

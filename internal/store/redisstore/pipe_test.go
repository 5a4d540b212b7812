package redisstore

import (
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestPipeRepliesToEachCaller sends many commands at once through one
// pipe, so that most travel in shared pipelines, and checks that every
// caller gets its own reply, errors included, and that the pipe ends idle.
func TestPipeRepliesToEachCaller(t *testing.T) {
	s := single(t).newStore(t)
	p, prefix := &s.pipe, s.prefix
	ctx := t.Context()

	const callers, rounds = maxPipeline + 88, 10 // more than one pipeline takes
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() {
			key := fmt.Sprintf("%spipe:%d", prefix, i)
			for r := 1; r <= rounds; r++ {
				incr := redis.NewIntCmd(ctx, "incr", key)
				if err := p.do(ctx, incr); err != nil || incr.Val() != int64(r) {
					errs <- fmt.Errorf("caller %d round %d: INCR gave %d, %v; want %d", i, r, incr.Val(), err, r)
					return
				}
				// A command that fails must fail for its caller alone.
				bad := redis.NewCmd(ctx, "hget", key, "field")
				if err := p.do(ctx, bad); err == nil {
					errs <- fmt.Errorf("caller %d: HGET on a string key succeeded", i)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inFlight != 0 || len(p.waiting) != 0 {
		t.Errorf("pipe left with %d in flight and %d waiting", p.inFlight, len(p.waiting))
	}
}

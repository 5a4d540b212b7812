package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// fault is the kind of fault a phase injects.
type fault string

const (
	faultNone     fault = "none"
	faultMatcher  fault = "matcher"
	faultAssigner fault = "assigner"
	faultFront    fault = "front"
	faultBroker   fault = "broker"
	faultRedis    fault = "redis"
	faultMixed    fault = "mixed"
)

var allFaults = []fault{faultNone, faultMatcher, faultAssigner, faultFront, faultBroker, faultRedis, faultMixed}

// single are the faults a mixed phase draws from.
var single = []fault{faultMatcher, faultAssigner, faultFront, faultBroker, faultRedis}

var faultText = map[fault]string{
	faultNone:     "none (baseline)",
	faultMatcher:  "SIGKILL a matcher",
	faultAssigner: "SIGKILL an assigner",
	faultFront:    "SIGKILL a front",
	faultBroker:   "close every broker connection",
	faultRedis:    "SIGKILL Redis",
	faultMixed:    "all of them, mixed",
}

// injection is one fault injected.
type injection struct {
	At     time.Time `json:"at"`
	Kind   fault     `json:"kind"`
	Target string    `json:"target"`
	Error  string    `json:"error,omitempty"`
	// Rollback is, for a Redis kill, how far back the restarted Redis
	// went: from the kill to the last write of the run's clock it kept.
	Rollback time.Duration `json:"rollback_ns,omitempty"`
	// Outage is from the kill until the restarted process was ready.
	Outage time.Duration `json:"outage_ns,omitempty"`
}

// injector injects faults into the stack on a seeded schedule.
type injector struct {
	cfg   *config
	st    *stack
	rng   *rand.Rand
	rdb   *redis.Client // the run's own client of the private Redis
	wlog  *writeLog
	beat  *beater
	logf  func(format string, args ...any)
	vhost string

	mu      sync.Mutex
	durable map[string]bool // keys whose writes a Redis kill lost, this phase
}

// run injects kind from start until until, one injection every cfg.Every
// (±30%), each waiting for its restart, and calls tick about every 250 ms
// between them; it returns the injections made.
func (in *injector) run(ctx context.Context, kind fault, start, until time.Time, tick func()) []injection {
	var done []injection
	next := start.Add(in.jitter())
	// Bounded: each pass waits up to 250 ms or injects once.
	for range 1_000_000 {
		now := time.Now()
		if !now.Before(until) || ctx.Err() != nil {
			return done
		}
		if kind == faultNone || now.Before(next) {
			wait := min(250*time.Millisecond, time.Until(until))
			if kind != faultNone {
				wait = min(wait, time.Until(next))
			}
			sleepCtx(ctx, wait)
			tick()
			continue
		}
		k := kind
		if k == faultMixed {
			k = single[in.rng.IntN(len(single))]
		}
		inj := in.inject(ctx, k)
		if in.cfg.Verbose || inj.Error != "" {
			in.logf("  inject %s %s%s", inj.Kind, inj.Target, errSuffix(inj.Error))
		}
		done = append(done, inj)
		next = time.Now().Add(in.jitter())
	}
	return done
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return ": " + e
}

func (in *injector) jitter() time.Duration {
	return time.Duration(float64(in.cfg.Every) * (0.7 + 0.6*in.rng.Float64()))
}

// inject injects one fault and waits until the stack is whole again.
func (in *injector) inject(ctx context.Context, k fault) injection {
	inj := injection{At: time.Now(), Kind: k}
	var err error
	switch k {
	case faultMatcher:
		err = in.killService(ctx, in.st.matchers, &inj)
	case faultAssigner:
		err = in.killService(ctx, in.st.assigners, &inj)
	case faultFront:
		err = in.killService(ctx, in.st.fronts, &inj)
	case faultBroker:
		inj.Target = "vhost " + in.vhost
		_, err = rabbitmqctl(ctx, "close_all_connections", "-p", in.vhost, "chaos")
	case faultRedis:
		inj.Target = "redis " + in.st.redisAddr
		err = in.killRedis(ctx, &inj)
	default:
		err = fmt.Errorf("no injection for %q", k)
	}
	if err != nil {
		inj.Error = err.Error()
	}
	if k != faultBroker {
		inj.Outage = time.Since(inj.At)
	}
	return inj
}

// killService SIGKILLs one of ps at random and starts it again on the
// same address after cfg.Down.
func (in *injector) killService(ctx context.Context, ps []*proc, inj *injection) error {
	p := ps[in.rng.IntN(len(ps))]
	inj.Target = fmt.Sprintf("%s (pid %d)", p.name, p.pid())
	if err := p.kill(); err != nil {
		return err
	}
	if !sleepCtx(ctx, in.cfg.Down) {
		return ctx.Err()
	}
	return p.start(ctx)
}

// killRedis SIGKILLs Redis, restarts it on the same port and directory
// after cfg.RedisDown (the AOF replays), and records which keys were
// written in the stretch before the kill that the restarted Redis lost.
func (in *injector) killRedis(ctx context.Context, inj *injection) error {
	in.beat.hold.Lock()
	defer in.beat.hold.Unlock()
	acked := in.beat.acked()
	kill := time.Now()
	if err := in.st.redis.kill(); err != nil {
		return err
	}
	// What may be lost, taken now: the log forgets while Redis replays.
	// A write's notification arrives a moment after the write.
	sleepCtx(ctx, 100*time.Millisecond)
	written := in.wlog.between(kill.Add(-in.cfg.DurabilityWindow), kill.Add(100*time.Millisecond))
	if !sleepCtx(ctx, max(in.cfg.RedisDown-100*time.Millisecond, 0)) {
		return ctx.Err()
	}
	if err := in.st.redis.start(ctx); err != nil {
		return err
	}
	// The AOF replays a prefix of the writes: those after the last beat
	// kept were lost, those before it kept. If the last beat acknowledged
	// before the kill is kept, nothing acknowledged was lost.
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	kept, ok, err := lastBeat(bctx, in.rdb)
	cancel()
	if err != nil {
		return err
	}
	if ok && !kept.Before(acked) {
		inj.Rollback = 0
		return nil
	}
	from := kill.Add(-in.cfg.DurabilityWindow)
	inj.Rollback = -1
	if ok {
		inj.Rollback = max(kill.Sub(kept), 0)
		from = later(from, kept)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, w := range written {
		if !w.at.Before(from) {
			in.durable[w.key] = true
		}
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// takeDurable returns the keys recorded as lost since the last call.
func (in *injector) takeDurable() map[string]bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	d := in.durable
	in.durable = map[string]bool{}
	return d
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// describeOutages says how long the killed processes were down, and how
// far back each Redis restart went.
func describeOutages(injs []injection) []string {
	var down, redisDown time.Duration
	var n, nRedis int
	var rollbacks []string
	for _, i := range injs {
		if i.Error != "" || i.Outage == 0 {
			continue
		}
		if i.Kind != faultRedis {
			down, n = max(down, i.Outage), n+1
			continue
		}
		redisDown, nRedis = max(redisDown, i.Outage), nRedis+1
		if i.Rollback < 0 {
			rollbacks = append(rollbacks, "everything (no beat kept)")
		} else {
			rollbacks = append(rollbacks, i.Rollback.Round(time.Millisecond).String())
		}
	}
	var out []string
	if n > 0 {
		out = append(out, fmt.Sprintf("%d services killed, each down at most %s until ready again", n, down.Round(10*time.Millisecond)))
	}
	if nRedis > 0 {
		out = append(out, fmt.Sprintf("Redis killed %d times, down at most %s until its AOF was replayed; it went back by %s",
			nRedis, redisDown.Round(10*time.Millisecond), strings.Join(rollbacks, ", ")))
	}
	return out
}

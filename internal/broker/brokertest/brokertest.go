// Package brokertest is the conformance suite of broker.Broker: every
// implementation runs Run against a fresh broker per subtest, so that the
// embedded and the distributed mode keep the same contract. Bench measures
// one publish-and-consume run for the benchmarks of each implementation.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
)

// wait bounds every wait for something that should happen: a liveness
// bound, generous enough for a loaded machine, not a performance figure.
const wait = 15 * time.Second

// quiet is how long a test watches for a delivery that must not happen.
const quiet = 500 * time.Millisecond

// Run runs the conformance suite. newBroker returns a broker of its own for
// one subtest (for a shared server: under a fresh queue-name prefix) and
// registers its cleanup with t; the suite may Close it first.
func Run(t *testing.T, newBroker func(t *testing.T) broker.Broker) {
	tests := []struct {
		name string
		run  func(t *testing.T, b broker.Broker)
	}{
		{"RoundTrip", testRoundTrip},
		{"Batch", testBatch},
		{"Delayed", testDelayed},
		{"AckedNotRedelivered", testAckedNotRedelivered},
		{"TransientRedelivered", testTransientRedelivered},
		{"TransientNoHotLoop", testTransientNoHotLoop},
		{"DeadLetter", testDeadLetter},
		{"CompetingConsumers", testCompetingConsumers},
		{"CancelReturnsUnacked", testCancelReturnsUnacked},
		{"Workers", testWorkers},
		{"Undeclared", testUndeclared},
		{"DeclareTwice", testDeclareTwice},
		{"DeclareOtherDelay", testDeclareOtherDelay},
		{"ConsumeIdleCancel", testConsumeIdleCancel},
		{"Close", testClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newBroker(t))
		})
	}
}

// delivery is what a handler saw.
type delivery struct {
	body        string
	redelivered bool
	at          time.Time
}

// consumer is a Consume call running in its own goroutine.
type consumer struct {
	cancel context.CancelFunc
	// finished is closed when Consume has returned err.
	finished chan struct{}
	err      error
}

// consume starts Consume; the test's cleanup stops it if the test did not.
func consume(t *testing.T, b broker.Broker, name string, opts broker.ConsumeOptions, h broker.Handler) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{cancel: cancel, finished: make(chan struct{})}
	go func() {
		defer close(c.finished)
		c.err = b.Consume(ctx, name, opts, h)
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop cancels the consumer's context and returns Consume's result.
func (c *consumer) stop(t *testing.T) error {
	t.Helper()
	c.cancel()
	select {
	case <-c.finished:
		return c.err
	case <-time.After(wait):
		t.Fatalf("Consume did not return within %v after its context ended", wait)
		return nil
	}
}

// collect is a handler that reports every delivery on ch and acknowledges it.
func collect(ch chan<- delivery) broker.Handler {
	return func(ctx context.Context, m broker.Message) error {
		ch <- delivery{body: string(m.Body), redelivered: m.Redelivered, at: time.Now()}
		return nil
	}
}

// receive returns the next n deliveries on ch, failing the test if they do
// not come in time.
func receive(t *testing.T, ch <-chan delivery, n int) []delivery {
	t.Helper()
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	got := make([]delivery, 0, n)
	for len(got) < n {
		select {
		case d := <-ch:
			got = append(got, d)
		case <-timeout.C:
			t.Fatalf("received %d of %d messages within %v", len(got), n, wait)
		}
	}
	return got
}

// expectNone fails the test if anything arrives on ch for a while.
func expectNone(t *testing.T, ch <-chan delivery) {
	t.Helper()
	select {
	case d := <-ch:
		t.Fatalf("unexpected delivery %q (redelivered %v)", d.body, d.redelivered)
	case <-time.After(quiet):
	}
}

func declare(t *testing.T, b broker.Broker, name string, retryDelay time.Duration) {
	t.Helper()
	if err := b.Declare(context.Background(), name, retryDelay); err != nil {
		t.Fatalf("Declare(%q): %v", name, err)
	}
}

func publish(t *testing.T, b broker.Broker, name string, bodies ...string) {
	t.Helper()
	bs := make([][]byte, len(bodies))
	for i, s := range bodies {
		bs[i] = []byte(s)
	}
	if err := b.Publish(context.Background(), name, bs...); err != nil {
		t.Fatalf("Publish(%q): %v", name, err)
	}
}

func bodies(prefix string, n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return s
}

// exactlyOnce fails the test unless got holds every one of want once.
func exactlyOnce(t *testing.T, got []delivery, want []string) {
	t.Helper()
	seen := make(map[string]int, len(got))
	for _, d := range got {
		seen[d.body]++
	}
	for _, w := range want {
		if seen[w] != 1 {
			t.Errorf("%q delivered %d times, want once", w, seen[w])
		}
		delete(seen, w)
	}
	for body, n := range seen {
		t.Errorf("unexpected %q delivered %d times", body, n)
	}
}

func testRoundTrip(t *testing.T, b broker.Broker) {
	declare(t, b, "work", time.Second)
	if err := b.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	ch := make(chan delivery, 10)
	consume(t, b, "work", broker.ConsumeOptions{Prefetch: 1, Workers: 1}, collect(ch))
	publish(t, b, "work", `{"hello":"world"}`)
	d := receive(t, ch, 1)[0]
	if d.body != `{"hello":"world"}` || d.redelivered {
		t.Errorf("got %q redelivered=%v, want the published body, not redelivered", d.body, d.redelivered)
	}
}

func testBatch(t *testing.T, b broker.Broker) {
	const n, publishers = 500, 4
	declare(t, b, "work", time.Second)
	ch := make(chan delivery, publishers*n)
	consume(t, b, "work", broker.ConsumeOptions{Prefetch: 50, Workers: 4}, collect(ch))

	var want []string
	errs := make(chan error, publishers)
	for p := range publishers {
		batch := bodies(fmt.Sprintf("p%d", p), n)
		want = append(want, batch...)
		go func() {
			bs := make([][]byte, len(batch))
			for i, s := range batch {
				bs[i] = []byte(s)
			}
			errs <- b.Publish(context.Background(), "work", bs...)
		}()
	}
	for range publishers {
		if err := <-errs; err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	exactlyOnce(t, receive(t, ch, len(want)), want)
	expectNone(t, ch)
}

func testDelayed(t *testing.T, b broker.Broker) {
	const delay = 400 * time.Millisecond
	declare(t, b, "work", delay)
	ch := make(chan delivery, 10)
	consume(t, b, "work", broker.ConsumeOptions{Prefetch: 4, Workers: 2}, collect(ch))

	start := time.Now()
	if err := b.PublishDelayed(context.Background(), "work", []byte("later"), []byte("later-too")); err != nil {
		t.Fatalf("PublishDelayed: %v", err)
	}
	publish(t, b, "work", "now")
	got := receive(t, ch, 3)
	if got[0].body != "now" {
		t.Errorf("first delivery is %q, want the undelayed message", got[0].body)
	}
	exactlyOnce(t, got, []string{"now", "later", "later-too"})
	for _, d := range got {
		if d.body == "now" {
			continue
		}
		if early := d.at.Sub(start); early < delay-50*time.Millisecond {
			t.Errorf("%q arrived after %v, before the retry delay %v", d.body, early, delay)
		}
		if d.redelivered {
			t.Errorf("%q arrived marked redelivered; it was never delivered before", d.body)
		}
	}
}

func testAckedNotRedelivered(t *testing.T, b broker.Broker) {
	declare(t, b, "work", time.Second)
	ch := make(chan delivery, 10)
	first := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 10, Workers: 2}, collect(ch))
	want := bodies("m", 5)
	publish(t, b, "work", want...)
	exactlyOnce(t, receive(t, ch, len(want)), want)
	if err := first.stop(t); err != nil {
		t.Fatalf("Consume: %v", err)
	}

	consume(t, b, "work", broker.ConsumeOptions{Prefetch: 10, Workers: 2}, collect(ch))
	publish(t, b, "work", "marker")
	if d := receive(t, ch, 1)[0]; d.body != "marker" {
		t.Fatalf("a new consumer got %q (redelivered %v) before the new message: an acknowledged message came back", d.body, d.redelivered)
	}
	expectNone(t, ch)
}

var errTransient = errors.New("store unavailable")

func testTransientRedelivered(t *testing.T, b broker.Broker) {
	declare(t, b, "work", time.Second)
	ch := make(chan delivery, 10)
	var calls atomic.Int32
	consume(t, b, "work", broker.ConsumeOptions{Prefetch: 1, Workers: 1}, func(ctx context.Context, m broker.Message) error {
		ch <- delivery{body: string(m.Body), redelivered: m.Redelivered, at: time.Now()}
		if calls.Add(1) == 1 {
			return fmt.Errorf("saving: %w", errTransient)
		}
		return nil
	})
	publish(t, b, "work", "flaky")
	got := receive(t, ch, 2)
	if got[0].redelivered {
		t.Errorf("first delivery is marked redelivered")
	}
	if got[1].body != "flaky" || !got[1].redelivered {
		t.Errorf("second delivery is %q redelivered=%v, want \"flaky\" redelivered", got[1].body, got[1].redelivered)
	}
	expectNone(t, ch)
}

func testTransientNoHotLoop(t *testing.T, b broker.Broker) {
	// A handler that always fails gets a few tries a second, not
	// thousands: the backoff starts near 100ms and grows.
	const window, most = 1500 * time.Millisecond, 20
	declare(t, b, "work", time.Second)
	var calls atomic.Int32
	c := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 1, Workers: 1}, func(ctx context.Context, m broker.Message) error {
		calls.Add(1)
		return errTransient
	})
	publish(t, b, "work", "poison")
	deadline := time.Now().Add(wait)
	for calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if calls.Load() == 0 {
		t.Fatalf("no delivery within %v", wait)
	}
	time.Sleep(window)
	n := calls.Load()
	if err := c.stop(t); err != nil {
		t.Fatalf("Consume: %v", err)
	}
	if n < 2 {
		t.Errorf("%d deliveries in %v: a failed message must come back", n, window)
	}
	if n > most {
		t.Errorf("%d deliveries in %v: a failing handler is retried in a hot loop", n, window)
	}
}

func testDeadLetter(t *testing.T, b broker.Broker) {
	declare(t, b, "work", time.Second)
	ch := make(chan delivery, 10)
	consume(t, b, "work", broker.ConsumeOptions{Prefetch: 4, Workers: 1}, func(ctx context.Context, m broker.Message) error {
		if string(m.Body) == "garbage" {
			return fmt.Errorf("decoding: %w", broker.ErrDeadLetter)
		}
		ch <- delivery{body: string(m.Body), redelivered: m.Redelivered, at: time.Now()}
		return nil
	})
	publish(t, b, "work", "garbage", "good-1")
	got := receive(t, ch, 1)
	// The consumer goes on after a dead letter.
	publish(t, b, "work", "good-2")
	got = append(got, receive(t, ch, 1)...)
	exactlyOnce(t, got, []string{"good-1", "good-2"})

	dead := make(chan delivery, 10)
	consume(t, b, contracts.DeadLetterQueue, broker.ConsumeOptions{Prefetch: 1, Workers: 1}, collect(dead))
	if d := receive(t, dead, 1)[0]; d.body != "garbage" {
		t.Errorf("dead-letter queue holds %q, want \"garbage\"", d.body)
	}
	expectNone(t, dead)
	expectNone(t, ch)
}

func testCompetingConsumers(t *testing.T, b broker.Broker) {
	const n = 200
	declare(t, b, "work", time.Second)
	chs := [2]chan delivery{make(chan delivery, n), make(chan delivery, n)}
	for _, ch := range chs {
		consume(t, b, "work", broker.ConsumeOptions{Prefetch: 2, Workers: 1}, func(ctx context.Context, m broker.Message) error {
			time.Sleep(time.Millisecond) // long enough for the other consumer to get its turn
			return collect(ch)(ctx, m)
		})
	}
	want := bodies("m", n)
	publish(t, b, "work", want...)

	var all []delivery
	var counts [2]int
	timeout := time.After(wait)
	for len(all) < n {
		select {
		case d := <-chs[0]:
			all = append(all, d)
			counts[0]++
		case d := <-chs[1]:
			all = append(all, d)
			counts[1]++
		case <-timeout:
			t.Fatalf("received %d of %d messages within %v", len(all), n, wait)
		}
	}
	exactlyOnce(t, all, want)
	if counts[0] == 0 || counts[1] == 0 {
		t.Errorf("consumers got %d and %d messages; both should get a share", counts[0], counts[1])
	}
	expectNone(t, chs[0])
	expectNone(t, chs[1])
}

func testCancelReturnsUnacked(t *testing.T, b broker.Broker) {
	declare(t, b, "work", time.Second)
	want := bodies("m", 4)
	publish(t, b, "work", want...)

	started, release := make(chan string, 1), make(chan struct{})
	var handled []string
	var mu sync.Mutex
	var handlerCtxErr error
	first := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 4, Workers: 1}, func(ctx context.Context, m broker.Message) error {
		mu.Lock()
		handled = append(handled, string(m.Body))
		mu.Unlock()
		started <- string(m.Body)
		<-release
		handlerCtxErr = ctx.Err()
		return nil
	})
	var inHandler string
	select {
	case inHandler = <-started:
	case <-time.After(wait):
		t.Fatalf("no delivery within %v", wait)
	}
	// Give the consumer time to take the rest of its prefetch.
	time.Sleep(300 * time.Millisecond)
	first.cancel()
	select {
	case <-first.finished:
		t.Fatalf("Consume returned (%v) while its handler was still running", first.err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := first.stop(t); err != nil {
		t.Fatalf("Consume after cancel: %v", err)
	}
	if handlerCtxErr != nil {
		t.Errorf("the handler's context ended with Consume's: %v", handlerCtxErr)
	}
	mu.Lock()
	if len(handled) != 1 {
		t.Errorf("handlers started on %q after the context ended; want only %q", handled, inHandler)
	}
	mu.Unlock()

	ch := make(chan delivery, 10)
	consume(t, b, "work", broker.ConsumeOptions{Prefetch: 4, Workers: 1}, collect(ch))
	rest := slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == inHandler })
	got := receive(t, ch, len(rest))
	exactlyOnce(t, got, rest)
	for _, d := range got {
		if !d.redelivered {
			t.Errorf("%q, taken by the cancelled consumer, is not marked redelivered", d.body)
		}
	}
	expectNone(t, ch)
}

func testWorkers(t *testing.T, b broker.Broker) {
	const n, workers = 30, 3
	declare(t, b, "work", time.Second)
	want := bodies("m", n)
	publish(t, b, "work", want...)
	var running, most atomic.Int32
	ch := make(chan delivery, n)
	consume(t, b, "work", broker.ConsumeOptions{Prefetch: 10, Workers: workers}, func(ctx context.Context, m broker.Message) error {
		now := running.Add(1)
		defer running.Add(-1)
		for {
			prev := most.Load()
			if now <= prev || most.CompareAndSwap(prev, now) {
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
		return collect(ch)(ctx, m)
	})
	exactlyOnce(t, receive(t, ch, n), want)
	if m := most.Load(); m > workers {
		t.Errorf("%d handlers ran at once, want at most %d", m, workers)
	} else if m < 2 {
		t.Errorf("handlers never ran concurrently with %d workers", workers)
	}
}

func testUndeclared(t *testing.T, b broker.Broker) {
	ctx := context.Background()
	if err := b.Publish(ctx, "nowhere", []byte("x")); err == nil {
		t.Error("Publish to an undeclared queue succeeded")
	}
	if err := b.PublishDelayed(ctx, "nowhere", []byte("x")); err == nil {
		t.Error("PublishDelayed to an undeclared queue succeeded")
	}
	if err := b.PublishDelayed(ctx, contracts.DeadLetterQueue, []byte("x")); err == nil {
		t.Error("PublishDelayed to the dead-letter queue, which has no retry queue, succeeded")
	}
	done := make(chan error, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		done <- b.Consume(cctx, "nowhere", broker.ConsumeOptions{Prefetch: 1, Workers: 1}, func(context.Context, broker.Message) error { return nil })
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Consume of an undeclared queue returned nil")
		}
	case <-time.After(wait):
		cancel()
		<-done
		t.Error("Consume of an undeclared queue did not fail")
	}
}

func testDeclareTwice(t *testing.T, b broker.Broker) {
	declare(t, b, "work", time.Second)
	publish(t, b, "work", "before")
	declare(t, b, "work", time.Second)
	publish(t, b, "work", "after")
	ch := make(chan delivery, 10)
	consume(t, b, "work", broker.ConsumeOptions{Prefetch: 2, Workers: 1}, collect(ch))
	got := receive(t, ch, 2)
	if got[0].body != "before" || got[1].body != "after" {
		t.Errorf("got %q then %q, want \"before\" then \"after\"", got[0].body, got[1].body)
	}
	expectNone(t, ch)
}

func testDeclareOtherDelay(t *testing.T, b broker.Broker) {
	declare(t, b, "work", time.Second)
	if err := b.Declare(context.Background(), "work", 2*time.Second); err == nil {
		t.Error("declaring a queue again with another retry delay succeeded")
	}
	// The first declaration stands.
	declare(t, b, "work", time.Second)
	ch := make(chan delivery, 1)
	consume(t, b, "work", broker.ConsumeOptions{Prefetch: 1, Workers: 1}, collect(ch))
	publish(t, b, "work", "still-works")
	receive(t, ch, 1)
}

func testConsumeIdleCancel(t *testing.T, b broker.Broker) {
	declare(t, b, "work", time.Second)
	c := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 8, Workers: 4}, func(context.Context, broker.Message) error { return nil })
	time.Sleep(100 * time.Millisecond)
	if err := c.stop(t); err != nil {
		t.Errorf("Consume returned %v after its context ended, want nil", err)
	}
}

func testClose(t *testing.T, b broker.Broker) {
	declare(t, b, "work", time.Second)
	ch := make(chan delivery, 1)
	c := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 1, Workers: 1}, collect(ch))
	publish(t, b, "work", "one")
	receive(t, ch, 1)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-c.finished:
	case <-time.After(wait):
		t.Fatalf("Consume did not return within %v of Close", wait)
	}
	if err := b.Ping(context.Background()); err == nil {
		t.Error("Ping after Close succeeded")
	}
	if err := b.Publish(context.Background(), "work", []byte("x")); err == nil {
		t.Error("Publish after Close succeeded")
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Bench publishes b.N messages in batches from a few goroutines to a
// queue of br while one consumer takes them, and returns when the
// consumer has acknowledged them all.
func Bench(b *testing.B, br broker.Broker) {
	const batch, publishers = 100, 4
	ctx := context.Background()
	if err := br.Declare(ctx, "bench", time.Second); err != nil {
		b.Fatalf("Declare: %v", err)
	}
	body := make([]byte, 512) // about a ticket message
	total := int64(b.N)
	var got atomic.Int64
	all := make(chan struct{})
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- br.Consume(cctx, "bench", broker.ConsumeOptions{Prefetch: 256, Workers: 8}, func(context.Context, broker.Message) error {
			if got.Add(1) == total {
				close(all)
			}
			return nil
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("Consume: %v", err)
		}
	}()

	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	var next atomic.Int64 // messages handed to publishers so far
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bodies := make([][]byte, 0, batch)
			for {
				end := next.Add(batch)
				n := min(batch, total-(end-batch))
				if n <= 0 {
					return
				}
				bodies = bodies[:0]
				for range n {
					bodies = append(bodies, body)
				}
				if err := br.Publish(ctx, "bench", bodies...); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("Publish: %v", err)
	}
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		b.Fatalf("consumed %d of %d messages within 2 minutes", got.Load(), total)
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "msgs/s")
}

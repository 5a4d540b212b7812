// Package brokertest is the conformance suite of broker.Broker: every
// implementation runs Run against a fresh broker per subtest, so that the
// embedded and the distributed mode keep the same contract. Bench measures
// one publish-and-consume run for the benchmarks of each implementation.
//
// The suite waits for what it can see happen, bounded by wait as a
// liveness bound, rather than for a fixed time: a check that nothing more is
// delivered ends with a sentinel message (see settle), not a quiet period.
// The one fixed wait is testCancelReturnsUnacked's check that Consume does
// not return early, which nothing positive can show.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
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

// Broker is a broker under test: a broker.Broker that also tells how many
// messages of a queue wait to be taken, so that the suite can see when a
// consumer has taken its prefetch. It is for tests only.
type Broker interface {
	broker.Broker
	// Ready returns how many messages of queue name are ready: neither
	// taken by a consumer nor held in the retry queue.
	Ready(ctx context.Context, name string) (int, error)
}

// Run runs the conformance suite. newBroker returns a broker of its own for
// one subtest (for a shared server: under a fresh queue-name prefix) and
// registers its cleanup with t; the suite may Close it first.
func Run(t *testing.T, newBroker func(t *testing.T) Broker) {
	tests := []struct {
		name string
		run  func(t *testing.T, b Broker)
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

// settle checks that queue name delivers nothing more than what the test
// has received, without watching for a quiet period. Consumer cs[i] reports
// its deliveries on chs[i]. settle publishes a sentinel behind everything
// published so far, and more until every consumer has reported one: a
// duplicate, or a message come back, is ahead of them in the queue, so it
// reaches a consumer before that consumer's sentinel. Then it stops the
// consumers, whose handlers have all returned once Consume has, and checks
// everything they reported. Anything but a sentinel fails the test.
//
// With one worker a consumer handles its messages in order, so this is
// exact. With several, a message taken just before the sentinel could in
// principle still wait for its worker when the consumer stops and go back
// to the queue unseen (membroker hands back what a worker has not started);
// that can only hide a duplicate, never fail a correct broker.
//
// It does not look at the queue after the consumers stop: a quorum queue
// may deliver again a message acknowledged just before its consumer's
// channel closed, as RabbitMQ can drop acknowledgements still in flight
// then, and that is not what the tests that settle check.
func settle(t *testing.T, b broker.Broker, name string, cs []*consumer, chs []chan delivery) {
	t.Helper()
	if len(cs) != len(chs) {
		t.Fatalf("settle: %d consumers and %d channels", len(cs), len(chs))
	}
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	cases := make([]reflect.SelectCase, 0, len(chs)+1)
	for _, ch := range chs {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
	}
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timeout.C)})
	sentinels := make(map[string]bool)
	check := func(d delivery) bool {
		if !sentinels[d.body] {
			t.Errorf("unexpected delivery %q (redelivered %v) from %s", d.body, d.redelivered, name)
			return false
		}
		if d.redelivered {
			t.Errorf("sentinel %q, delivered once, is marked redelivered", d.body)
		}
		return true
	}
	seen := make([]bool, len(chs))
	for next := 0; slices.Contains(seen, false); next++ {
		sentinel := fmt.Sprintf("sentinel-%d", next)
		sentinels[sentinel] = true
		publish(t, b, name, sentinel)
		for got := false; !got; {
			i, v, _ := reflect.Select(cases)
			if i == len(chs) {
				t.Fatalf("%s: sentinel %q not delivered within %v", name, sentinel, wait)
			}
			d := v.Interface().(delivery)
			if check(d) {
				seen[i] = true
				got = d.body == sentinel
			}
		}
	}
	for _, c := range cs {
		if err := c.stop(t); err != nil {
			t.Fatalf("Consume of %s: %v", name, err)
		}
	}
	for _, ch := range chs {
		for len(ch) > 0 {
			check(<-ch)
		}
	}
}

// awaitReady waits until queue name has n messages ready.
func awaitReady(t *testing.T, b Broker, name string, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got, err := b.Ready(context.Background(), name)
		if err != nil {
			t.Fatalf("Ready(%q): %v", name, err)
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d messages ready after %v, want %d", name, got, wait, n)
		}
		time.Sleep(5 * time.Millisecond)
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

func testRoundTrip(t *testing.T, b Broker) {
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

func testBatch(t *testing.T, b Broker) {
	const n, publishers = 500, 4
	declare(t, b, "work", time.Second)
	ch := make(chan delivery, publishers*n)
	c := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 50, Workers: 4}, collect(ch))

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
	settle(t, b, "work", []*consumer{c}, []chan delivery{ch})
}

func testDelayed(t *testing.T, b Broker) {
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

func testAckedNotRedelivered(t *testing.T, b Broker) {
	declare(t, b, "work", time.Second)
	ch := make(chan delivery, 10)
	first := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 10, Workers: 2}, collect(ch))
	want := bodies("m", 5)
	publish(t, b, "work", want...)
	exactlyOnce(t, receive(t, ch, len(want)), want)
	if err := first.stop(t); err != nil {
		t.Fatalf("Consume: %v", err)
	}

	second := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 10, Workers: 2}, collect(ch))
	publish(t, b, "work", "marker")
	if d := receive(t, ch, 1)[0]; d.body != "marker" {
		t.Fatalf("a new consumer got %q (redelivered %v) before the new message: an acknowledged message came back", d.body, d.redelivered)
	}
	settle(t, b, "work", []*consumer{second}, []chan delivery{ch})
}

var errTransient = errors.New("store unavailable")

func testTransientRedelivered(t *testing.T, b Broker) {
	declare(t, b, "work", time.Second)
	ch := make(chan delivery, 10)
	var calls atomic.Int32
	c := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 1, Workers: 1}, func(ctx context.Context, m broker.Message) error {
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
	settle(t, b, "work", []*consumer{c}, []chan delivery{ch})
}

func testTransientNoHotLoop(t *testing.T, b Broker) {
	// A handler that always fails gets a few tries a second, not
	// thousands: the backoff starts near 100ms and grows. The test times
	// the first few deliveries instead of counting deliveries over a fixed
	// window: a redelivery comes no sooner than its backoff however slow
	// the machine, so the bound holds, and the test ends as soon as the
	// tries are in.
	const (
		tries = 4
		// minGap is the least mean time between tries: a backoff "near
		// 100ms" with some slack, far above a hot loop's microseconds.
		minGap = 75 * time.Millisecond
	)
	declare(t, b, "work", time.Second)
	at := make(chan time.Time, tries)
	c := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 1, Workers: 1}, func(ctx context.Context, m broker.Message) error {
		select {
		case at <- time.Now():
		default: // the test has its tries; a hot loop must not block here
		}
		return errTransient
	})
	publish(t, b, "work", "poison")
	times := make([]time.Time, 0, tries)
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for len(times) < tries {
		select {
		case when := <-at:
			times = append(times, when)
		case <-timeout.C:
			t.Fatalf("%d deliveries of a failing message within %v, want %d: a failed message must come back", len(times), wait, tries)
		}
	}
	if err := c.stop(t); err != nil {
		t.Fatalf("Consume: %v", err)
	}
	if spent := times[tries-1].Sub(times[0]); spent < (tries-1)*minGap {
		t.Errorf("%d deliveries in %v: a failing handler is retried in a hot loop", tries, spent)
	}
}

func testDeadLetter(t *testing.T, b Broker) {
	declare(t, b, "work", time.Second)
	ch := make(chan delivery, 10)
	work := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 4, Workers: 1}, func(ctx context.Context, m broker.Message) error {
		if strings.HasPrefix(string(m.Body), "garbage") {
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
	deadConsumer := consume(t, b, contracts.DeadLetterQueue, broker.ConsumeOptions{Prefetch: 1, Workers: 1}, collect(dead))
	if d := receive(t, dead, 1)[0]; d.body != "garbage" {
		t.Errorf("dead-letter queue holds %q, want \"garbage\"", d.body)
	}
	// Nothing more comes from either queue. The dead-letter queue's
	// sentinel is an undecodable message of the work queue, dead-lettered
	// after every message ahead of it was settled: it takes the path a
	// message dead-lettered by mistake would, behind it.
	publish(t, b, "work", "garbage-last")
	settle(t, b, "work", []*consumer{work}, []chan delivery{ch})
	for {
		d := receive(t, dead, 1)[0]
		if d.body == "garbage-last" {
			break
		}
		t.Errorf("unexpected delivery %q (redelivered %v) from the dead-letter queue", d.body, d.redelivered)
	}
	if err := deadConsumer.stop(t); err != nil {
		t.Fatalf("Consume of the dead letters: %v", err)
	}
	for len(dead) > 0 {
		d := <-dead
		t.Errorf("unexpected delivery %q (redelivered %v) from the dead-letter queue", d.body, d.redelivered)
	}
}

func testCompetingConsumers(t *testing.T, b Broker) {
	const n = 200
	declare(t, b, "work", time.Second)
	chs := [2]chan delivery{make(chan delivery, n), make(chan delivery, n)}
	// Each consumer holds its first message until the other has one too.
	// A consumer holds at most its prefetch, so the other must get a share
	// while the first waits; a broker that gave one consumer everything
	// would leave both waiting out the barrier and fail the count below
	// (the barrier gives up well before the receive loop does, so that the
	// count is what reports it).
	var firsts [2]sync.Once
	has := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	barrier, cancel := context.WithTimeout(context.Background(), wait/3)
	defer cancel()
	var cs []*consumer
	for i, ch := range chs {
		cs = append(cs, consume(t, b, "work", broker.ConsumeOptions{Prefetch: 2, Workers: 1}, func(ctx context.Context, m broker.Message) error {
			firsts[i].Do(func() { close(has[i]) })
			select {
			case <-has[1-i]:
			case <-barrier.Done():
			}
			return collect(ch)(ctx, m)
		}))
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
	settle(t, b, "work", cs, chs[:])
}

func testCancelReturnsUnacked(t *testing.T, b Broker) {
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
	// The consumer has taken the rest of its prefetch once none is ready.
	awaitReady(t, b, "work", 0)
	first.cancel()
	// Consume must not return while its handler runs. A correct Consume
	// gives no sign that it is waiting, so only a negative wait can catch
	// one that returns early; one that does returns within milliseconds of
	// the cancel (no network wait but a channel close), and a correct one
	// passes whatever the wait, so it is short.
	select {
	case <-first.finished:
		t.Fatalf("Consume returned (%v) while its handler was still running", first.err)
	case <-time.After(100 * time.Millisecond):
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
	second := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 4, Workers: 1}, collect(ch))
	rest := slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == inHandler })
	got := receive(t, ch, len(rest))
	exactlyOnce(t, got, rest)
	for _, d := range got {
		if !d.redelivered {
			t.Errorf("%q, taken by the cancelled consumer, is not marked redelivered", d.body)
		}
	}
	settle(t, b, "work", []*consumer{second}, []chan delivery{ch})
}

func testWorkers(t *testing.T, b Broker) {
	const n, workers = 30, 3
	declare(t, b, "work", time.Second)
	want := bodies("m", n)
	publish(t, b, "work", want...)
	var running, most atomic.Int32
	// The first handlers wait until workers of them run at once, so that
	// reaching the limit does not depend on scheduling; the barrier gives
	// up after wait, and the check below then fails.
	full := make(chan struct{})
	var fill sync.Once
	barrier, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
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
		if now >= workers {
			fill.Do(func() { close(full) })
		}
		select {
		case <-full:
		case <-barrier.Done():
		}
		// The handler's work: it keeps handlers overlapping for the whole
		// run, so that a consumer running more than workers of them at
		// once shows it. Part of the scenario, not a wait for an event.
		time.Sleep(10 * time.Millisecond)
		return collect(ch)(ctx, m)
	})
	exactlyOnce(t, receive(t, ch, n), want)
	if m := most.Load(); m > workers {
		t.Errorf("%d handlers ran at once, want at most %d", m, workers)
	} else if m < workers {
		t.Errorf("at most %d handlers ran at once, want %d", m, workers)
	}
}

func testUndeclared(t *testing.T, b Broker) {
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

func testDeclareTwice(t *testing.T, b Broker) {
	declare(t, b, "work", time.Second)
	publish(t, b, "work", "before")
	declare(t, b, "work", time.Second)
	publish(t, b, "work", "after")
	ch := make(chan delivery, 10)
	c := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 2, Workers: 1}, collect(ch))
	got := receive(t, ch, 2)
	if got[0].body != "before" || got[1].body != "after" {
		t.Errorf("got %q then %q, want \"before\" then \"after\"", got[0].body, got[1].body)
	}
	settle(t, b, "work", []*consumer{c}, []chan delivery{ch})
}

func testDeclareOtherDelay(t *testing.T, b Broker) {
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

func testConsumeIdleCancel(t *testing.T, b Broker) {
	declare(t, b, "work", time.Second)
	ch := make(chan delivery, 1)
	c := consume(t, b, "work", broker.ConsumeOptions{Prefetch: 8, Workers: 4}, collect(ch))
	// A message handled shows that Consume is subscribed and running; with
	// it acknowledged, the consumer is idle.
	publish(t, b, "work", "wake")
	receive(t, ch, 1)
	if err := c.stop(t); err != nil {
		t.Errorf("Consume returned %v after its context ended, want nil", err)
	}
}

func testClose(t *testing.T, b Broker) {
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

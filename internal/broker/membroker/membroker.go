// Package membroker is the in-memory broker.Broker of the embedded mode: one
// process, no external service. It keeps the broker contract (acknowledged
// delivery, redelivery of what a consumer took but did not acknowledge,
// delayed retries, a dead-letter queue) with the same retry backoff as the
// RabbitMQ implementation, but nothing survives the process: "durably
// stored" means stored in this process's memory.
package membroker

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/telemetry"
)

// ErrClosed is returned by every method once Close has been called, and by
// Consume when Close stops it.
var ErrClosed = errors.New("membroker: closed")

var errNotDeclared = errors.New("queue is not declared")

// Handler backoff after a transient error: it doubles with every
// consecutive failure in one Consume call, from minBackoff up to maxBackoff,
// and resets on a success. The rabbit package uses the same policy.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

func backoff(failures int64) time.Duration {
	return min(minBackoff<<min(failures-1, 5), maxBackoff)
}

// Broker is an in-memory broker. Its zero value is not usable; call New.
type Broker struct {
	log *slog.Logger

	mu     sync.Mutex
	queues map[string]*queue
	order  []*queue // the queues in declaration order, for the delay loop
	closed bool

	dead *queue
	done chan struct{} // closed by Close
	// wake tells the delay loop that a queue's delayed list went from empty
	// to non-empty, so its timer may be too late.
	wake chan struct{}
	wg   sync.WaitGroup // the delay loop
}

type message struct {
	body        []byte
	headers     map[string]string // the trace context, as a broker's headers carry it
	redelivered bool
	seq         uint64 // order of taking, within one consumer
}

type delayed struct {
	body    []byte
	headers map[string]string
	due     time.Time
}

// queue is a work queue with its retry queue. Every message of the retry
// queue waits the same delay, so the delayed list is ordered by due time.
type queue struct {
	name       string
	retryDelay time.Duration // 0 for the dead-letter queue, which has no retry queue

	mu      sync.Mutex
	ready   fifo[message]
	delayed fifo[delayed]
	closed  bool
	// nonEmpty is signalled when ready gains messages or when a waiting
	// consumer must look at its context or at closed again.
	nonEmpty sync.Cond
}

func newQueue(name string, retryDelay time.Duration) *queue {
	q := &queue{name: name, retryDelay: retryDelay}
	q.nonEmpty.L = &q.mu
	return q
}

// New returns an empty broker holding only the dead-letter queue. Close
// stops its delay loop.
func New(log *slog.Logger) *Broker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dead := newQueue(contracts.DeadLetterQueue, 0)
	b := &Broker{
		log:    log,
		queues: map[string]*queue{dead.name: dead},
		order:  []*queue{dead},
		dead:   dead,
		done:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
	}
	b.wg.Add(1)
	go b.delayLoop()
	return b
}

// Declare creates queue name with its retry queue. Declaring it again with
// the same delay is harmless; with another delay it fails, as it does on
// RabbitMQ.
func (b *Broker) Declare(ctx context.Context, name string, retryDelay time.Duration) error {
	if err := broker.CheckDeclare(name, retryDelay); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("declaring %s: %w", name, ErrClosed)
	}
	if q, ok := b.queues[name]; ok {
		if q.retryDelay != retryDelay {
			return fmt.Errorf("declaring %s: already declared with retry delay %v, not %v", name, q.retryDelay, retryDelay)
		}
		return nil
	}
	q := newQueue(name, retryDelay)
	b.queues[name] = q
	b.order = append(b.order, q)
	return nil
}

func (b *Broker) queue(name string) (*queue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	q, ok := b.queues[name]
	if !ok {
		return nil, errNotDeclared
	}
	return q, nil
}

// Publish appends copies of bodies to queue name, so that callers may reuse
// their buffers, as they may with the RabbitMQ broker.
func (b *Broker) Publish(ctx context.Context, name string, bodies ...[]byte) error {
	q, err := b.queue(name)
	if err != nil {
		return fmt.Errorf("publishing to %s: %w", name, err)
	}
	if len(bodies) == 0 {
		return nil
	}
	headers := telemetry.Inject(ctx)
	q.mu.Lock()
	for _, body := range bodies {
		q.ready.push(message{body: bytes.Clone(body), headers: headers})
	}
	q.signal(len(bodies))
	q.mu.Unlock()
	return nil
}

// PublishDelayed holds copies of bodies for queue name's retry delay, then
// appends them to it.
func (b *Broker) PublishDelayed(ctx context.Context, name string, bodies ...[]byte) error {
	q, err := b.queue(name)
	if err == nil && q.retryDelay == 0 {
		err = errors.New("the dead-letter queue has no retry queue")
	}
	if err != nil {
		return fmt.Errorf("publishing to %s%s: %w", name, contracts.RetrySuffix, err)
	}
	if len(bodies) == 0 {
		return nil
	}
	due := time.Now().Add(q.retryDelay)
	headers := telemetry.Inject(ctx)
	q.mu.Lock()
	wasEmpty := q.delayed.len() == 0
	for _, body := range bodies {
		q.delayed.push(delayed{body: bytes.Clone(body), headers: headers, due: due})
	}
	q.mu.Unlock()
	if wasEmpty {
		select {
		case b.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	return nil
}

// signal wakes consumers for n new ready messages; q.mu is held.
func (q *queue) signal(n int) {
	if n == 1 {
		q.nonEmpty.Signal()
	} else {
		q.nonEmpty.Broadcast()
	}
}

// requeue puts messages a consumer gave back at the head of the queue, in
// their order, marked as redelivered.
func (q *queue) requeue(ms ...message) {
	if len(ms) == 0 {
		return
	}
	q.mu.Lock()
	for _, m := range slices.Backward(ms) {
		q.ready.pushFront(message{body: m.body, headers: m.headers, redelivered: true})
	}
	q.signal(len(ms))
	q.mu.Unlock()
}

// delayLoop moves delayed messages whose time has come to their work queue.
// One goroutine with one timer serves every queue.
func (b *Broker) delayLoop() {
	defer b.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		if next := b.moveDue(time.Now()); !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-b.done:
			return
		case <-b.wake:
		case <-timer.C:
		}
	}
}

// moveDue moves every delayed message due by now and returns when the
// next one falls due, or the zero time if none waits.
func (b *Broker) moveDue(now time.Time) time.Time {
	b.mu.Lock()
	queues := b.order
	b.mu.Unlock()
	var next time.Time
	for _, q := range queues {
		q.mu.Lock()
		n := 0
		for q.delayed.len() > 0 && !q.delayed.peek().due.After(now) {
			d := q.delayed.pop()
			q.ready.push(message{body: d.body, headers: d.headers})
			n++
		}
		if n > 0 {
			q.signal(n)
		}
		if q.delayed.len() > 0 {
			if due := q.delayed.peek().due; next.IsZero() || due.Before(next) {
				next = due
			}
		}
		q.mu.Unlock()
	}
	return next
}

// Consume delivers the messages of queue name to h until ctx ends or the
// broker is closed. It takes up to opts.Prefetch messages ahead of the
// handlers; those it has not started when it stops go back to the head of
// the queue marked as redelivered, as RabbitMQ does with a closed channel's
// unacknowledged deliveries.
func (b *Broker) Consume(ctx context.Context, name string, opts broker.ConsumeOptions, h broker.Handler) error {
	q, err := b.queue(name)
	if err != nil {
		return fmt.Errorf("consuming %s: %w", name, err)
	}
	prefetch := max(opts.Prefetch, 1)
	c := &consumer{
		b:     b,
		q:     q,
		h:     h,
		hctx:  context.WithoutCancel(ctx),
		slots: make(chan struct{}, prefetch),
		jobs:  make(chan message, prefetch),
		stop:  make(chan struct{}),
	}
	for range min(max(opts.Workers, 1), prefetch) {
		c.wg.Add(1)
		go c.work()
	}
	// A dispatcher waiting for messages sleeps on the queue's condition;
	// wake it when ctx ends so that it sees that.
	unwatch := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.nonEmpty.Broadcast()
		q.mu.Unlock()
	})
	err = c.dispatch(ctx)
	unwatch()
	close(c.stop)
	c.wg.Wait()
	for len(c.jobs) > 0 {
		c.left = append(c.left, <-c.jobs)
	}
	slices.SortFunc(c.left, func(a, b message) int { return cmp.Compare(a.seq, b.seq) })
	q.requeue(c.left...)
	if err != nil {
		return fmt.Errorf("consuming %s: %w", name, err)
	}
	return nil
}

// consumer is one Consume call: a dispatcher that takes messages from the
// queue into jobs while it holds fewer than prefetch, and workers that run
// the handler on them.
type consumer struct {
	b    *Broker
	q    *queue
	h    broker.Handler
	hctx context.Context

	slots    chan struct{} // one token per message taken and not yet settled
	jobs     chan message  // taken, not yet started; never fuller than slots
	stop     chan struct{} // closed when the consumer stops taking messages
	wg       sync.WaitGroup
	failures atomic.Int64 // consecutive transient errors, for the backoff
	seq      uint64       // dispatcher only

	mu   sync.Mutex
	left []message // taken but never started; returned when Consume ends
}

// dispatch moves messages from the queue to the workers until ctx ends
// (nil) or the broker is closed (ErrClosed).
func (c *consumer) dispatch(ctx context.Context) error {
	q := c.q
	var batch []message
	for {
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		case <-c.b.done:
			return ErrClosed
		}
		q.mu.Lock()
		for q.ready.len() == 0 && ctx.Err() == nil && !q.closed {
			q.nonEmpty.Wait()
		}
		if ctx.Err() != nil || q.closed {
			// This dispatcher may have used up a signal meant for a
			// message; hand it on to another consumer.
			if q.ready.len() > 0 {
				q.nonEmpty.Signal()
			}
			closed := q.closed
			q.mu.Unlock()
			<-c.slots
			if ctx.Err() == nil && closed {
				return ErrClosed
			}
			return nil
		}
		batch = append(batch[:0], q.ready.pop())
	more:
		for q.ready.len() > 0 {
			select {
			case c.slots <- struct{}{}:
				batch = append(batch, q.ready.pop())
			default:
				break more
			}
		}
		if q.ready.len() > 0 {
			q.nonEmpty.Signal() // what this consumer has no room for
		}
		q.mu.Unlock()
		for _, m := range batch {
			c.seq++
			m.seq = c.seq
			c.jobs <- m // never blocks: jobs has room for every slot
		}
	}
}

func (c *consumer) work() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case m := <-c.jobs:
			select {
			case <-c.stop:
				c.mu.Lock()
				c.left = append(c.left, m)
				c.mu.Unlock()
				continue
			default:
			}
			c.handle(m)
			<-c.slots
		}
	}
}

func (c *consumer) handle(m message) {
	ctx, span := telemetry.Consume(c.hctx, c.q.name, m.headers)
	err := c.h(ctx, broker.Message{Body: m.body, Redelivered: m.redelivered})
	span.End()
	switch {
	case err == nil:
		c.failures.Store(0)
	case errors.Is(err, broker.ErrDeadLetter):
		c.b.log.Warn("dead-lettering a message", "queue", c.q.name, "err", err)
		dead := c.b.dead
		dead.mu.Lock()
		dead.ready.push(message{body: m.body})
		dead.signal(1)
		dead.mu.Unlock()
	default:
		d := backoff(c.failures.Add(1))
		c.b.log.Debug("handler failed; redelivering after a backoff", "queue", c.q.name, "backoff", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.stop: // give it back now rather than hold up the shutdown
		case <-c.b.done:
		}
		t.Stop()
		c.q.requeue(m)
	}
}

// Ping reports whether the broker is open.
func (b *Broker) Ping(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	return nil
}

// Close stops the broker: consumers return ErrClosed once their running
// handlers finish, and every later call fails. Messages still queued are
// dropped. Closing again is harmless.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	queues := b.order
	close(b.done)
	b.mu.Unlock()
	for _, q := range queues {
		q.mu.Lock()
		q.closed = true
		q.nonEmpty.Broadcast()
		q.mu.Unlock()
	}
	b.wg.Wait()
	return nil
}

// Package rabbit is the broker.Broker of the distributed mode, on RabbitMQ.
//
// Messages go through the default exchange straight to durable queues named
// Options.Prefix + the logical name. A work queue dead-letters into the
// dead-letter queue (<prefix>dead), so a message rejected without requeue
// lands there; its retry queue (<name>.retry) holds messages for the retry
// delay (x-message-ttl) and then dead-letters them back into the work queue.
// Publishing waits for publisher confirms; deliveries are acknowledged
// manually once the handler returns, many in one frame where they can be
// (see acker).
//
// One connection serves the Broker. A supervisor goroutine watches it; when
// it drops, the supervisor redials with a capped exponential backoff,
// declares again every queue declared so far, and consumers resume on the
// new connection. Publish and Declare during an outage wait for the
// connection for at most a second (outageWait) and then fail with an error
// wrapping ErrUnavailable, so that a caller can answer 503 quickly instead of
// holding a request for the whole outage.
//
// Publish and Consume accept only queues declared through the same Broker
// (every process declares the queues it touches at start): RabbitMQ drops
// a message published to a missing queue without telling the publisher.
package rabbit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/telemetry"
)

var (
	// ErrUnavailable is wrapped by the errors of calls made while the
	// connection to RabbitMQ is down.
	ErrUnavailable = errors.New("rabbitmq unavailable")
	// ErrClosed is wrapped by the errors of calls made after Close, and
	// returned by consumers that Close stopped.
	ErrClosed = errors.New("rabbit: broker closed")

	errNotDeclared = errors.New("queue is not declared")
)

const (
	// outageWait is how long Publish and Declare wait for a lost connection
	// to come back before they fail.
	outageWait = time.Second
	// dialTimeout bounds the TCP connect and the AMQP handshake.
	dialTimeout = 10 * time.Second
	// Redial backoff after a lost connection.
	minRedial = 100 * time.Millisecond
	maxRedial = 10 * time.Second
	// Handler backoff after a transient error: it doubles with every
	// consecutive failure in one Consume call, from minBackoff up to
	// maxBackoff, and resets on a success. membroker uses the same policy.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

func backoff(failures int64) time.Duration {
	return min(minBackoff<<min(failures-1, 5), maxBackoff)
}

// Options configure a Broker.
type Options struct {
	// Prefix is prepended to every queue name; "mm." if empty.
	Prefix string
	// QueueType is "classic" (the default) or "quorum", for a replicated
	// cluster.
	QueueType string
	// PublishChannels is how many confirm-mode channels concurrent
	// publishers share; 4 if zero.
	PublishChannels int
	// ConnectionName is shown by the management tools for the connection.
	ConnectionName string
}

// Broker is a broker.Broker on one RabbitMQ connection. Make it with Dial.
type Broker struct {
	url  string
	opts Options
	log  *slog.Logger

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the supervisor

	// declareMu orders Declare against the supervisor's re-declaring and
	// installing a new session, so that no declared queue is missed.
	declareMu sync.Mutex

	mu   sync.Mutex
	sess *session // nil while the connection is down
	// up is closed when sess is set; replaced by an open one when it is lost.
	up       chan struct{}
	declared map[string]time.Duration // logical name → retry delay
}

// session is one connection and what hangs off it.
type session struct {
	conn *amqp.Connection
	// closed receives the connection's close error; the supervisor reads it.
	closed chan *amqp.Error
	// lost is closed by the supervisor once it knows the connection is gone.
	lost chan struct{}
	// pubs holds exactly Options.PublishChannels confirm-mode channels,
	// each taken by one Publish while it sends (not while it waits for the
	// confirms). A nil or closed one is reopened by the next Publish that
	// takes it.
	pubs chan *amqp.Channel
}

// Dial connects to RabbitMQ at url and declares the dead-letter queue. The
// Broker reconnects by itself after a connection loss until Close.
func Dial(ctx context.Context, url string, opts Options, log *slog.Logger) (*Broker, error) {
	if opts.Prefix == "" {
		opts.Prefix = "mm."
	}
	switch opts.QueueType {
	case "":
		opts.QueueType = "classic"
	case "classic", "quorum":
	default:
		return nil, fmt.Errorf("rabbitmq: queue type %q is neither classic nor quorum", opts.QueueType)
	}
	switch {
	case opts.PublishChannels == 0:
		opts.PublishChannels = 4
	case opts.PublishChannels < 0:
		return nil, fmt.Errorf("rabbitmq: %d publish channels", opts.PublishChannels)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Broker{
		url:      url,
		opts:     opts,
		log:      log,
		declared: make(map[string]time.Duration),
		up:       make(chan struct{}),
	}
	s, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	if err := b.prepare(s); err != nil {
		s.conn.Close()
		return nil, err
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.sess = s
	close(b.up)
	b.wg.Add(1)
	go b.supervise(s)
	return b, nil
}

func (b *Broker) queueName(name string) string { return b.opts.Prefix + name }

func (b *Broker) retryName(name string) string {
	return b.opts.Prefix + name + contracts.RetrySuffix
}

// dial opens a connection; prepare makes it a usable session.
func (b *Broker) dial(ctx context.Context) (*session, error) {
	props := amqp.NewConnectionProperties()
	if b.opts.ConnectionName != "" {
		props.SetClientConnectionName(b.opts.ConnectionName)
	}
	conn, err := amqp.DialConfig(b.url, amqp.Config{
		Properties: props,
		Locale:     "en_US",
		Dial:       dialer(ctx),
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to rabbitmq: %w", err)
	}
	return &session{
		conn:   conn,
		closed: conn.NotifyClose(make(chan *amqp.Error, 1)),
		lost:   make(chan struct{}),
		pubs:   make(chan *amqp.Channel, b.opts.PublishChannels),
	}, nil
}

// prepare declares the dead-letter queue and every queue declared so far on
// s, and opens its publish channels in confirm mode. The caller holds
// declareMu until s is installed, so that no Declare falls between.
func (b *Broker) prepare(s *session) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(b.queueName(contracts.DeadLetterQueue), true, false, false, false,
		amqp.Table{"x-queue-type": b.opts.QueueType}); err != nil {
		return fmt.Errorf("declaring the dead-letter queue: %w", err)
	}
	b.mu.Lock()
	declared := make(map[string]time.Duration, len(b.declared))
	for name, delay := range b.declared {
		declared[name] = delay
	}
	b.mu.Unlock()
	for name, delay := range declared {
		if err := b.declare(ch, name, delay); err != nil {
			return err
		}
	}
	for range b.opts.PublishChannels {
		pub, err := openPublisher(s.conn)
		if err != nil {
			return err
		}
		s.pubs <- pub
	}
	return nil
}

func openPublisher(conn *amqp.Connection) (*amqp.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening a publish channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("putting a publish channel in confirm mode: %w", err)
	}
	return ch, nil
}

// dialer connects under ctx and bounds the handshake, which amqp091-go
// runs without a context, by a deadline that it clears once connected.
func dialer(ctx context.Context) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: dialTimeout}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		deadline := time.Now().Add(dialTimeout)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		if err := conn.SetDeadline(deadline); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
}

// declare declares work queue name and its retry queue on ch.
func (b *Broker) declare(ch *amqp.Channel, name string, retryDelay time.Duration) error {
	work, retry := b.queueName(name), b.retryName(name)
	if _, err := ch.QueueDeclare(work, true, false, false, false, amqp.Table{
		"x-queue-type":              b.opts.QueueType,
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": b.queueName(contracts.DeadLetterQueue),
	}); err != nil {
		return fmt.Errorf("declaring queue %s: %w", work, err)
	}
	if _, err := ch.QueueDeclare(retry, true, false, false, false, amqp.Table{
		"x-queue-type":              b.opts.QueueType,
		"x-message-ttl":             max(retryDelay.Milliseconds(), 1),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": work,
	}); err != nil {
		return fmt.Errorf("declaring queue %s: %w", retry, err)
	}
	return nil
}

// supervise owns the connection: it waits for its loss, then reconnects,
// until Close. On Close it closes the connection it holds.
func (b *Broker) supervise(s *session) {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			s.conn.Close()
			return
		case err := <-s.closed:
			b.log.Warn("rabbitmq connection lost; reconnecting", "err", err)
		}
		b.mu.Lock()
		b.sess = nil
		b.up = make(chan struct{})
		b.mu.Unlock()
		close(s.lost)
		if s = b.reconnect(); s == nil {
			return
		}
	}
}

// reconnect dials until it succeeds and installs the new session, or
// returns nil once the Broker is closed.
func (b *Broker) reconnect() *session {
	delay := minRedial
	for attempt := 1; ; attempt++ {
		s, err := b.connectAndInstall()
		if err == nil {
			b.log.Info("rabbitmq connection restored", "attempts", attempt)
			return s
		}
		if b.ctx.Err() != nil {
			return nil
		}
		b.log.Warn("reconnecting to rabbitmq", "attempt", attempt, "retry_in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, maxRedial)
	}
}

func (b *Broker) connectAndInstall() (*session, error) {
	s, err := b.dial(b.ctx)
	if err != nil {
		return nil, err
	}
	b.declareMu.Lock()
	defer b.declareMu.Unlock()
	if err := b.prepare(s); err != nil {
		s.conn.Close()
		return nil, err
	}
	if b.ctx.Err() != nil {
		s.conn.Close()
		return nil, ErrClosed
	}
	b.mu.Lock()
	b.sess = s
	close(b.up)
	b.mu.Unlock()
	return s, nil
}

// session returns the current session, waiting up to patience (forever if
// zero) for a lost connection to come back.
func (b *Broker) session(ctx context.Context, patience time.Duration) (*session, error) {
	var timeout <-chan time.Time
	if patience > 0 {
		t := time.NewTimer(patience)
		defer t.Stop()
		timeout = t.C
	}
	for {
		if b.ctx.Err() != nil {
			return nil, ErrClosed
		}
		b.mu.Lock()
		s, up := b.sess, b.up
		b.mu.Unlock()
		if s != nil {
			return s, nil
		}
		select {
		case <-up:
		case <-b.ctx.Done():
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		case <-timeout:
			return nil, fmt.Errorf("%w: no connection for %v", ErrUnavailable, patience)
		}
	}
}

func (b *Broker) retryDelay(name string) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.declared[name]
	return d, ok
}

// Declare declares work queue name and its retry queue, and records them to
// be declared again after a reconnect. Declaring a queue again with another
// retry delay fails, as RabbitMQ refuses to change a queue's arguments.
func (b *Broker) Declare(ctx context.Context, name string, retryDelay time.Duration) error {
	if err := broker.CheckDeclare(name, retryDelay); err != nil {
		return err
	}
	if _, err := b.session(ctx, outageWait); err != nil {
		return fmt.Errorf("declaring %s: %w", name, err)
	}
	b.declareMu.Lock()
	defer b.declareMu.Unlock()
	b.mu.Lock()
	s := b.sess
	b.mu.Unlock()
	if s == nil {
		return fmt.Errorf("declaring %s: %w", name, ErrUnavailable)
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("declaring %s: %w: %w", name, ErrUnavailable, err)
	}
	defer ch.Close()
	if err := b.declare(ch, name, retryDelay); err != nil {
		return err
	}
	b.mu.Lock()
	b.declared[name] = retryDelay
	b.mu.Unlock()
	return nil
}

// Publish sends bodies to work queue name on one confirm-mode channel and
// waits until RabbitMQ has confirmed all of them.
func (b *Broker) Publish(ctx context.Context, name string, bodies ...[]byte) error {
	if _, ok := b.retryDelay(name); !ok && name != contracts.DeadLetterQueue {
		return fmt.Errorf("publishing to %s: %w", name, errNotDeclared)
	}
	if err := b.publish(ctx, b.queueName(name), bodies); err != nil {
		return fmt.Errorf("publishing to %s: %w", name, err)
	}
	return nil
}

// PublishDelayed sends bodies to name's retry queue, from which they reach
// the work queue after its retry delay.
func (b *Broker) PublishDelayed(ctx context.Context, name string, bodies ...[]byte) error {
	if _, ok := b.retryDelay(name); !ok {
		return fmt.Errorf("publishing to %s%s: %w", name, contracts.RetrySuffix, errNotDeclared)
	}
	if err := b.publish(ctx, b.retryName(name), bodies); err != nil {
		return fmt.Errorf("publishing to %s%s: %w", name, contracts.RetrySuffix, err)
	}
	return nil
}

func (b *Broker) publish(ctx context.Context, queue string, bodies [][]byte) error {
	if len(bodies) == 0 {
		return nil
	}
	s, err := b.session(ctx, outageWait)
	if err != nil {
		return err
	}
	var ch *amqp.Channel
	select {
	case ch = <-s.pubs:
	case <-s.lost:
		return ErrUnavailable
	case <-ctx.Done():
		return ctx.Err()
	}
	if ch == nil || ch.IsClosed() {
		if ch, err = openPublisher(s.conn); err != nil {
			s.pubs <- nil
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	var headers amqp.Table
	if h := telemetry.Inject(ctx); h != nil {
		headers = make(amqp.Table, len(h))
		for k, v := range h {
			headers[k] = v
		}
	}
	confirms := make([]*amqp.DeferredConfirmation, 0, len(bodies))
	for _, body := range bodies {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent,
			Headers:      headers,
			Body:         body,
		})
		if err != nil {
			s.pubs <- ch
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		confirms = append(confirms, dc)
	}
	// The channel is needed only to send. Holding it while the broker
	// confirms (after its disk write) would allow just PublishChannels
	// messages in flight; handing it back lets every concurrent publisher
	// share the channels, and RabbitMQ confirms them in batches.
	s.pubs <- ch
	for i, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("waiting for confirms: %w", err)
		}
		if !ok {
			if ch.IsClosed() {
				return fmt.Errorf("%w: channel closed before message %d of %d was confirmed", ErrUnavailable, i+1, len(confirms))
			}
			return fmt.Errorf("rabbitmq refused message %d of %d", i+1, len(confirms))
		}
	}
	return nil
}

// Consume delivers the messages of queue name to h until ctx ends. It
// survives connection loss: on a new connection it opens a new channel and
// goes on. Close stops it with an error wrapping ErrClosed.
func (b *Broker) Consume(ctx context.Context, name string, opts broker.ConsumeOptions, h broker.Handler) error {
	if _, ok := b.retryDelay(name); !ok && name != contracts.DeadLetterQueue {
		return fmt.Errorf("consuming %s: %w", name, errNotDeclared)
	}
	prefetch := max(opts.Prefetch, 1)
	c := &consumer{
		b:        b,
		name:     name,
		queue:    b.queueName(name),
		prefetch: prefetch,
		workers:  min(max(opts.Workers, 1), prefetch),
		h:        h,
		hctx:     context.WithoutCancel(ctx),
	}
	var failures int // consecutive channel failures on a live connection
	for {
		s, err := b.session(ctx, 0)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("consuming %s: %w", name, err)
		}
		err = c.run(ctx, s)
		if ctx.Err() != nil {
			return nil
		}
		if s.conn.IsClosed() {
			// The supervisor is reconnecting; wait for it, not a timer.
			select {
			case <-s.lost:
			case <-ctx.Done():
				return nil
			case <-b.ctx.Done():
				return fmt.Errorf("consuming %s: %w", name, ErrClosed)
			}
			failures = 0
			continue
		}
		// The channel failed on a live connection: RabbitMQ refused
		// something, such as a queue deleted behind our back. Try again,
		// slowly.
		failures++
		d := min(minRedial<<min(failures-1, 10), maxRedial)
		b.log.Error("consumer channel failed; retrying", "queue", name, "retry_in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-b.ctx.Done():
			t.Stop()
			return fmt.Errorf("consuming %s: %w", name, ErrClosed)
		}
	}
}

// consumer is one Consume call.
type consumer struct {
	b        *Broker
	name     string
	queue    string
	prefetch int
	workers  int
	h        broker.Handler
	hctx     context.Context
	failures atomic.Int64 // consecutive transient errors, for the backoff
}

// consumerTag names the one consumer of a consumer channel, so that run
// can cancel it; tags are scoped to their channel.
const consumerTag = "quickmatch"

// run consumes on one channel of s until ctx ends or the channel closes.
// It returns once the handlers it started have finished, after closing the
// channel, which returns its unacknowledged deliveries to the queue. When
// ctx ends, it cancels the consumer first and closes the channel only once
// the handlers' acknowledgements are out.
func (c *consumer) run(ctx context.Context, s *session) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("opening a channel: %w", err)
	}
	defer ch.Close()
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Qos(c.prefetch, 0, false); err != nil {
		return fmt.Errorf("setting prefetch: %w", err)
	}
	deliveries, err := ch.Consume(c.queue, consumerTag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consuming %s: %w", c.queue, err)
	}

	// Half the prefetch may wait behind a slow delivery; the other half
	// keeps the workers fed meanwhile.
	acks := newAcker(ch.Ack, c.prefetch/2)
	jobs := make(chan amqp.Delivery)
	stop := make(chan struct{}) // closed when run stops taking deliveries
	var wg sync.WaitGroup
	for range c.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range jobs {
				c.handle(d, acks, stop)
			}
		}()
	}
	err = c.dispatch(ctx, deliveries, closed, jobs)
	if err == nil {
		// ctx ended on an open channel. Cancel the consumer, so that
		// RabbitMQ sends nothing more (not even the messages the
		// handlers below requeue), but keep the channel open until the
		// running handlers have settled their deliveries: a quorum queue
		// drops acknowledgements that are still on their way when the
		// channel closes.
		if cerr := ch.Cancel(consumerTag, false); cerr != nil {
			c.b.log.Debug("cancelling a consumer failed", "queue", c.name, "err", cerr)
		}
	}
	close(stop)
	close(jobs)
	wg.Wait()
	return err
}

// dispatch hands deliveries to the workers on jobs until ctx ends (nil) or
// the channel fails (an error).
func (c *consumer) dispatch(ctx context.Context, deliveries <-chan amqp.Delivery, closed <-chan *amqp.Error, jobs chan<- amqp.Delivery) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-closed:
			return fmt.Errorf("channel closed: %w", err)
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("delivery stream ended")
			}
			select {
			case jobs <- d:
			case <-ctx.Done():
				return nil // d goes back to the queue with the channel
			case err := <-closed:
				return fmt.Errorf("channel closed: %w", err)
			}
		}
	}
}

// handle runs the handler on d and settles d as the Handler contract says:
// a success through acks, a failure by a nack of its own. stop cuts a
// backoff short so that shutdown does not wait for it.
func (c *consumer) handle(d amqp.Delivery, acks *acker, stop <-chan struct{}) {
	ctx, span := telemetry.Consume(c.hctx, c.name, traceHeaders(d.Headers))
	err := c.h(ctx, broker.Message{Body: d.Body, Redelivered: d.Redelivered})
	span.End()
	var nack error
	switch {
	case err == nil:
		c.failures.Store(0)
	case errors.Is(err, broker.ErrDeadLetter):
		c.b.log.Warn("dead-lettering a message", "queue", c.name, "err", err)
		nack = d.Nack(false, false)
	default:
		wait := backoff(c.failures.Add(1))
		c.b.log.Debug("handler failed; redelivering after a backoff", "queue", c.name, "backoff", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-stop:
		}
		t.Stop()
		nack = d.Nack(false, true)
	}
	// Only after the nack has gone out: a multiple acknowledgement that
	// covered d before would take it for a success.
	if settle := errors.Join(nack, acks.settle(d.DeliveryTag, err == nil)); settle != nil {
		// The channel is gone; RabbitMQ redelivers the message.
		c.b.log.Debug("settling a delivery failed", "queue", c.name, "err", settle)
	}
}

// acker coalesces the acknowledgements of one channel. Handlers finish out
// of order; rather than a frame per message, it acknowledges with
// multiple=true, in one frame, every success up to the highest delivery
// tag below which all deliveries are settled, as soon as that prefix
// grows. RabbitMQ numbers the deliveries of a channel 1, 2, 3..., and a
// consumer channel has one consumer and no basic.get, so the tags are those
// of our deliveries. A failed delivery is nacked on its own first and then
// only counts as settled.
//
// A delivery that takes long (a handler in its backoff) holds back the
// acknowledgements of all that finish after it, and they count against
// the prefetch; so that the consumer does not stall, once hold successes
// wait behind the prefix the next ones are acknowledged each on its own.
type acker struct {
	// ack is Channel.Ack. It is called with mu held, so that the frames
	// go out in order: a multiple acknowledgement overtaken by a later one
	// would name a tag RabbitMQ no longer knows.
	ack  func(tag uint64, multiple bool) error
	hold int

	mu   sync.Mutex
	next uint64 // lowest tag not yet settled; all below it are
	// ahead holds the settled tags above next: true for a success not yet
	// acknowledged, false for one settled otherwise.
	ahead map[uint64]bool
	held  int // successes in ahead
}

func newAcker(ack func(tag uint64, multiple bool) error, hold int) *acker {
	return &acker{ack: ack, hold: hold, next: 1, ahead: make(map[uint64]bool)}
}

// settle records that the delivery of tag is settled: ok for a success to
// acknowledge, !ok for one already nacked. It returns the error of the
// acknowledgement it sends, if any.
func (a *acker) settle(tag uint64, ok bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if tag != a.next {
		switch {
		case !ok:
			a.ahead[tag] = false
		case a.held < a.hold:
			a.ahead[tag] = true
			a.held++
		default:
			a.ahead[tag] = false
			return a.ack(tag, false)
		}
		return nil
	}
	var last uint64 // the highest success of the prefix, 0 if none
	if ok {
		last = tag
	}
	for a.next++; ; a.next++ {
		pending, settled := a.ahead[a.next]
		if !settled {
			break
		}
		delete(a.ahead, a.next)
		if pending {
			last = a.next
			a.held--
		}
	}
	if last == 0 {
		return nil
	}
	// Acknowledging the highest success, not the end of the prefix: the
	// tag of an acknowledgement must be one RabbitMQ still waits for, and
	// multiple=true skips those below it that are settled already.
	return a.ack(last, true)
}

// Ping reports whether the connection to RabbitMQ is open.
func (b *Broker) Ping(ctx context.Context) error {
	if b.ctx.Err() != nil {
		return ErrClosed
	}
	b.mu.Lock()
	s := b.sess
	b.mu.Unlock()
	if s == nil || s.conn.IsClosed() {
		return ErrUnavailable
	}
	return nil
}

// Close closes the connection and stops reconnecting; consumers return
// once their running handlers finish. Closing again is harmless.
func (b *Broker) Close() error {
	b.cancel()
	b.wg.Wait()
	return nil
}

// traceHeaders are the string headers of a delivery, where the trace
// context travels; nil when there are none.
func traceHeaders(t amqp.Table) map[string]string {
	if len(t) == 0 {
		return nil
	}
	h := make(map[string]string, len(t))
	for k, v := range t {
		if s, ok := v.(string); ok {
			h[k] = s
		}
	}
	return h
}

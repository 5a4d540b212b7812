// Package assigner places formed matches on game servers. It serves the
// game-server API (register, heartbeat, long-poll allocations, end a match,
// drain) and consumes match messages: each one is placed atomically on a live
// server of the match's region with a free slot, or sent back through the
// retry queue until the queue's assignment deadline, when its tickets fail.
package assigner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/combine"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/store"
)

// MatchStore is what the match consumer needs of the shared state.
type MatchStore interface {
	AssignMatches(ctx context.Context, ids []string, now time.Time) []store.AssignResult
	FailMatch(ctx context.Context, matchID, reason string, now time.Time) error
}

// Publisher sends messages through the retry queue.
type Publisher interface {
	PublishDelayed(ctx context.Context, name string, bodies ...[]byte) error
}

// ConsumerConfig wires a Consumer.
type ConsumerConfig struct {
	Store     MatchStore
	Publisher Publisher
	Metrics   *metrics.Metrics
	Log       *slog.Logger
	Now       func() time.Time
	// Batch combines the messages handled at the same time into batches
	// (see Handle): the store places a batch's matches in a few round
	// trips in all, and its retries go out in one publish. It pays off
	// when every store call is a network round trip (Redis); in memory,
	// each message handled on its own, as many at once as the consumer
	// runs, costs less.
	Batch bool
}

// Consumer handles match messages.
type Consumer struct {
	cfg     ConsumerConfig
	batches combine.Combiner[*matchCall]
}

// NewConsumer returns a Consumer.
func NewConsumer(cfg ConsumerConfig) *Consumer {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Consumer{cfg: cfg}
}

// Handle is the broker.Handler for match messages. With
// ConsumerConfig.Batch, messages that arrive while another batch is being
// handled wait and are handled together as the next batch.
func (c *Consumer) Handle(ctx context.Context, msg broker.Message) error {
	mm, err := contracts.DecodeMatchMessage(msg.Body)
	if err != nil {
		return c.deadLetter(err)
	}
	call := &matchCall{msg: mm}
	if !c.cfg.Batch {
		c.handleBatch(ctx, []*matchCall{call})()
		return call.err
	}
	// The store's part of a batch is done before the next batch starts,
	// so that the next one sees this one's placements; the retry publish
	// waits for RabbitMQ's confirm, which the next batch need not wait for.
	c.batches.Do([]*matchCall{call}, func(batch []*matchCall) func() { return c.handleBatch(ctx, batch) })
	return call.err
}

// Batches (ConsumerConfig.Batch).
//
// Placing a match costs the Redis store a handful of round trips, one
// after the other; a consumer runs many Handle calls at once, each paying
// them on its own. Instead, as the matcher does, Handle calls are
// combined (internal/combine): the first one leads, handles every call waiting at that
// moment as one batch, then hands the lead to a call that arrived
// meanwhile and publishes its batch's retries while the next batch runs.
// The store places a batch's matches with one AssignMatches, a round trip
// per step for the whole batch, in the order the messages came; the
// matches past their deadline fail at once, and the retries of the rest
// go out in one confirmed publish. Every call still answers for its own
// message, so acknowledgement stays per message and after the effect is
// durable. How big a batch grows is bounded by how many handlers the
// consumer runs at once (its workers).

// matchCall is one Handle call waiting for its batch.
type matchCall struct {
	msg contracts.MatchMessage
	err error
}

// handleBatch does the store's part of handling calls and answers what
// remains: the retry publish, after which each call's err is its outcome.
func (c *Consumer) handleBatch(ctx context.Context, calls []*matchCall) (publish func()) {
	now := c.cfg.Now()
	unique, firsts := distinct(calls)
	ids := make([]string, len(unique))
	for i, call := range unique {
		ids[i] = call.msg.Match.ID
	}
	results := c.cfg.Store.AssignMatches(ctx, ids, now)
	var late, retries []*matchCall
	for i, call := range unique {
		if !c.record(call, results[i], now) {
			continue
		}
		if !now.Before(call.msg.Match.AssignDeadline) {
			late = append(late, call)
			continue
		}
		c.cfg.Metrics.Assignments.WithLabelValues(call.msg.Match.Queue, "no_capacity").Inc()
		retries = append(retries, call)
	}
	// Few matches outlive their deadline, so they fail one after another.
	for _, call := range late {
		c.fail(ctx, call, now)
	}
	return func() {
		c.retry(ctx, retries)
		// A repeat of a match (a redelivery beside a retry) answers the
		// outcome of the match's first call.
		for _, call := range calls {
			if first := firsts[call.msg.Match.ID]; first != nil {
				call.err = first.err
			}
		}
	}
}

// distinct answers the calls of distinct matches, in order, and the first
// call of each match by its id (nil for a batch of one).
func distinct(calls []*matchCall) (unique []*matchCall, firsts map[string]*matchCall) {
	if len(calls) == 1 {
		return calls, nil
	}
	firsts = make(map[string]*matchCall, len(calls))
	unique = make([]*matchCall, 0, len(calls))
	for _, call := range calls {
		if _, ok := firsts[call.msg.Match.ID]; !ok {
			firsts[call.msg.Match.ID] = call
			unique = append(unique, call)
		}
	}
	return unique, firsts
}

// record sets call's outcome from the result of its assignment, and
// reports true, leaving the outcome to the caller, when no server had
// capacity.
func (c *Consumer) record(call *matchCall, r store.AssignResult, now time.Time) (noCapacity bool) {
	match := &call.msg.Match
	switch err := r.Err; {
	case err == nil:
		c.cfg.Metrics.Assignments.WithLabelValues(match.Queue, "assigned").Inc()
		c.cfg.Metrics.TimeToAssign.WithLabelValues(match.Queue).Observe(now.Sub(match.CreatedAt).Seconds())
		c.cfg.Metrics.TicketsFinished.WithLabelValues(match.Queue, string(contracts.StatusAssigned)).Add(float64(len(match.TicketIDs)))
	case errors.Is(err, store.ErrConflict):
		// failed before; a duplicate message
	case errors.Is(err, store.ErrNotFound):
		call.err = c.deadLetter(fmt.Errorf("match %s is not in the store: %w", match.ID, err))
	case errors.Is(err, store.ErrNoCapacity):
		return true
	default:
		call.err = fmt.Errorf("assigning match %s: %w", match.ID, err)
	}
	return false
}

// fail fails the match of call, which found no capacity before its
// deadline.
func (c *Consumer) fail(ctx context.Context, call *matchCall, now time.Time) {
	match := &call.msg.Match
	if err := c.cfg.Store.FailMatch(ctx, match.ID, contracts.ReasonNoServerCapacity, now); err != nil && !errors.Is(err, store.ErrConflict) {
		call.err = fmt.Errorf("failing match %s: %w", match.ID, err)
		return
	}
	c.cfg.Metrics.Assignments.WithLabelValues(match.Queue, "failed").Inc()
	c.cfg.Metrics.TicketsFinished.WithLabelValues(match.Queue, string(contracts.StatusFailed)).Add(float64(len(match.TicketIDs)))
	c.cfg.Log.Warn("no server capacity before the deadline", "queue", match.Queue, "region", match.Region, "match", match.ID)
}

// retry sends the matches of calls through the retry queue, in one
// publish, and fails the calls if it fails.
func (c *Consumer) retry(ctx context.Context, calls []*matchCall) {
	bodies := make([][]byte, 0, len(calls))
	sent := make([]*matchCall, 0, len(calls))
	for _, call := range calls {
		mm := &call.msg
		next, err := contracts.EncodeMatchMessage(mm.Match, mm.Attempt+1)
		if err != nil {
			call.err = err
			continue
		}
		bodies = append(bodies, next)
		sent = append(sent, call)
	}
	if len(bodies) == 0 {
		return
	}
	if err := c.cfg.Publisher.PublishDelayed(ctx, contracts.MatchQueue, bodies...); err != nil {
		for _, call := range sent {
			call.err = fmt.Errorf("sending match %s to retry: %w", call.msg.Match.ID, err)
		}
		return
	}
	c.cfg.Metrics.Requeues.WithLabelValues(contracts.MatchQueue, "no_capacity").Add(float64(len(sent)))
}

func (c *Consumer) deadLetter(err error) error {
	c.cfg.Metrics.DeadLetters.WithLabelValues(contracts.MatchQueue).Inc()
	c.cfg.Log.Warn("dead-lettering match message", "err", err)
	return fmt.Errorf("%w: %w", broker.ErrDeadLetter, err)
}

// Package assigner places formed matches on game servers. It serves the
// game-server API (register, heartbeat, long-poll allocations, end a match,
// drain) and consumes match messages: each one is placed atomically on a live
// server of the match's region with a free slot, or sent back through the
// retry queue until the queue's assignment deadline, when its tickets fail.
package assigner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/store"
)

// MatchStore is what the match consumer needs of the shared state.
type MatchStore interface {
	AssignMatch(ctx context.Context, matchID string, now time.Time) (contracts.Assignment, error)
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
}

// Consumer handles match messages.
type Consumer struct {
	cfg ConsumerConfig
}

// NewConsumer returns a Consumer.
func NewConsumer(cfg ConsumerConfig) *Consumer {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Consumer{cfg: cfg}
}

// Handle is the broker.Handler for match messages.
func (c *Consumer) Handle(ctx context.Context, msg broker.Message) error {
	mm, err := contracts.DecodeMatchMessage(msg.Body)
	if err != nil {
		return c.deadLetter(err)
	}
	match := &mm.Match
	now := c.cfg.Now()
	_, err = c.cfg.Store.AssignMatch(ctx, match.ID, now)
	switch {
	case err == nil:
		c.cfg.Metrics.Assignments.WithLabelValues(match.Queue, "assigned").Inc()
		c.cfg.Metrics.TimeToAssign.WithLabelValues(match.Queue).Observe(now.Sub(match.CreatedAt).Seconds())
		c.cfg.Metrics.TicketsFinished.WithLabelValues(match.Queue, string(contracts.StatusAssigned)).Add(float64(len(match.TicketIDs)))
		return nil
	case errors.Is(err, store.ErrConflict):
		return nil // failed before; a duplicate message
	case errors.Is(err, store.ErrNotFound):
		return c.deadLetter(fmt.Errorf("match %s is not in the store: %w", match.ID, err))
	case !errors.Is(err, store.ErrNoCapacity):
		return fmt.Errorf("assigning match %s: %w", match.ID, err)
	}
	if !now.Before(match.AssignDeadline) {
		if err := c.cfg.Store.FailMatch(ctx, match.ID, contracts.ReasonNoServerCapacity, now); err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("failing match %s: %w", match.ID, err)
		}
		c.cfg.Metrics.Assignments.WithLabelValues(match.Queue, "failed").Inc()
		c.cfg.Metrics.TicketsFinished.WithLabelValues(match.Queue, string(contracts.StatusFailed)).Add(float64(len(match.TicketIDs)))
		c.cfg.Log.Warn("no server capacity before the deadline", "queue", match.Queue, "region", match.Region, "match", match.ID)
		return nil
	}
	c.cfg.Metrics.Assignments.WithLabelValues(match.Queue, "no_capacity").Inc()
	next, err := json.Marshal(contracts.MatchMessage{V: contracts.SchemaVersion, Match: *match, Attempt: mm.Attempt + 1})
	if err != nil {
		return fmt.Errorf("encoding retry of match %s: %w", match.ID, err)
	}
	if err := c.cfg.Publisher.PublishDelayed(ctx, contracts.MatchQueue, next); err != nil {
		return fmt.Errorf("sending match %s to retry: %w", match.ID, err)
	}
	c.cfg.Metrics.Requeues.WithLabelValues(contracts.MatchQueue, "no_capacity").Inc()
	return nil
}

func (c *Consumer) deadLetter(err error) error {
	c.cfg.Metrics.DeadLetters.WithLabelValues(contracts.MatchQueue).Inc()
	c.cfg.Log.Warn("dead-lettering match message", "err", err)
	return fmt.Errorf("%w: %w", broker.ErrDeadLetter, err)
}

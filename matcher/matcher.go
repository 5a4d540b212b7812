// Package matcher consumes ticket messages and forms matches. Each message is
// one attempt to match one ticket: it claims the ticket together with the best
// opponent waiting in the pool, or puts the ticket in the pool and sends its
// message back through the retry queue for a later attempt with a wider skill
// window. The claim is atomic in the store, so any number of matchers may race
// on one pool, and every step is safe to repeat when a message is redelivered.
package matcher

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
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Store is what the matcher needs of the shared state.
type Store interface {
	Ticket(ctx context.Context, id string) (contracts.Ticket, error)
	Match(ctx context.Context, id string) (contracts.Match, error)
	AddToPool(ctx context.Context, queue string, e store.PoolEntry) (bool, error)
	Candidates(ctx context.Context, queue string, skill, maxGap float64, limit int) ([]store.PoolEntry, error)
	ClaimMatch(ctx context.Context, m contracts.Match, now time.Time) error
	ExpireTicket(ctx context.Context, id string, now time.Time) (bool, error)
}

// Publisher sends messages to the broker and returns once they are durable.
type Publisher interface {
	Publish(ctx context.Context, name string, bodies ...[]byte) error
	PublishDelayed(ctx context.Context, name string, bodies ...[]byte) error
}

// Config wires a Matcher.
type Config struct {
	Queues    *queues.Set
	Store     Store
	Publisher Publisher
	Metrics   *metrics.Metrics
	Log       *slog.Logger
	Now       func() time.Time
	// Candidates is how many pool entries nearest in skill one search
	// reads; default 32.
	Candidates int
}

// Matcher handles ticket messages.
type Matcher struct {
	cfg Config
}

// New returns a Matcher.
func New(cfg Config) *Matcher {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Candidates <= 0 {
		cfg.Candidates = 32
	}
	return &Matcher{cfg: cfg}
}

// claimAttempts bounds how often one message retries after losing a
// candidate to another matcher before it settles for the pool.
const claimAttempts = 3

// Handle is the broker.Handler for ticket messages.
func (m *Matcher) Handle(ctx context.Context, msg broker.Message) error {
	tm, err := contracts.DecodeTicketMessage(msg.Body)
	if err != nil {
		return m.deadLetter("unknown", err)
	}
	q, ok := m.cfg.Queues.Get(tm.Ticket.Queue)
	if !ok {
		return m.deadLetter(tm.Ticket.Queue, fmt.Errorf("ticket %s names unknown queue %q", tm.Ticket.ID, tm.Ticket.Queue))
	}
	t := tm.Ticket
	// The first delivery of a fresh ticket carries all it needs; any other
	// delivery may be stale, so it starts from the store's version.
	if msg.Redelivered || tm.Attempt > 0 {
		t, err = m.cfg.Store.Ticket(ctx, tm.Ticket.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil // deleted: its creation was rolled back
		case err != nil:
			return fmt.Errorf("reading ticket %s: %w", tm.Ticket.ID, err)
		case t.Status == contracts.StatusMatched && msg.Redelivered:
			// This delivery may have claimed the match and died before
			// publishing it; publishing again is harmless.
			return m.republish(ctx, t)
		case t.Status != contracts.StatusSearching:
			return nil
		}
	}
	now := m.cfg.Now()
	if now.Sub(t.CreatedAt) >= q.MaxWait {
		if _, err := m.cfg.Store.ExpireTicket(ctx, t.ID, now); err != nil {
			return fmt.Errorf("expiring ticket %s: %w", t.ID, err)
		}
		m.cfg.Metrics.TicketsFinished.WithLabelValues(q.Name, string(contracts.StatusExpired)).Inc()
		return nil
	}
	self := poolEntry(&q, &t)
	matched, err := m.tryMatch(ctx, &q, self, now)
	if err != nil || matched {
		return err
	}
	// A miss. Join the pool, then look once more: a ticket that joined
	// while we searched may have missed us too, and one of the two of us
	// now sees the other, so neither waits a full retry delay for nothing.
	in, err := m.cfg.Store.AddToPool(ctx, q.Name, self)
	if err != nil {
		return fmt.Errorf("adding ticket %s to the pool: %w", t.ID, err)
	}
	if !in {
		return nil // cancelled or matched meanwhile
	}
	if matched, err := m.tryMatch(ctx, &q, self, m.cfg.Now()); err != nil || matched {
		return err
	}
	next, err := json.Marshal(contracts.TicketMessage{V: contracts.SchemaVersion, Ticket: t, Attempt: tm.Attempt + 1})
	if err != nil {
		return fmt.Errorf("encoding retry of ticket %s: %w", t.ID, err)
	}
	if err := m.cfg.Publisher.PublishDelayed(ctx, contracts.TicketQueue(q.Name), next); err != nil {
		return fmt.Errorf("sending ticket %s to retry: %w", t.ID, err)
	}
	m.cfg.Metrics.Requeues.WithLabelValues(contracts.TicketQueue(q.Name), "no_match").Inc()
	return nil
}

// tryMatch searches the pool for tickets to complete a match with self and
// claims them all at once. It reports true when self is settled: matched
// now, or found no longer searching.
func (m *Matcher) tryMatch(ctx context.Context, q *queues.Queue, self store.PoolEntry, now time.Time) (bool, error) {
	limit := max(m.cfg.Candidates, 4*q.PlayersPerMatch())
	var lost map[string]bool
	for range claimAttempts {
		cands, err := m.cfg.Store.Candidates(ctx, q.Name, self.Skill, q.Skill.Max, limit)
		if err != nil {
			return false, fmt.Errorf("searching the %s pool: %w", q.Name, err)
		}
		entries, region, teams, ok := findMatch(q, self, cands, lost, now)
		if !ok {
			return false, nil
		}
		match, err := m.formMatch(ctx, q, region, now, entries, teams)
		var conflict *store.ConflictError
		switch {
		case err == nil:
			return true, m.publishMatch(ctx, q, match, now, entries)
		case errors.As(err, &conflict) && conflict.TicketID == self.TicketID:
			return true, nil // cancelled, or matched by another matcher
		case errors.As(err, &conflict):
			if lost == nil {
				lost = make(map[string]bool)
			}
			lost[conflict.TicketID] = true
		default:
			return false, err
		}
	}
	return false, nil
}

// formMatch claims the tickets of entries as one match with the given
// teams; the claim checks that all of them are still searching.
func (m *Matcher) formMatch(ctx context.Context, q *queues.Queue, region string, now time.Time, entries []store.PoolEntry, teams [][]int) (contracts.Match, error) {
	match := contracts.Match{
		ID:             store.NewID(q.Name),
		Queue:          q.Name,
		Region:         region,
		CreatedAt:      now,
		AssignDeadline: now.Add(q.AssignDeadline),
		Teams:          make([][]string, len(teams)),
	}
	for _, e := range entries {
		match.TicketIDs = append(match.TicketIDs, e.TicketID)
		match.Players = append(match.Players, e.Party...)
	}
	for t, members := range teams {
		for _, i := range members {
			for _, p := range entries[i].Party {
				match.Teams[t] = append(match.Teams[t], p.ID)
			}
		}
	}
	if err := m.cfg.Store.ClaimMatch(ctx, match, now); err != nil {
		return match, fmt.Errorf("claiming match of %v: %w", match.TicketIDs, err)
	}
	return match, nil
}

func (m *Matcher) publishMatch(ctx context.Context, q *queues.Queue, match contracts.Match, now time.Time, entries []store.PoolEntry) error {
	if err := m.sendMatch(ctx, match); err != nil {
		return err
	}
	m.cfg.Metrics.MatchesFormed.WithLabelValues(q.Name, match.Region).Inc()
	for _, e := range entries {
		m.cfg.Metrics.WaitSeconds.WithLabelValues(q.Name).Observe(now.Sub(e.CreatedAt).Seconds())
	}
	return nil
}

func (m *Matcher) republish(ctx context.Context, t contracts.Ticket) error {
	if t.Match == nil {
		return fmt.Errorf("ticket %s is matched but shows no match", t.ID)
	}
	match, err := m.cfg.Store.Match(ctx, t.Match.ID)
	if err != nil {
		return fmt.Errorf("reading match %s of ticket %s: %w", t.Match.ID, t.ID, err)
	}
	return m.sendMatch(ctx, match)
}

func (m *Matcher) sendMatch(ctx context.Context, match contracts.Match) error {
	body, err := json.Marshal(contracts.MatchMessage{V: contracts.SchemaVersion, Match: match})
	if err != nil {
		return fmt.Errorf("encoding match %s: %w", match.ID, err)
	}
	if err := m.cfg.Publisher.Publish(ctx, contracts.MatchQueue, body); err != nil {
		return fmt.Errorf("publishing match %s: %w", match.ID, err)
	}
	return nil
}

func (m *Matcher) deadLetter(queue string, err error) error {
	m.cfg.Metrics.DeadLetters.WithLabelValues(contracts.TicketQueue(queue)).Inc()
	m.cfg.Log.Warn("dead-lettering ticket message", "queue", queue, "err", err)
	return fmt.Errorf("%w: %w", broker.ErrDeadLetter, err)
}

func poolEntry(q *queues.Queue, t *contracts.Ticket) store.PoolEntry {
	skills := make([]float64, len(t.Players))
	for i, p := range t.Players {
		skills[i] = p.Skill
	}
	return store.PoolEntry{
		TicketID:  t.ID,
		Skill:     q.PartySkill(skills),
		Players:   len(t.Players),
		Party:     t.Players,
		CreatedAt: t.CreatedAt,
		Latencies: t.Latencies,
	}
}

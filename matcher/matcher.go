// Package matcher consumes ticket messages and forms matches. Each message is
// one attempt to match one ticket: it claims the ticket together with the best
// opponents waiting in the pool or arriving in the same batch of messages, or
// puts the ticket in the pool and sends its message back through the retry
// queue for a later attempt with a wider skill window. The claim is atomic in
// the store, so any number of matchers may race on one pool, and every step is
// safe to repeat when a message is redelivered.
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
	// Batch combines the messages handled at the same time into batches
	// (see batch.go) and makes the store calls of each step of a batch at
	// once. It pays off when every store call is a network round trip
	// (Redis); in memory, each message handled on its own, as many at once
	// as the consumer runs, costs less.
	Batch bool
}

// Matcher handles ticket messages.
type Matcher struct {
	cfg     Config
	batches combiner
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

// claimAttempts bounds how often one search retries after losing a
// candidate to another matcher before it settles for the pool.
const claimAttempts = 3

// Handle is the broker.Handler for ticket messages. With Config.Batch,
// messages that arrive while another batch is being handled wait and are
// handled together as the next batch (see batch.go), so concurrent
// deliveries pair up among themselves instead of racing for the same pool
// entries.
func (m *Matcher) Handle(ctx context.Context, msg broker.Message) error {
	tm, err := contracts.DecodeTicketMessage(msg.Body)
	if err != nil {
		return m.deadLetter("unknown", err)
	}
	if _, ok := m.cfg.Queues.Get(tm.Ticket.Queue); !ok {
		return m.deadLetter(tm.Ticket.Queue, fmt.Errorf("ticket %s names unknown queue %q", tm.Ticket.ID, tm.Ticket.Queue))
	}
	c := &ticketCall{msg: tm, redelivered: msg.Redelivered}
	if !m.cfg.Batch {
		m.handleBatch(ctx, []*ticketCall{c})()
		return c.err
	}
	return m.combine(ctx, c)
}

// current reads the ticket of c as it stands now. It reports false when
// there is nothing to do for the message; then c.err is its outcome.
func (m *Matcher) current(ctx context.Context, c *ticketCall) (contracts.Ticket, bool) {
	tm := &c.msg
	// The first delivery of a fresh ticket carries all it needs; any other
	// delivery may be stale, so it starts from the store's version.
	if !c.redelivered && tm.Attempt == 0 {
		return tm.Ticket, true
	}
	t, err := m.cfg.Store.Ticket(ctx, tm.Ticket.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return t, false // deleted: its creation was rolled back
	case err != nil:
		c.err = fmt.Errorf("reading ticket %s: %w", tm.Ticket.ID, err)
		return t, false
	case t.Status == contracts.StatusMatched && c.redelivered:
		// This delivery may have claimed the match and died before
		// publishing it; publishing again is harmless.
		c.err = m.republish(ctx, t)
		return t, false
	case t.Status != contracts.StatusSearching:
		return t, false
	}
	return t, true
}

// found is the result of one search: the match claimed for self and its
// entries, or none; settled tells that self is no longer searching
// (matched now, or found cancelled or matched elsewhere); err that the
// store failed.
type found struct {
	match   *contracts.Match
	entries []store.PoolEntry
	settled bool
	err     error
}

// candidateLimit is how many pool entries on each side of a ticket's skill
// one search of q reads.
func (m *Matcher) candidateLimit(q *queues.Queue) int {
	return max(m.cfg.Candidates, 4*q.PlayersPerMatch())
}

// search looks for a match for self among the pool's candidates and
// extra (tickets of the same batch within reach, not all in the pool), and
// claims it.
func (m *Matcher) search(ctx context.Context, q *queues.Queue, self store.PoolEntry, extra []store.PoolEntry, now time.Time) found {
	var lost map[string]bool
	for range claimAttempts {
		cands, err := m.cfg.Store.Candidates(ctx, q.Name, self.Skill, q.Skill.Max, m.candidateLimit(q))
		if err != nil {
			return found{err: fmt.Errorf("searching the %s pool: %w", q.Name, err)}
		}
		entries, region, teams, ok := findMatch(q, self, withExtra(cands, extra), lost, now)
		if !ok {
			return found{}
		}
		formed, err := m.formMatch(ctx, q, region, now, entries, teams)
		var conflict *store.ConflictError
		switch {
		case err == nil:
			return found{match: &formed, entries: entries, settled: true}
		case errors.As(err, &conflict) && conflict.TicketID == self.TicketID:
			return found{settled: true} // cancelled, or matched by another matcher
		case errors.As(err, &conflict):
			if lost == nil {
				lost = make(map[string]bool)
			}
			lost[conflict.TicketID] = true
		default:
			return found{err: err}
		}
	}
	return found{}
}

// withExtra adds to the pool's candidates the entries of extra that the
// pool did not already hold.
func withExtra(cands, extra []store.PoolEntry) []store.PoolEntry {
	if len(extra) == 0 {
		return cands
	}
	seen := make(map[string]bool, len(cands))
	for _, c := range cands {
		seen[c.TicketID] = true
	}
	for _, e := range extra {
		if !seen[e.TicketID] {
			seen[e.TicketID] = true
			cands = append(cands, e)
		}
	}
	return cands
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

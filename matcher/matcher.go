// Package matcher consumes ticket messages and forms matches. Each message is
// one attempt to match one ticket: it claims the ticket together with the best
// opponents waiting in the pool or arriving in the same batch of messages, or
// puts the ticket in the pool and sends its message back through the retry
// queue for a later attempt with a wider skill window. The claim is atomic in
// the store, so any number of matchers may race on one pool, and every step is
// safe to repeat when a message is redelivered.
package matcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/combine"
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
	Backfills(ctx context.Context, queue string) ([]contracts.Backfill, error)
	FillBackfill(ctx context.Context, matchID, ticketID string, team int, ref contracts.MatchRef, now time.Time) (contracts.Assignment, error)
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
	batches combine.Combiner[*ticketCall]
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

// Handle is the broker.Handler for ticket messages. The tickets of one
// message are handled as one batch; with Config.Batch, messages that arrive
// while another batch is being handled wait and are handled together as the
// next batch (see batch.go), so concurrent deliveries pair up among
// themselves instead of racing for the same pool entries.
//
// An entry of the message that can never be handled is dead-lettered on its
// own. Tickets whose handling failed on the way (the store or the broker
// failed them) go back through the retry queue in one message, so that the
// others are acknowledged with the delivery; only if that fails too is the
// whole delivery redelivered, which matches nobody twice (see current).
func (m *Matcher) Handle(ctx context.Context, msg broker.Message) error {
	tm, rejected, err := contracts.DecodeTicketMessage(msg.Body)
	if err != nil {
		return m.deadLetter("unknown", err)
	}
	calls := make([]*ticketCall, 0, len(tm.Tickets))
	for _, try := range tm.Tickets {
		if _, ok := m.cfg.Queues.Get(try.Ticket.Queue); !ok {
			body, _ := contracts.EncodeTicketMessage(try)
			rejected = append(rejected, contracts.RejectedTicket{Body: body,
				Err: fmt.Errorf("ticket %s names unknown queue %q", try.Ticket.ID, try.Ticket.Queue)})
			continue
		}
		calls = append(calls, &ticketCall{msg: try, redelivered: msg.Redelivered})
	}
	if len(calls) == 0 {
		return m.deadLetter("unknown", rejected[0].Err)
	}
	if err := m.deadLetterEach(ctx, calls[0].msg.Ticket.Queue, rejected); err != nil {
		return err
	}
	if !m.cfg.Batch {
		m.handleBatch(ctx, calls)()
	} else {
		// The store's part of a batch is done before the next batch
		// starts, so that it sees this one's claims; the publishes wait
		// for RabbitMQ's confirms, which the next batch need not wait for.
		m.batches.Do(calls, func(batch []*ticketCall) func() { return m.handleBatch(ctx, batch) })
	}
	return m.settle(ctx, calls)
}

// settle answers the outcome of a delivery whose tickets were handled as
// calls: nil if every one was, or once the failed ones are back in the
// retry queue; the failure itself, for a redelivery, when all failed or
// one is in a match that is claimed but not published.
func (m *Matcher) settle(ctx context.Context, calls []*ticketCall) error {
	var failed []contracts.TicketTry
	var first error
	redeliver := false
	for _, c := range calls {
		if c.err != nil {
			failed = append(failed, contracts.TicketTry{Ticket: c.msg.Ticket, Attempt: c.msg.Attempt + 1})
			first = cmp.Or(first, c.err)
			redeliver = redeliver || c.unpublished
		}
	}
	switch {
	case len(failed) == 0:
		return nil
	case len(failed) == len(calls) || redeliver:
		return first
	}
	body, err := contracts.EncodeTicketMessage(failed...)
	if err == nil {
		err = m.cfg.Publisher.PublishDelayed(ctx, contracts.TicketQueue(failed[0].Ticket.Queue), body)
	}
	if err != nil {
		return fmt.Errorf("%w; sending the %d failed tickets of the message to retry: %w", first, len(failed), err)
	}
	m.cfg.Log.Debug("tickets of a message failed; retrying them", "queue", failed[0].Ticket.Queue, "tickets", len(failed), "err", first)
	m.cfg.Metrics.Requeues.WithLabelValues(contracts.TicketQueue(failed[0].Ticket.Queue), "error").Add(float64(len(failed)))
	return nil
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
// claims it; a candidate taken first is left out of the next try.
func (m *Matcher) search(ctx context.Context, q *queues.Queue, self store.PoolEntry, extra []store.PoolEntry, now time.Time) found {
	var lost map[string]bool
	for range claimAttempts {
		cands, err := m.cfg.Store.Candidates(ctx, q.Name, self.Skill, q.Skill.Max, m.candidateLimit(q))
		if err != nil {
			return found{err: fmt.Errorf("searching the %s pool: %w", q.Name, err)}
		}
		pk, ok := choose(q, self, withExtra(cands, extra), lost, now)
		if !ok {
			return found{}
		}
		f, taken := m.claim(ctx, q, self, pk, now)
		if taken == "" {
			return f
		}
		if lost == nil {
			lost = make(map[string]bool)
		}
		lost[taken] = true
	}
	return found{}
}

// pick is a match chosen for a ticket: its entries, their region, and the
// teams as indexes into entries.
type pick struct {
	entries []store.PoolEntry
	region  string
	teams   [][]int
}

// choose picks the best match for self among cands, but for the tickets
// of exclude.
func choose(q *queues.Queue, self store.PoolEntry, cands []store.PoolEntry, exclude map[string]bool, now time.Time) (pick, bool) {
	entries, region, teams, ok := findMatch(q, self, cands, exclude, now)
	return pick{entries: entries, region: region, teams: teams}, ok
}

// claim claims pk as self's match and reads the outcome, the one place a
// lost claim is understood: the match; or settled with no match, when
// self itself was taken first (cancelled, or matched by another matcher);
// or the id of another ticket of pk that was taken first, which a new
// search must do without.
func (m *Matcher) claim(ctx context.Context, q *queues.Queue, self store.PoolEntry, pk pick, now time.Time) (f found, taken string) {
	formed, err := m.formMatch(ctx, q, pk.region, now, pk.entries, pk.teams)
	var conflict *store.ConflictError
	switch {
	case err == nil:
		return found{match: &formed, entries: pk.entries, settled: true}, ""
	case errors.As(err, &conflict) && conflict.TicketID == self.TicketID:
		return found{settled: true}, ""
	case errors.As(err, &conflict):
		return found{}, conflict.TicketID
	}
	return found{err: err}, ""
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
	if q.AcceptTimeout > 0 {
		// The match asks first; its wait for a server starts when it may
		// last be accepted.
		match.AcceptDeadline = now.Add(q.AcceptTimeout)
		match.AssignDeadline = match.AcceptDeadline.Add(q.AssignDeadline)
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
	body, err := contracts.EncodeMatchMessage(match, 0)
	if err != nil {
		return err
	}
	if err := m.cfg.Publisher.Publish(ctx, contracts.MatchQueue, body); err != nil {
		return fmt.Errorf("publishing match %s: %w", match.ID, err)
	}
	return nil
}

// deadLetterEach sends the rejected entries of a message of queue to the
// dead-letter queue, each in a message of its own, so that the rest of the
// message can go on.
func (m *Matcher) deadLetterEach(ctx context.Context, queue string, rejected []contracts.RejectedTicket) error {
	if len(rejected) == 0 {
		return nil
	}
	bodies := make([][]byte, len(rejected))
	for i, r := range rejected {
		bodies[i] = r.Body
		m.cfg.Log.Warn("dead-lettering a ticket of a message", "queue", queue, "err", r.Err)
	}
	if err := m.cfg.Publisher.Publish(ctx, contracts.DeadLetterQueue, bodies...); err != nil {
		return fmt.Errorf("dead-lettering %d tickets of a message: %w", len(rejected), err)
	}
	m.cfg.Metrics.DeadLetters.WithLabelValues(contracts.TicketQueue(queue)).Add(float64(len(rejected)))
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

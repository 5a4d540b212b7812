package matcher

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Batches.
//
// A consumer runs many Handle calls at once. Were each to search the pool
// on its own, all of them would pick the same best candidate, one would
// win the claim and the others would search again, and two fresh tickets
// that would suit each other would both miss, join the pool and go through
// the retry queue. Instead, Handle calls are combined: the first one leads,
// handles every call waiting at that moment as one batch, then hands the
// lead to a call that arrived meanwhile. Within a batch, tickets search in
// the order they were created, against the pool and the rest of the batch,
// so a batch of fresh tickets pairs up at once; its matches are published
// in one confirmed publish and its misses in one retry publish. Every call
// still answers for its own message, so acknowledgement stays per message
// and after the effect is durable.

// ticketCall is one Handle call waiting for its batch.
type ticketCall struct {
	msg         contracts.TicketMessage
	redelivered bool
	err         error
	// done receives false once the call's batch is handled and err holds
	// its outcome, or true when the call is to lead the next batch.
	done chan bool
}

// combiner queues calls for the batch after the one being handled.
type combiner struct {
	mu      sync.Mutex
	waiting []*ticketCall
	leading bool // a call is handling a batch, or is about to
}

// combine handles c in a batch and answers its outcome.
func (m *Matcher) combine(ctx context.Context, c *ticketCall) error {
	b := &m.batches
	b.mu.Lock()
	b.waiting = append(b.waiting, c)
	if b.leading {
		b.mu.Unlock()
		if lead := <-c.done; !lead {
			return c.err
		}
		b.mu.Lock()
	}
	b.leading = true
	batch := b.waiting
	b.waiting = nil
	b.mu.Unlock()

	m.handleBatch(ctx, batch)
	for _, o := range batch {
		if o != c {
			o.done <- false
		}
	}

	b.mu.Lock()
	if len(b.waiting) == 0 {
		b.leading = false
		b.mu.Unlock()
		return c.err
	}
	next := b.waiting[0]
	b.mu.Unlock()
	next.done <- true
	return c.err
}

// handleBatch handles calls, a queue at a time, and sets each one's err.
func (m *Matcher) handleBatch(ctx context.Context, calls []*ticketCall) {
	var order []string
	byQueue := make(map[string][]*ticketCall)
	for _, c := range calls {
		name := c.msg.Ticket.Queue
		if _, ok := byQueue[name]; !ok {
			order = append(order, name)
		}
		byQueue[name] = append(byQueue[name], c)
	}
	for _, name := range order {
		q, _ := m.cfg.Queues.Get(name) // Handle checked it
		m.handleQueue(ctx, &q, byQueue[name])
	}
}

// searcher is a ticket of the batch that is still searching.
type searcher struct {
	call    *ticketCall
	ticket  contracts.Ticket
	entry   store.PoolEntry
	settled bool // matched, no longer searching, or failed (call.err)
}

// outcome collects what a batch publishes and whose messages wait for it.
type outcome struct {
	matches    []formed
	matchCalls []*ticketCall
	retries    [][]byte
	retryCalls []*ticketCall
}

// formed is a match claimed by the batch.
type formed struct {
	match   *contracts.Match
	entries []store.PoolEntry
}

// handleQueue handles the calls of one queue.
func (m *Matcher) handleQueue(ctx context.Context, q *queues.Queue, calls []*ticketCall) {
	var (
		live []*searcher
		byID = make(map[string]*searcher, len(calls))
	)
	for _, c := range calls {
		if _, dup := byID[c.msg.Ticket.ID]; dup {
			// Two messages of one ticket (a redelivery beside a retry):
			// the first one's outcome covers both.
			continue
		}
		t, ok := m.current(ctx, c)
		if !ok {
			continue
		}
		now := m.cfg.Now()
		if now.Sub(t.CreatedAt) >= q.MaxWait {
			if _, err := m.cfg.Store.ExpireTicket(ctx, t.ID, now); err != nil {
				c.err = fmt.Errorf("expiring ticket %s: %w", t.ID, err)
				continue
			}
			m.cfg.Metrics.TicketsFinished.WithLabelValues(q.Name, string(contracts.StatusExpired)).Inc()
			continue
		}
		s := &searcher{call: c, ticket: t, entry: poolEntry(q, &t)}
		byID[t.ID] = s
		live = append(live, s)
	}
	// The longest-waiting ticket has priority.
	slices.SortStableFunc(live, func(a, b *searcher) int { return a.ticket.CreatedAt.Compare(b.ticket.CreatedAt) })

	var out outcome
	// settle records a search's result for self and for every ticket of
	// the batch its match took.
	settle := func(self *searcher, match *contracts.Match, entries []store.PoolEntry, settled bool, err error) {
		if err != nil {
			self.call.err = err
			self.settled = true
			return
		}
		self.settled = self.settled || settled
		if match == nil {
			return
		}
		out.matches = append(out.matches, formed{match, entries})
		for _, e := range entries {
			if s, ok := byID[e.TicketID]; ok {
				s.settled = true
				out.matchCalls = append(out.matchCalls, s.call)
			}
		}
	}

	// First, against the pool and the rest of the batch.
	now := m.cfg.Now()
	extra := make([]store.PoolEntry, 0, len(live))
	for _, s := range live {
		if s.settled {
			continue
		}
		extra = extra[:0]
		for _, o := range live {
			if o != s && !o.settled {
				extra = append(extra, o.entry)
			}
		}
		match, entries, settled, err := m.search(ctx, q, s.entry, extra, now)
		settle(s, match, entries, settled, err)
	}

	// The misses join the pool, then look once more: a ticket that joined
	// while we searched (another matcher's) may have missed us too, and
	// one of the two of us now sees the other, so neither waits a full
	// retry delay for nothing.
	var missed []*searcher
	for _, s := range live {
		if s.settled {
			continue
		}
		in, err := m.cfg.Store.AddToPool(ctx, q.Name, s.entry)
		switch {
		case err != nil:
			s.call.err = fmt.Errorf("adding ticket %s to the pool: %w", s.ticket.ID, err)
			s.settled = true
		case !in:
			s.settled = true // cancelled or matched meanwhile
		default:
			missed = append(missed, s)
		}
	}
	for _, s := range missed {
		if s.settled {
			continue
		}
		match, entries, settled, err := m.search(ctx, q, s.entry, nil, m.cfg.Now())
		settle(s, match, entries, settled, err)
		if s.settled {
			continue
		}
		next, err := json.Marshal(contracts.TicketMessage{V: contracts.SchemaVersion, Ticket: s.ticket, Attempt: s.call.msg.Attempt + 1})
		if err != nil {
			s.call.err = fmt.Errorf("encoding retry of ticket %s: %w", s.ticket.ID, err)
			continue
		}
		out.retries = append(out.retries, next)
		out.retryCalls = append(out.retryCalls, s.call)
	}

	m.publish(ctx, q, &out, now)
}

// publish sends a batch's matches and retries, each kind in one confirmed
// publish, and fails the calls that waited for a publish that failed.
func (m *Matcher) publish(ctx context.Context, q *queues.Queue, out *outcome, now time.Time) {
	bodies := make([][]byte, 0, len(out.matches))
	for _, f := range out.matches {
		body, err := json.Marshal(contracts.MatchMessage{V: contracts.SchemaVersion, Match: *f.match})
		if err != nil {
			fail(out.matchCalls, fmt.Errorf("encoding match %s: %w", f.match.ID, err))
			bodies = nil
			break
		}
		bodies = append(bodies, body)
	}
	if len(bodies) > 0 {
		if err := m.cfg.Publisher.Publish(ctx, contracts.MatchQueue, bodies...); err != nil {
			fail(out.matchCalls, fmt.Errorf("publishing %d matches: %w", len(bodies), err))
		} else {
			for _, f := range out.matches {
				m.cfg.Metrics.MatchesFormed.WithLabelValues(q.Name, f.match.Region).Inc()
				for _, e := range f.entries {
					m.cfg.Metrics.WaitSeconds.WithLabelValues(q.Name).Observe(now.Sub(e.CreatedAt).Seconds())
				}
			}
		}
	}
	if len(out.retries) > 0 {
		name := contracts.TicketQueue(q.Name)
		if err := m.cfg.Publisher.PublishDelayed(ctx, name, out.retries...); err != nil {
			fail(out.retryCalls, fmt.Errorf("sending %d tickets to retry: %w", len(out.retries), err))
		} else {
			m.cfg.Metrics.Requeues.WithLabelValues(name, "no_match").Add(float64(len(out.retries)))
		}
	}
}

func fail(calls []*ticketCall, err error) {
	for _, c := range calls {
		if c.err == nil {
			c.err = err
		}
	}
}

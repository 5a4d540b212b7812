package matcher

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Batches (Config.Batch).
//
// A consumer runs many Handle calls at once. Were each to search the pool
// on its own, all of them would pick the same best candidate, one would
// win the claim and the others would search again, and two fresh tickets
// that would suit each other would both miss, join the pool and go through
// the retry queue; and every step would be a round trip of its own.
// Instead, Handle calls are combined: the first one leads, handles every
// call waiting at that moment as one batch, then hands the lead to a call
// that arrived meanwhile and publishes its batch's results while the next
// batch runs. Within a batch, tickets search in the order they were
// created, against the pool and the rest of the batch, so a batch of fresh
// tickets pairs up at once; the store calls of each step go out together,
// its matches in one confirmed publish and its misses in one retry
// publish. Every call still answers for its own message, so
// acknowledgement stays per message and after the effect is durable.

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
	c.done = make(chan bool, 1)
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

	// The store's part of the batch is done before the next batch starts,
	// so that it sees this one's claims; the publishes wait for RabbitMQ's
	// confirms, which the next batch need not wait for.
	publish := m.handleBatch(ctx, batch)

	b.mu.Lock()
	if len(b.waiting) == 0 {
		b.leading = false
		b.mu.Unlock()
	} else {
		next := b.waiting[0]
		b.mu.Unlock()
		next.done <- true
	}

	publish()
	for _, o := range batch {
		if o != c {
			o.done <- false
		}
	}
	return c.err
}

// handleBatch does the store's part of handling calls, a queue at a time,
// and answers what remains: the publishes, after which each call's err is
// its outcome.
func (m *Matcher) handleBatch(ctx context.Context, calls []*ticketCall) (publish func()) {
	if len(calls) == 1 {
		q, _ := m.cfg.Queues.Get(calls[0].msg.Ticket.Queue) // Handle checked it
		return m.handleQueue(ctx, &q, calls)
	}
	var order []string
	byQueue := make(map[string][]*ticketCall)
	for _, c := range calls {
		name := c.msg.Ticket.Queue
		if _, ok := byQueue[name]; !ok {
			order = append(order, name)
		}
		byQueue[name] = append(byQueue[name], c)
	}
	var publishes []func()
	for _, name := range order {
		q, _ := m.cfg.Queues.Get(name) // Handle checked it
		publishes = append(publishes, m.handleQueue(ctx, &q, byQueue[name]))
	}
	return func() {
		for _, p := range publishes {
			p()
		}
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

// each runs fn(0), ..., fn(n-1): at once when batching (Config.Batch), so
// that the store's round trips share pipelines (see redisstore's pipe)
// instead of following one another; one after the other otherwise.
func (m *Matcher) each(n int, fn func(i int)) {
	if n == 1 || !m.cfg.Batch {
		for i := range n {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { fn(i) })
	}
	wg.Wait()
}

// handleQueue does the store's part for the calls of one queue, in four
// steps, each a round of store calls made at once: read what the messages
// cannot be trusted to carry; read the pool near every ticket; claim the
// matches chosen from those candidates and the batch itself, oldest ticket
// first; and put the rest in the pool and look once more. It answers the
// publishes that remain: the matches, and the retries of the tickets still
// unmatched.
func (m *Matcher) handleQueue(ctx context.Context, q *queues.Queue, calls []*ticketCall) (publish func()) {
	live := m.searchers(ctx, q, calls)
	if len(live) == 0 {
		return func() {}
	}
	byID := make(map[string]*searcher, len(live))
	for _, s := range live {
		byID[s.ticket.ID] = s
	}
	var out outcome
	// apply records a search's result for self and for every ticket of
	// the batch its match took.
	apply := func(self *searcher, f found) {
		if f.err != nil {
			self.call.err = f.err
			self.settled = true
			return
		}
		self.settled = self.settled || f.settled
		if f.match == nil {
			return
		}
		out.matches = append(out.matches, formed{f.match, f.entries})
		for _, e := range f.entries {
			if s, ok := byID[e.TicketID]; ok {
				s.settled = true
				out.matchCalls = append(out.matchCalls, s.call)
			}
		}
	}

	// The pool near every ticket.
	now := m.cfg.Now()
	limit := m.candidateLimit(q)
	pools := make([][]store.PoolEntry, len(live))
	m.each(len(live), func(i int) {
		var err error
		pools[i], err = m.cfg.Store.Candidates(ctx, q.Name, live[i].entry.Skill, q.Skill.Max, limit)
		if err != nil {
			live[i].call.err = fmt.Errorf("searching the %s pool: %w", q.Name, err)
			live[i].settled = true
		}
	})

	// Choose matches, the longest-waiting ticket first, among its pool
	// candidates and the rest of the batch, then claim them all at once.
	type proposal struct {
		self    *searcher
		region  string
		entries []store.PoolEntry
		teams   [][]int
		members []*searcher // of the batch, self included
		found   found
	}
	var (
		proposals []*proposal
		taken     = make(map[string]bool)
		retry     []*searcher // lost a claim: search again on their own
	)
	near := newNeighbours(live, q.Skill.Max, limit)
	for i, s := range live {
		if s.settled {
			continue
		}
		cands := make([]store.PoolEntry, 0, len(pools[i])+len(live))
		for _, c := range pools[i] {
			if !taken[c.TicketID] {
				cands = append(cands, c)
			}
		}
		cands = withExtra(cands, near.of(s))
		entries, region, teams, ok := findMatch(q, s.entry, cands, nil, now)
		if !ok {
			continue
		}
		p := &proposal{self: s, region: region, entries: entries, teams: teams}
		for _, e := range entries {
			taken[e.TicketID] = true
			if o, ok := byID[e.TicketID]; ok {
				o.settled = true
				p.members = append(p.members, o)
			}
		}
		proposals = append(proposals, p)
	}
	m.each(len(proposals), func(i int) {
		p := proposals[i]
		match, err := m.formMatch(ctx, q, p.region, now, p.entries, p.teams)
		p.found = found{match: &match, entries: p.entries, settled: true, err: err}
	})
	for _, p := range proposals {
		var conflict *store.ConflictError
		switch err := p.found.err; {
		case err == nil:
			apply(p.self, p.found)
		case errors.As(err, &conflict):
			// Someone else's claim or cancel came first. The ticket
			// that blocked it is no longer searching; the others are.
			for _, o := range p.members {
				if o.ticket.ID == conflict.TicketID {
					continue
				}
				o.settled = false
				retry = append(retry, o)
			}
		default:
			for _, o := range p.members {
				o.call.err = err
			}
		}
	}
	for _, s := range retry {
		if s.settled {
			continue
		}
		apply(s, m.search(ctx, q, s.entry, near.of(s), now))
	}

	// The misses join the pool, then look once more: a ticket that joined
	// while we searched (another matcher's) may have missed us too, and
	// one of the two of us now sees the other, so neither waits a full
	// retry delay for nothing.
	var missed []*searcher
	for _, s := range live {
		if !s.settled {
			missed = append(missed, s)
		}
	}
	added := make([]bool, len(missed))
	m.each(len(missed), func(i int) {
		s := missed[i]
		in, err := m.cfg.Store.AddToPool(ctx, q.Name, s.entry)
		if err != nil {
			s.call.err = fmt.Errorf("adding ticket %s to the pool: %w", s.ticket.ID, err)
		}
		added[i] = in && err == nil
	})
	results := make([]found, len(missed))
	m.each(len(missed), func(i int) {
		if !added[i] {
			results[i].settled = true // cancelled or matched meanwhile, or failed
			return
		}
		results[i] = m.search(ctx, q, missed[i].entry, nil, m.cfg.Now())
	})
	for i, s := range missed {
		apply(s, results[i])
	}
	for _, s := range missed {
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

	return func() { m.publish(ctx, q, &out, now) }
}

// searchers reads the tickets of calls that are still searching, expires
// those past their max wait, and answers the rest, oldest first. Calls
// with nothing left to do keep their outcome in err.
func (m *Matcher) searchers(ctx context.Context, q *queues.Queue, calls []*ticketCall) []*searcher {
	// Two messages of one ticket (a redelivery beside a retry): the first
	// one's outcome covers both.
	unique := calls
	if len(calls) > 1 {
		seen := make(map[string]bool, len(calls))
		unique = make([]*ticketCall, 0, len(calls))
		for _, c := range calls {
			if !seen[c.msg.Ticket.ID] {
				seen[c.msg.Ticket.ID] = true
				unique = append(unique, c)
			}
		}
	}
	tickets := make([]contracts.Ticket, len(unique))
	searching := make([]bool, len(unique))
	m.each(len(unique), func(i int) { tickets[i], searching[i] = m.current(ctx, unique[i]) })

	var live []*searcher
	for i, c := range unique {
		if !searching[i] {
			continue
		}
		t := tickets[i]
		now := m.cfg.Now()
		if now.Sub(t.CreatedAt) >= q.MaxWait {
			if _, err := m.cfg.Store.ExpireTicket(ctx, t.ID, now); err != nil {
				c.err = fmt.Errorf("expiring ticket %s: %w", t.ID, err)
				continue
			}
			m.cfg.Metrics.TicketsFinished.WithLabelValues(q.Name, string(contracts.StatusExpired)).Inc()
			continue
		}
		live = append(live, &searcher{call: c, ticket: t, entry: poolEntry(q, &t)})
	}
	// The longest-waiting ticket has priority.
	slices.SortStableFunc(live, func(a, b *searcher) int { return a.ticket.CreatedAt.Compare(b.ticket.CreatedAt) })
	return live
}

// neighbours finds, for a ticket of the batch, the other tickets of the
// batch still searching that are nearest in skill, as many on each side as
// a pool search reads, so that a big batch costs each search no more than
// the pool does.
type neighbours struct {
	bySkill []*searcher
	at      map[*searcher]int
	maxGap  float64
	limit   int
}

func newNeighbours(live []*searcher, maxGap float64, limit int) *neighbours {
	if len(live) == 1 {
		return &neighbours{} // nobody else: of answers none
	}
	n := &neighbours{bySkill: slices.Clone(live), at: make(map[*searcher]int, len(live)), maxGap: maxGap, limit: limit}
	slices.SortStableFunc(n.bySkill, func(a, b *searcher) int { return cmp.Compare(a.entry.Skill, b.entry.Skill) })
	for i, s := range n.bySkill {
		n.at[s] = i
	}
	return n
}

// of lists the neighbours of s that are still searching.
func (n *neighbours) of(s *searcher) []store.PoolEntry {
	var out []store.PoolEntry
	k := n.at[s]
	for _, step := range []int{-1, 1} {
		taken := 0
		for i := k + step; i >= 0 && i < len(n.bySkill) && taken < n.limit; i += step {
			o := n.bySkill[i]
			if math.Abs(o.entry.Skill-s.entry.Skill) > n.maxGap {
				break
			}
			if !o.settled {
				out = append(out, o.entry)
				taken++
			}
		}
	}
	return out
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

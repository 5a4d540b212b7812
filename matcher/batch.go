package matcher

import (
	"cmp"
	"context"
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
// Instead, Handle calls are combined (internal/combine): the first one
// leads, handles the tickets of every call waiting at that moment as one
// batch, then hands the lead to a call that arrived meanwhile and
// publishes its batch's results while the next batch runs. Within a batch, tickets search in the order they were
// created, against the pool and the rest of the batch, so a batch of fresh
// tickets pairs up at once; the store calls of each step go out together,
// its matches in one confirmed publish and its misses in one retry
// publish. Every call still answers for its own message, acknowledged
// after the effect of each of its tickets is durable.

// ticketCall is one ticket of a Handle call, waiting for its batch.
type ticketCall struct {
	msg         contracts.TicketTry
	redelivered bool
	err         error
	// unpublished: the ticket is in a match this call's batch claimed and
	// could not publish. Only a redelivery of its message publishes that
	// match again (see current), so the failure must not go through the
	// retry queue.
	unpublished bool
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
	retries    []contracts.TicketTry
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

// handleQueue does the store's part for the calls of one queue, in rounds
// of store calls made at once (see round). It answers the publishes that
// remain: the matches, and the retries of the tickets still unmatched.
func (m *Matcher) handleQueue(ctx context.Context, q *queues.Queue, calls []*ticketCall) (publish func()) {
	live := m.searchers(ctx, q, calls)
	if len(live) == 0 {
		return func() {}
	}
	r := m.newRound(q, live)
	r.backfill(ctx)
	r.claim(ctx, r.propose(r.readPools(ctx)))
	r.research(ctx)
	r.pool(ctx)
	r.retry()
	return func() { m.publish(ctx, q, &r.out, r.now) }
}

// round is the store's part of one queue's tickets of a batch. Its steps,
// each a round of store calls made at once: read the pool near every
// ticket; claim the matches chosen from those candidates and the batch
// itself, oldest ticket first; search again, one by one, for the tickets
// whose claim another matcher or a cancel beat; put the rest in the pool
// and look once more; and send what is left to retry.
type round struct {
	m     *Matcher
	q     *queues.Queue
	now   time.Time
	limit int // pool entries read on each side of a ticket's skill
	live  []*searcher
	byID  map[string]*searcher
	near  *neighbours
	// again holds the tickets that lost a claim, to search once more.
	again []*searcher
	out   outcome
}

func (m *Matcher) newRound(q *queues.Queue, live []*searcher) *round {
	r := &round{m: m, q: q, now: m.cfg.Now(), limit: m.candidateLimit(q), live: live,
		byID: make(map[string]*searcher, len(live))}
	for _, s := range live {
		r.byID[s.ticket.ID] = s
	}
	r.near = newNeighbours(live, q.Skill.Max, r.limit)
	return r
}

// readPools reads the pool near every ticket.
func (r *round) readPools(ctx context.Context) [][]store.PoolEntry {
	pools := make([][]store.PoolEntry, len(r.live))
	r.m.each(len(r.live), func(i int) {
		s := r.live[i]
		var err error
		pools[i], err = r.m.cfg.Store.Candidates(ctx, r.q.Name, s.entry.Skill, r.q.Skill.Max, r.limit)
		if err != nil {
			r.failed(s, fmt.Errorf("searching the %s pool: %w", r.q.Name, err))
		}
	})
	return pools
}

// proposal is a match chosen for self, not yet claimed.
type proposal struct {
	self    *searcher
	pick    pick
	members []*searcher // of the batch, self included
	found   found
	lost    string
}

// propose chooses matches, the longest-waiting ticket first, among its
// pool candidates and the rest of the batch, each entry in one proposal at
// most.
func (r *round) propose(pools [][]store.PoolEntry) []*proposal {
	var proposals []*proposal
	taken := make(map[string]bool)
	for i, s := range r.live {
		if s.settled {
			continue
		}
		cands := make([]store.PoolEntry, 0, len(pools[i])+len(r.live))
		for _, c := range pools[i] {
			if !taken[c.TicketID] {
				cands = append(cands, c)
			}
		}
		pk, ok := choose(r.q, s.entry, withExtra(cands, r.near.of(s)), nil, r.now)
		if !ok {
			continue
		}
		p := &proposal{self: s, pick: pk}
		for _, e := range pk.entries {
			taken[e.TicketID] = true
			if o, ok := r.byID[e.TicketID]; ok {
				o.settled = true
				p.members = append(p.members, o)
			}
		}
		proposals = append(proposals, p)
	}
	return proposals
}

// claim claims the proposals at once. The members of a proposal that lost
// to another matcher's claim or a cancel search again, but for the ticket
// that was taken.
func (r *round) claim(ctx context.Context, proposals []*proposal) {
	r.m.each(len(proposals), func(i int) {
		p := proposals[i]
		p.found, p.lost = r.m.claim(ctx, r.q, p.self.entry, p.pick, r.now)
	})
	for _, p := range proposals {
		switch {
		case p.found.err != nil:
			for _, o := range p.members {
				r.failed(o, p.found.err)
			}
		case p.found.match != nil:
			r.apply(p.self, p.found)
		default:
			for _, o := range p.members {
				if o == p.self && p.lost == "" {
					continue // self was taken: settled
				}
				if o.ticket.ID != p.lost {
					o.settled = false
					r.again = append(r.again, o)
				}
			}
		}
	}
}

// research searches again for the tickets that lost a claim, one after
// another, so that they do not race each other for the same candidates.
func (r *round) research(ctx context.Context) {
	for _, s := range r.again {
		if !s.settled {
			r.apply(s, r.m.search(ctx, r.q, s.entry, r.near.of(s), r.now))
		}
	}
}

// pool puts the tickets still unmatched in the pool, then looks once more:
// a ticket that joined while we searched (another matcher's) may have
// missed us too, and one of the two of us now sees the other, so neither
// waits a full retry delay for nothing.
func (r *round) pool(ctx context.Context) {
	var missed []*searcher
	for _, s := range r.live {
		if !s.settled {
			missed = append(missed, s)
		}
	}
	added := make([]bool, len(missed))
	r.m.each(len(missed), func(i int) {
		s := missed[i]
		in, err := r.m.cfg.Store.AddToPool(ctx, r.q.Name, s.entry)
		if err != nil {
			r.failed(s, fmt.Errorf("adding ticket %s to the pool: %w", s.ticket.ID, err))
		}
		added[i] = in && err == nil
	})
	results := make([]found, len(missed))
	r.m.each(len(missed), func(i int) {
		if !added[i] {
			results[i].settled = true // cancelled or matched meanwhile, or failed
			return
		}
		results[i] = r.m.search(ctx, r.q, missed[i].entry, nil, r.m.cfg.Now())
	})
	for i, s := range missed {
		r.apply(s, results[i])
	}
}

// retry sends the tickets still unmatched to the retry queue, each with
// its next attempt.
func (r *round) retry() {
	for _, s := range r.live {
		if !s.settled {
			r.out.retries = append(r.out.retries, contracts.TicketTry{Ticket: s.ticket, Attempt: s.call.msg.Attempt + 1})
			r.out.retryCalls = append(r.out.retryCalls, s.call)
		}
	}
}

// apply records a search's result for self and for every ticket of the
// batch its match took.
func (r *round) apply(self *searcher, f found) {
	if f.err != nil {
		r.failed(self, f.err)
		return
	}
	self.settled = self.settled || f.settled
	if f.match == nil {
		return
	}
	r.out.matches = append(r.out.matches, formed{f.match, f.entries})
	for _, e := range f.entries {
		if s, ok := r.byID[e.TicketID]; ok {
			s.settled = true
			r.out.matchCalls = append(r.out.matchCalls, s.call)
		}
	}
}

// failed ends s's part in the round with err, its message's outcome.
func (r *round) failed(s *searcher, err error) {
	s.call.err = err
	s.settled = true
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
// publish (the retries as few messages as MaxTicketsPerMessage allows), and
// fails the calls that waited for a publish that failed. A match that asks
// its players to accept stays in the store until they answer: whoever
// records the last acceptance sends it (front.API.acceptTicket).
func (m *Matcher) publish(ctx context.Context, q *queues.Queue, out *outcome, now time.Time) {
	bodies := make([][]byte, 0, len(out.matches))
	for _, f := range out.matches {
		if !f.match.AcceptDeadline.IsZero() {
			continue
		}
		body, err := contracts.EncodeMatchMessage(*f.match, 0)
		if err != nil {
			failUnpublished(out.matchCalls, err)
			bodies = nil
			break
		}
		bodies = append(bodies, body)
	}
	if len(out.matches) > 0 {
		var err error
		if len(bodies) > 0 {
			err = m.cfg.Publisher.Publish(ctx, contracts.MatchQueue, bodies...)
		}
		if err != nil {
			failUnpublished(out.matchCalls, fmt.Errorf("publishing %d matches: %w", len(bodies), err))
		} else {
			for _, f := range out.matches {
				m.cfg.Metrics.MatchesFormed.WithLabelValues(q.Name, m.cfg.Metrics.Region(f.match.Region)).Inc()
				for _, e := range f.entries {
					m.cfg.Metrics.WaitSeconds.WithLabelValues(q.Name).Observe(now.Sub(e.CreatedAt).Seconds())
				}
			}
		}
	}
	if len(out.retries) > 0 {
		name := contracts.TicketQueue(q.Name)
		bodies, err := encodeTickets(out.retries)
		if err == nil {
			err = m.cfg.Publisher.PublishDelayed(ctx, name, bodies...)
		}
		if err != nil {
			fail(out.retryCalls, fmt.Errorf("sending %d tickets to retry: %w", len(out.retries), err))
		} else {
			m.cfg.Metrics.Requeues.WithLabelValues(name, "no_match").Add(float64(len(out.retries)))
		}
	}
}

// encodeTickets encodes tries in as few ticket messages as they fit.
func encodeTickets(tries []contracts.TicketTry) ([][]byte, error) {
	bodies := make([][]byte, 0, (len(tries)+contracts.MaxTicketsPerMessage-1)/contracts.MaxTicketsPerMessage)
	for chunk := range slices.Chunk(tries, contracts.MaxTicketsPerMessage) {
		body, err := contracts.EncodeTicketMessage(chunk...)
		if err != nil {
			return nil, err
		}
		bodies = append(bodies, body)
	}
	return bodies, nil
}

// failUnpublished fails the calls of a batch's matches, claimed in the
// store but not published.
func failUnpublished(calls []*ticketCall, err error) {
	fail(calls, err)
	for _, c := range calls {
		c.unpublished = true
	}
}

func fail(calls []*ticketCall, err error) {
	for _, c := range calls {
		if c.err == nil {
			c.err = err
		}
	}
}

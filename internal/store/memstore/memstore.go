// Package memstore is the in-memory store.Store of the embedded mode: one
// process, one mutex, every guarantee of the interface kept by doing each
// operation whole while holding it.
package memstore

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// DefaultRetention is how long terminal records are kept when
// Options.Retention is not set.
const DefaultRetention = time.Hour

// Options configures a Store.
type Options struct {
	// Retention is how long terminal tickets, and failed or ended matches,
	// are kept before ExpireDue purges them. Zero means DefaultRetention.
	Retention time.Duration
}

// Store is an in-memory store.Store. Its zero value is not usable; call New.
type Store struct {
	retention time.Duration

	mu        sync.Mutex
	tickets   map[string]*ticketRec
	players   map[string]string // player id → id of their live ticket
	pools     map[string]*pool
	expiries  expiryHeap
	matches   map[string]*matchRec
	servers   map[string]*serverRec
	retired   []retiredRec
	listeners map[*listener]struct{}
	// unannounced holds the searching tickets no matcher has taken up,
	// with when each was created or last returned by Unannounced.
	unannounced map[string]time.Time
	// keys holds the idempotency keys of creates, by queue and key.
	keys map[idemName]idemRec
	// keyOrder lists the keys in the order they were stored, which is
	// nearly the order they are forgotten in, for purge.
	keyOrder []idemName
	// waiting holds the matches waiting for a server, with when each is
	// due for OverdueMatches.
	waiting map[string]time.Time
	// accepting holds the matches waiting for their tickets' answers,
	// with their acceptance deadlines.
	accepting map[string]time.Time
	// backfills holds the open backfill requests by match id.
	backfills map[string]*contracts.Backfill
}

type idemName struct{ queue, key string }

// idemRec is what a create under an idempotency key left: its ticket and
// fingerprint, and when the key is forgotten.
type idemRec struct {
	ticket, fingerprint string
	until               time.Time
}

var _ store.Store = (*Store)(nil)

type ticketRec struct {
	t         contracts.Ticket
	expiresAt time.Time
	// pooled is the ticket's pool entry and queue when it is in a pool.
	pooled    bool
	poolQueue string
	entry     store.PoolEntry
}

type matchState uint8

const (
	matchClaimed matchState = iota
	matchAssigned
	matchFailed
	matchEnded
	// matchAccepting: claimed with an acceptance deadline, waiting for
	// every ticket to accept.
	matchAccepting
	// matchDissolved: declined or timed out before every ticket accepted.
	matchDissolved
)

type matchRec struct {
	m          contracts.Match
	state      matchState
	assignment contracts.Assignment
	// claimedAt is when a match asking for acceptance was claimed, which
	// its tickets' expiries are pushed back by should it fall through.
	claimedAt time.Time
}

type serverRec struct {
	s           contracts.Server
	allocations []contracts.Allocation // in the order they were made
}

// retiredRec marks a record that became terminal at at, to purge once the
// retention has passed.
type retiredRec struct {
	at      time.Time
	ticket  string
	match   string
	isMatch bool
}

// New returns an empty store.
func New(opts Options) *Store {
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	return &Store{
		retention: opts.Retention,
		tickets:   map[string]*ticketRec{},
		players:   map[string]string{},
		pools:     map[string]*pool{},
		matches:   map[string]*matchRec{},
		servers:   map[string]*serverRec{},
		listeners: map[*listener]struct{}{},

		unannounced: map[string]time.Time{},
		keys:        map[idemName]idemRec{},
		waiting:     map[string]time.Time{},
		accepting:   map[string]time.Time{},
		backfills:   map[string]*contracts.Backfill{},
	}
}

// CreateTicket implements store.Store.
func (s *Store) CreateTicket(ctx context.Context, t contracts.Ticket, expiresAt time.Time) error {
	return s.CreateTicketOnce(ctx, t, expiresAt, store.Idempotency{})
}

// CreateTicketOnce implements store.Store. The key lives for the retention
// from the ticket's creation.
func (s *Store) CreateTicketOnce(ctx context.Context, t contracts.Ticket, expiresAt time.Time, idem store.Idempotency) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := idemName{queue: t.Queue, key: idem.Key}
	if idem.Key != "" {
		prev, ok := s.keys[name]
		if _, live := s.tickets[prev.ticket]; ok && live && t.CreatedAt.Before(prev.until) {
			return &store.ReplayError{TicketID: prev.ticket, Mismatch: prev.fingerprint != idem.Fingerprint}
		}
	}
	if old, ok := s.tickets[t.ID]; ok {
		return fmt.Errorf("create ticket %s: already stored: %w", t.ID, &store.ConflictError{TicketID: t.ID, Status: old.t.Status})
	}
	for _, p := range t.Players {
		if holder, ok := s.players[p.ID]; ok {
			return &store.PlayerBusyError{PlayerID: p.ID, TicketID: holder}
		}
	}
	rec := &ticketRec{t: cloneTicket(t), expiresAt: expiresAt}
	s.tickets[t.ID] = rec
	for _, p := range t.Players {
		s.players[p.ID] = t.ID
	}
	heap.Push(&s.expiries, expiry{at: expiresAt, id: t.ID})
	s.unannounced[t.ID] = t.CreatedAt
	if idem.Key != "" {
		s.keys[name] = idemRec{ticket: t.ID, fingerprint: idem.Fingerprint, until: t.CreatedAt.Add(s.retention)}
		s.keyOrder = append(s.keyOrder, name)
	}
	s.notify(store.Change{Kind: store.ChangeTicket, ID: t.ID, Version: t.Version})
	return nil
}

// Unannounced implements store.Store.
func (s *Store) Unannounced(ctx context.Context, before, now time.Time, limit int) ([]contracts.Ticket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []contracts.Ticket
	for id, at := range s.unannounced {
		if len(out) >= limit {
			break
		}
		if at.After(before) {
			continue
		}
		rec, ok := s.tickets[id]
		if !ok || rec.t.Status != contracts.StatusSearching {
			delete(s.unannounced, id)
			continue
		}
		s.unannounced[id] = now
		out = append(out, cloneTicket(rec.t))
	}
	return out, nil
}

// ReleaseStale implements store.Store: every change here releases its
// players in the same step, so nothing is ever left to finish.
func (s *Store) ReleaseStale(ctx context.Context, limit int) (int, error) {
	return 0, nil
}

// DeleteTicket implements store.Store.
func (s *Store) DeleteTicket(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.tickets[id]
	if !ok {
		return nil
	}
	if rec.t.Status != contracts.StatusSearching {
		return fmt.Errorf("deleting ticket %s: %w", id, &store.ConflictError{TicketID: id, Status: rec.t.Status})
	}
	s.unpool(rec)
	s.release(rec)
	// The expiry left in the heap is dropped when it comes due: it no
	// longer points at a stored ticket.
	delete(s.tickets, id)
	delete(s.unannounced, id)
	s.notify(store.Change{Kind: store.ChangeTicket, ID: id, Version: rec.t.Version})
	return nil
}

// Ticket implements store.Store.
func (s *Store) Ticket(ctx context.Context, id string) (contracts.Ticket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.tickets[id]
	if !ok {
		return contracts.Ticket{}, fmt.Errorf("get ticket %s: %w", id, store.ErrNotFound)
	}
	return cloneTicket(rec.t), nil
}

// WatchTicket implements store.Store: every listener hears every change
// in memory.
func (s *Store) WatchTicket(ctx context.Context, id string) (contracts.Ticket, error) {
	return s.Ticket(ctx, id)
}

// CancelTicket implements store.Store.
func (s *Store) CancelTicket(ctx context.Context, id string, now time.Time) (contracts.Ticket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.tickets[id]
	if !ok {
		return contracts.Ticket{}, fmt.Errorf("cancel ticket %s: %w", id, store.ErrNotFound)
	}
	switch rec.t.Status {
	case contracts.StatusCancelled:
		return cloneTicket(rec.t), nil
	case contracts.StatusSearching:
	default:
		return cloneTicket(rec.t), &store.ConflictError{TicketID: id, Status: rec.t.Status}
	}
	s.finish(rec, contracts.StatusCancelled, now)
	return cloneTicket(rec.t), nil
}

// ExpireTicket implements store.Store.
func (s *Store) ExpireTicket(ctx context.Context, id string, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.tickets[id]
	if !ok || rec.t.Status != contracts.StatusSearching {
		return false, nil
	}
	s.finish(rec, contracts.StatusExpired, now)
	return true, nil
}

// ExpireDue implements store.Store. Expiries are kept in a heap ordered by
// time; those of tickets that are gone or no longer searching are dropped as
// they come due, which is when the interface lets them be forgotten.
func (s *Store) ExpireDue(ctx context.Context, now time.Time, limit int) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var expired []string
	for len(s.expiries) > 0 && len(expired) < limit && !s.expiries[0].at.After(now) {
		e := heap.Pop(&s.expiries).(expiry)
		rec, ok := s.tickets[e.id]
		if !ok || rec.t.Status != contracts.StatusSearching || !rec.expiresAt.Equal(e.at) {
			continue
		}
		s.finish(rec, contracts.StatusExpired, now)
		expired = append(expired, e.id)
	}
	s.purge(now)
	return expired, nil
}

// finish moves a searching ticket to a terminal status: out of the pool,
// its players released, kept for the retention.
func (s *Store) finish(rec *ticketRec, status contracts.Status, now time.Time) {
	rec.t.Status = status
	s.unpool(rec)
	s.release(rec)
	delete(s.unannounced, rec.t.ID)
	s.retired = append(s.retired, retiredRec{at: now, ticket: rec.t.ID})
	s.bump(rec, now)
}

// release frees the players of rec that it still holds.
func (s *Store) release(rec *ticketRec) {
	for _, p := range rec.t.Players {
		if s.players[p.ID] == rec.t.ID {
			delete(s.players, p.ID)
		}
	}
}

// purge forgets terminal tickets, and failed or ended matches, retired more
// than the retention before now. Records retire in roughly the order of
// their times, so purging stops at the first one still young; one retired
// out of order only waits for those before it.
func (s *Store) purge(now time.Time) {
	cutoff := now.Add(-s.retention)
	n := 0
	for ; n < len(s.retired); n++ {
		r := s.retired[n]
		if r.at.After(cutoff) {
			break
		}
		if r.isMatch {
			if m, ok := s.matches[r.match]; ok && (m.state == matchFailed || m.state == matchEnded || m.state == matchDissolved) {
				delete(s.matches, r.match)
			}
			continue
		}
		if t, ok := s.tickets[r.ticket]; ok && t.t.Status.Terminal() {
			delete(s.tickets, r.ticket)
		}
	}
	if n > 0 {
		s.retired = slices.Delete(s.retired, 0, n)
	}
	for len(s.keyOrder) > 0 {
		name := s.keyOrder[0]
		if k, ok := s.keys[name]; ok {
			if k.until.After(now) {
				break
			}
			delete(s.keys, name)
		}
		s.keyOrder = s.keyOrder[1:]
	}
	// Servers that stopped heartbeating long ago and host nothing are gone
	// for good; dropping them keeps a churning fleet from growing the map.
	for id, srv := range s.servers {
		if len(srv.allocations) == 0 && !srv.s.ExpiresAt.After(cutoff) {
			delete(s.servers, id)
		}
	}
}

// AddToPool implements store.Store.
func (s *Store) AddToPool(ctx context.Context, queue string, e store.PoolEntry) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.tickets[e.TicketID]
	if !ok || rec.t.Status != contracts.StatusSearching {
		return false, nil
	}
	s.unpool(rec)
	e = cloneEntry(e)
	p := s.pools[queue]
	if p == nil {
		p = &pool{}
		s.pools[queue] = p
	}
	p.insert(e)
	rec.pooled, rec.poolQueue, rec.entry = true, queue, e
	delete(s.unannounced, e.TicketID)
	return true, nil
}

func (s *Store) unpool(rec *ticketRec) {
	if !rec.pooled {
		return
	}
	if p := s.pools[rec.poolQueue]; p != nil {
		p.remove(rec.entry)
		if len(p.entries) == 0 {
			delete(s.pools, rec.poolQueue)
		}
	}
	rec.pooled, rec.poolQueue, rec.entry = false, "", store.PoolEntry{}
}

// Candidates implements store.Store.
func (s *Store) Candidates(ctx context.Context, queue string, skill, maxGap float64, limit int) ([]store.PoolEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pools[queue]
	if p == nil || limit <= 0 {
		return nil, nil
	}
	found := p.nearest(skill, maxGap, limit)
	for i := range found {
		found[i] = cloneEntry(found[i])
	}
	return found, nil
}

// ClaimMatch implements store.Store.
func (s *Store) ClaimMatch(ctx context.Context, m contracts.Match, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.matches[m.ID]; ok {
		return nil
	}
	recs := make([]*ticketRec, len(m.TicketIDs))
	for i, id := range m.TicketIDs {
		rec, ok := s.tickets[id]
		if !ok {
			return &store.ConflictError{TicketID: id}
		}
		if rec.t.Status != contracts.StatusSearching {
			return &store.ConflictError{TicketID: id, Status: rec.t.Status}
		}
		recs[i] = rec
	}
	m = cloneMatch(m)
	mrec := &matchRec{m: m}
	s.matches[m.ID] = mrec
	status := contracts.StatusMatched
	if m.AcceptDeadline.IsZero() {
		s.waiting[m.ID] = m.AssignDeadline
	} else {
		mrec.state, mrec.claimedAt = matchAccepting, now
		s.accepting[m.ID] = m.AcceptDeadline
		status = contracts.StatusPendingAcceptance
	}
	for _, rec := range recs {
		if rec.t.Status != contracts.StatusSearching {
			continue // listed twice in m.TicketIDs
		}
		rec.t.Status = status
		rec.t.Version++
		rec.t.UpdatedAt = now
		rec.t.Match = cloneRef(m.Ref())
		if status == contracts.StatusPendingAcceptance {
			rec.t.Acceptance = &contracts.Acceptance{Deadline: m.AcceptDeadline}
		}
		s.unpool(rec)
		delete(s.unannounced, rec.t.ID)
		s.notify(store.Change{Kind: store.ChangeTicket, ID: rec.t.ID, Version: rec.t.Version})
	}
	return nil
}

// AnswerMatch implements store.Store.
func (s *Store) AnswerMatch(ctx context.Context, id string, accept bool, now time.Time) (store.Answer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.tickets[id]
	if !ok {
		return store.Answer{}, fmt.Errorf("answering for ticket %s: %w", id, store.ErrNotFound)
	}
	var mrec *matchRec
	if rec.t.Match != nil {
		mrec = s.matches[rec.t.Match.ID]
	}
	conflict := func() (store.Answer, error) {
		return store.Answer{Ticket: cloneTicket(rec.t)}, fmt.Errorf("answering for ticket %s: %w", id,
			&store.ConflictError{TicketID: id, Status: rec.t.Status})
	}
	switch {
	case !accept && rec.t.Status == contracts.StatusCancelled && rec.t.Reason == contracts.ReasonDeclined:
		return store.Answer{Ticket: cloneTicket(rec.t)}, nil
	case accept && (rec.t.Status == contracts.StatusMatched || rec.t.Status == contracts.StatusAssigned) &&
		mrec != nil && !mrec.m.AcceptDeadline.IsZero():
		// Accepted before: the match waits for a server still
		// (matchClaimed), or has one.
		a := store.Answer{Ticket: cloneTicket(rec.t)}
		if mrec.state == matchClaimed {
			m := cloneMatch(mrec.m)
			a.Ready = &m
		}
		return a, nil
	case rec.t.Status != contracts.StatusPendingAcceptance || mrec == nil || mrec.state != matchAccepting:
		return conflict()
	}
	if !accept {
		requeued := s.dissolve(mrec, func(t *ticketRec) bool { return t == rec }, contracts.ReasonDeclined, now)
		return store.Answer{Ticket: cloneTicket(rec.t), Requeued: requeued}, nil
	}
	if !rec.t.Acceptance.Accepted {
		rec.t.Acceptance.Accepted = true
		s.bump(rec, now)
	}
	a := store.Answer{Ticket: cloneTicket(rec.t)}
	recs := s.matchTickets(mrec)
	for _, t := range recs {
		if t.t.Status != contracts.StatusPendingAcceptance || !t.t.Acceptance.Accepted {
			return a, nil
		}
	}
	mrec.state = matchClaimed
	delete(s.accepting, mrec.m.ID)
	s.waiting[mrec.m.ID] = mrec.m.AssignDeadline
	for _, t := range recs {
		t.t.Status, t.t.Acceptance = contracts.StatusMatched, nil
		s.bump(t, now)
	}
	m := cloneMatch(mrec.m)
	a.Ticket, a.Ready = cloneTicket(rec.t), &m
	return a, nil
}

// ExpireAcceptances implements store.Store.
func (s *Store) ExpireAcceptances(ctx context.Context, now time.Time, limit int) ([]contracts.Ticket, []string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		requeued []contracts.Ticket
		timedOut []string
	)
	for id, deadline := range s.accepting {
		if limit <= 0 {
			break
		}
		mrec, ok := s.matches[id]
		if !ok || mrec.state != matchAccepting {
			delete(s.accepting, id)
			continue
		}
		if deadline.After(now) {
			continue
		}
		limit--
		silent := func(t *ticketRec) bool {
			if !t.t.Acceptance.Accepted {
				timedOut = append(timedOut, t.t.ID)
				return true
			}
			return false
		}
		requeued = append(requeued, s.dissolve(mrec, silent, contracts.ReasonAcceptTimeout, now)...)
	}
	return requeued, timedOut, nil
}

// matchTickets answers the records of the tickets of mrec that exist.
func (s *Store) matchTickets(mrec *matchRec) []*ticketRec {
	recs := make([]*ticketRec, 0, len(mrec.m.TicketIDs))
	for _, id := range mrec.m.TicketIDs {
		if t, ok := s.tickets[id]; ok {
			recs = append(recs, t)
		}
	}
	return recs
}

// dissolve ends a match waiting for acceptance: its pending tickets for
// which out is true end cancelled with reason, and the others go back to
// searching, unannounced, their expiries pushed back by the time they
// were offered the match; dissolve answers those.
func (s *Store) dissolve(mrec *matchRec, out func(*ticketRec) bool, reason string, now time.Time) []contracts.Ticket {
	mrec.state = matchDissolved
	delete(s.accepting, mrec.m.ID)
	s.retired = append(s.retired, retiredRec{at: now, match: mrec.m.ID, isMatch: true})
	var requeued []contracts.Ticket
	for _, t := range s.matchTickets(mrec) {
		if t.t.Status != contracts.StatusPendingAcceptance {
			continue
		}
		leaves := out(t)
		t.t.Match, t.t.Acceptance = nil, nil
		if leaves {
			t.t.Reason = reason
			s.finish(t, contracts.StatusCancelled, now)
			continue
		}
		t.t.Status = contracts.StatusSearching
		t.expiresAt = t.expiresAt.Add(now.Sub(mrec.claimedAt))
		heap.Push(&s.expiries, expiry{at: t.expiresAt, id: t.t.ID})
		s.unannounced[t.t.ID] = now
		s.bump(t, now)
		requeued = append(requeued, cloneTicket(t.t))
	}
	return requeued
}

// bump records a change of rec at now and tells the listeners.
func (s *Store) bump(rec *ticketRec, now time.Time) {
	rec.t.Version++
	rec.t.UpdatedAt = now
	s.notify(store.Change{Kind: store.ChangeTicket, ID: rec.t.ID, Version: rec.t.Version})
}

// OverdueMatches implements store.Store.
func (s *Store) OverdueMatches(ctx context.Context, before, now time.Time, limit int) ([]contracts.Match, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []contracts.Match
	for id, due := range s.waiting {
		if len(out) >= limit {
			break
		}
		mrec, ok := s.matches[id]
		if !ok || mrec.state != matchClaimed {
			delete(s.waiting, id)
			continue
		}
		if due.After(before) {
			continue
		}
		s.waiting[id] = now
		out = append(out, cloneMatch(mrec.m))
	}
	return out, nil
}

// Match implements store.Store.
func (s *Store) Match(ctx context.Context, id string) (contracts.Match, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.matches[id]
	if !ok {
		return contracts.Match{}, fmt.Errorf("get match %s: %w", id, store.ErrNotFound)
	}
	return cloneMatch(rec.m), nil
}

// RegisterServer implements store.Store.
func (s *Store) RegisterServer(ctx context.Context, id string, req contracts.ServerRequest, ttl time.Duration, now time.Time) (contracts.Server, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.servers[id]
	if !ok {
		// Version 1 so that a first long-poll with after=0 answers at once.
		rec = &serverRec{s: contracts.Server{ID: id, Version: 1}}
		s.servers[id] = rec
	}
	rec.s.Address = req.Address
	rec.s.Region = req.Region
	rec.s.Capacity = req.Capacity
	rec.s.ExpiresAt = now.Add(ttl)
	return rec.s, nil
}

// DrainServer implements store.Store.
func (s *Store) DrainServer(ctx context.Context, id string) (contracts.Server, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.servers[id]
	if !ok {
		return contracts.Server{}, fmt.Errorf("drain server %s: %w", id, store.ErrNotFound)
	}
	rec.s.Draining = true
	return rec.s, nil
}

// Server implements store.Store.
func (s *Store) Server(ctx context.Context, id string) (contracts.Server, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.servers[id]
	if !ok {
		return contracts.Server{}, fmt.Errorf("get server %s: %w", id, store.ErrNotFound)
	}
	return rec.s, nil
}

// Stats implements store.Store.
func (s *Store) Stats(ctx context.Context, now time.Time) (store.Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := store.Stats{Queues: map[string]store.QueueStats{}, Regions: map[string]store.RegionStats{}}
	for _, rec := range s.tickets {
		q := st.Queues[rec.t.Queue]
		if rec.t.Status == contracts.StatusSearching {
			q.Searching++
		}
		if rec.pooled {
			q.Pooled++
		}
		st.Queues[rec.t.Queue] = q
	}
	for id := range s.waiting {
		if rec, ok := s.matches[id]; ok {
			q := st.Queues[rec.m.Queue]
			q.WaitingForServer++
			st.Queues[rec.m.Queue] = q
		}
	}
	for _, rec := range s.servers {
		st.Regions[rec.s.Region] = st.Regions[rec.s.Region].Add(rec.s, now)
	}
	return st, nil
}

// Regions implements store.Store.
func (s *Store) Regions(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool)
	var out []string
	for _, rec := range s.servers {
		if r := rec.s.Region; !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out, nil
}

// Allocations implements store.Store.
func (s *Store) Allocations(ctx context.Context, serverID string) (contracts.Allocations, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.servers[serverID]
	if !ok {
		return contracts.Allocations{}, fmt.Errorf("get allocations of server %s: %w", serverID, store.ErrNotFound)
	}
	out := contracts.Allocations{
		ServerID:    serverID,
		Version:     rec.s.Version,
		Allocations: make([]contracts.Allocation, len(rec.allocations)),
	}
	for i, a := range rec.allocations {
		out.Allocations[i] = cloneAllocation(a)
	}
	return out, nil
}

// AssignMatch implements store.Store.
func (s *Store) AssignMatch(ctx context.Context, matchID string, now time.Time) (contracts.Assignment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mrec, ok := s.matches[matchID]
	if !ok {
		return contracts.Assignment{}, fmt.Errorf("assign match %s: %w", matchID, store.ErrNotFound)
	}
	switch mrec.state {
	case matchAssigned, matchEnded:
		return mrec.assignment, nil
	case matchFailed:
		return contracts.Assignment{}, fmt.Errorf("assign match %s: already failed: %w", matchID, store.ErrConflict)
	case matchAccepting, matchDissolved:
		return contracts.Assignment{}, fmt.Errorf("assign match %s: not accepted: %w", matchID, store.ErrConflict)
	}
	srv := s.pickServer(mrec.m.Region, now)
	if srv == nil {
		return contracts.Assignment{}, fmt.Errorf("assign match %s in region %q: %w", matchID, mrec.m.Region, store.ErrNoCapacity)
	}
	a := contracts.Assignment{ServerID: srv.s.ID, Address: srv.s.Address, Region: srv.s.Region}
	mrec.state, mrec.assignment = matchAssigned, a
	delete(s.waiting, matchID)
	m := &mrec.m
	srv.allocations = append(srv.allocations, cloneAllocation(contracts.Allocation{
		MatchID:     m.ID,
		Queue:       m.Queue,
		Region:      srv.s.Region,
		Teams:       m.Teams,
		Players:     m.Players,
		TicketIDs:   m.TicketIDs,
		AllocatedAt: now,
	}))
	srv.s.Allocated++
	srv.s.Version++
	for _, id := range m.TicketIDs {
		rec, ok := s.tickets[id]
		if !ok || rec.t.Status != contracts.StatusMatched {
			continue
		}
		rec.t.Status = contracts.StatusAssigned
		rec.t.Version++
		rec.t.UpdatedAt = now
		assignment := a
		rec.t.Assignment = &assignment
		s.release(rec)
		s.retired = append(s.retired, retiredRec{at: now, ticket: id})
		s.notify(store.Change{Kind: store.ChangeTicket, ID: id, Version: rec.t.Version})
	}
	s.notify(store.Change{Kind: store.ChangeServer, ID: srv.s.ID, Version: srv.s.Version})
	return a, nil
}

// pickServer chooses by the rule of store.Store.AssignMatch. It looks at
// every server: fleets are small next to the ticket traffic.
func (s *Store) pickServer(region string, now time.Time) *serverRec {
	var best *serverRec
	bestFree := 0
	for _, rec := range s.servers {
		srv := &rec.s
		free := srv.Capacity - srv.Allocated
		if free <= 0 || srv.Draining || !now.Before(srv.ExpiresAt) || (region != "" && srv.Region != region) {
			continue
		}
		if best == nil || free > bestFree || (free == bestFree && srv.ID < best.s.ID) {
			best, bestFree = rec, free
		}
	}
	return best
}

// FailMatch implements store.Store.
func (s *Store) FailMatch(ctx context.Context, matchID, reason string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mrec, ok := s.matches[matchID]
	if !ok {
		return fmt.Errorf("fail match %s: %w", matchID, store.ErrNotFound)
	}
	switch mrec.state {
	case matchFailed:
		return nil
	case matchAssigned, matchEnded:
		return fmt.Errorf("fail match %s: already assigned: %w", matchID, store.ErrConflict)
	case matchAccepting, matchDissolved:
		return fmt.Errorf("fail match %s: not accepted: %w", matchID, store.ErrConflict)
	}
	mrec.state = matchFailed
	delete(s.waiting, matchID)
	for _, id := range mrec.m.TicketIDs {
		rec, ok := s.tickets[id]
		if !ok || rec.t.Status != contracts.StatusMatched {
			continue
		}
		rec.t.Reason = reason
		s.finish(rec, contracts.StatusFailed, now)
	}
	s.retired = append(s.retired, retiredRec{at: now, match: matchID, isMatch: true})
	return nil
}

// EndMatch implements store.Store.
func (s *Store) EndMatch(ctx context.Context, serverID, matchID string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, ok := s.servers[serverID]
	if !ok {
		return fmt.Errorf("end match %s on server %s: unknown server: %w", matchID, serverID, store.ErrNotFound)
	}
	i := slices.IndexFunc(srv.allocations, func(a contracts.Allocation) bool { return a.MatchID == matchID })
	if i < 0 {
		return fmt.Errorf("end match %s on server %s: not hosted there: %w", matchID, serverID, store.ErrNotFound)
	}
	srv.allocations = slices.Delete(srv.allocations, i, i+1)
	delete(s.backfills, matchID)
	srv.s.Allocated--
	srv.s.Version++
	if m, ok := s.matches[matchID]; ok {
		m.state = matchEnded
		s.retired = append(s.retired, retiredRec{at: now, match: matchID, isMatch: true})
	}
	s.notify(store.Change{Kind: store.ChangeServer, ID: serverID, Version: srv.s.Version})
	return nil
}

// RequestBackfill implements store.Store.
func (s *Store) RequestBackfill(ctx context.Context, b contracts.Backfill) (contracts.Backfill, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, ok := s.hosted(b.ServerID, b.MatchID); !ok {
		return contracts.Backfill{}, fmt.Errorf("requesting backfill of match %s on server %s: %w", b.MatchID, b.ServerID, store.ErrNotFound)
	}
	b = cloneBackfill(b)
	if b.Seats() == 0 {
		delete(s.backfills, b.MatchID)
		return b, nil
	}
	if old, ok := s.backfills[b.MatchID]; ok {
		b.CreatedAt = old.CreatedAt
	}
	s.backfills[b.MatchID] = &b
	return cloneBackfill(b), nil
}

// hosted answers the server id and the index of its allocation of match
// matchID, if it hosts it.
func (s *Store) hosted(serverID, matchID string) (*serverRec, int, bool) {
	srv, ok := s.servers[serverID]
	if !ok {
		return nil, 0, false
	}
	i := slices.IndexFunc(srv.allocations, func(a contracts.Allocation) bool { return a.MatchID == matchID })
	return srv, i, i >= 0
}

// Backfills implements store.Store.
func (s *Store) Backfills(ctx context.Context, queue string) ([]contracts.Backfill, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []contracts.Backfill
	for _, b := range s.backfills {
		if b.Queue == queue {
			out = append(out, cloneBackfill(*b))
		}
	}
	slices.SortFunc(out, store.OldestBackfillFirst)
	return out, nil
}

// FillBackfill implements store.Store: both steps are one here.
func (s *Store) FillBackfill(ctx context.Context, matchID, ticketID string, team int, ref contracts.MatchRef, now time.Time) (contracts.Assignment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.tickets[ticketID]
	switch {
	case !ok:
		return contracts.Assignment{}, &store.ConflictError{TicketID: ticketID}
	case rec.t.Status != contracts.StatusSearching:
		return contracts.Assignment{}, &store.ConflictError{TicketID: ticketID, Status: rec.t.Status}
	}
	b, ok := s.backfills[matchID]
	if !ok || team < 0 || team >= len(b.Open) || b.Open[team] < len(rec.t.Players) {
		return contracts.Assignment{}, fmt.Errorf("filling backfill of match %s: %w", matchID, store.ErrNoCapacity)
	}
	srv, i, ok := s.hosted(b.ServerID, matchID)
	if !ok {
		delete(s.backfills, matchID)
		return contracts.Assignment{}, fmt.Errorf("filling backfill of match %s: the match has ended: %w", matchID, store.ErrNoCapacity)
	}
	if !now.Before(srv.s.ExpiresAt) {
		return contracts.Assignment{}, fmt.Errorf("filling backfill of match %s: server %s has stopped heartbeating: %w", matchID, srv.s.ID, store.ErrNoCapacity)
	}
	a := contracts.Assignment{ServerID: srv.s.ID, Address: srv.s.Address, Region: srv.s.Region}
	b.Open[team] -= len(rec.t.Players)
	if b.Seats() == 0 {
		delete(s.backfills, matchID)
	}
	alloc := &srv.allocations[i]
	for len(alloc.Teams) <= team {
		alloc.Teams = append(alloc.Teams, nil)
	}
	alloc.Teams[team] = append(slices.Clone(alloc.Teams[team]), rec.t.PlayerIDs()...)
	alloc.Players = append(slices.Clone(alloc.Players), rec.t.Players...)
	alloc.TicketIDs = append(slices.Clone(alloc.TicketIDs), ticketID)
	srv.s.Version++

	rec.t.Match = cloneRef(&ref)
	asg := a
	rec.t.Assignment = &asg
	s.finish(rec, contracts.StatusAssigned, now)
	s.notify(store.Change{Kind: store.ChangeServer, ID: srv.s.ID, Version: srv.s.Version})
	return a, nil
}

// FinishFills implements store.Store: a fill is one step here.
func (s *Store) FinishFills(ctx context.Context, limit int) (int, error) { return 0, nil }

// Ping implements store.Store; memory is always reachable.
func (s *Store) Ping(ctx context.Context) error { return nil }

// expiry is a ticket's expiry time in the expiry heap.
type expiry struct {
	at time.Time
	id string
}

type expiryHeap []expiry

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	if c := h[i].at.Compare(h[j].at); c != 0 {
		return c < 0
	}
	return h[i].id < h[j].id
}
func (h expiryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)   { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// pool is one queue's pool, ordered by (skill, created, ticket id) so that
// the entries nearest a skill are found by binary search.
type pool struct {
	entries []store.PoolEntry
}

func compareEntries(a, b store.PoolEntry) int {
	if c := cmp.Compare(a.Skill, b.Skill); c != 0 {
		return c
	}
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return cmp.Compare(a.TicketID, b.TicketID)
}

func (p *pool) insert(e store.PoolEntry) {
	i, _ := slices.BinarySearchFunc(p.entries, e, compareEntries)
	p.entries = slices.Insert(p.entries, i, e)
}

func (p *pool) remove(e store.PoolEntry) {
	if i, ok := slices.BinarySearchFunc(p.entries, e, compareEntries); ok {
		p.entries = slices.Delete(p.entries, i, i+1)
	}
}

// nearest returns up to limit entries within maxGap of skill, nearest
// first, ties in distance to the earlier created. It walks outwards from
// skill: upwards the order is already (distance, created); downwards it
// takes each run of equal skill in ascending order, so equal distances
// still come out earliest first. The cost is O(limit + log n) per call.
func (p *pool) nearest(skill, maxGap float64, limit int) []store.PoolEntry {
	es := p.entries
	start := sort.Search(len(es), func(i int) bool { return es[i].Skill >= skill })
	up := start // next entry upwards
	// Downwards, [runLo, runHi) is the current run of equal skill below
	// start and down the next entry of it.
	runLo, runHi, down := start, start, start
	nextRun := func() {
		runHi = runLo
		if runHi == 0 {
			runLo, down = 0, 0
			return
		}
		s := es[runHi-1].Skill
		runLo = sort.Search(runHi, func(i int) bool { return es[i].Skill >= s })
		down = runLo
	}
	nextRun()

	var out []store.PoolEntry
	for len(out) < limit {
		if down == runHi {
			nextRun()
		}
		var hasUp, hasDown bool
		var du, dd float64
		if up < len(es) {
			du = es[up].Skill - skill
			hasUp = du <= maxGap
		}
		if down < runHi {
			dd = skill - es[down].Skill
			hasDown = dd <= maxGap
		}
		switch {
		case hasUp && (!hasDown || du < dd || (du == dd && upFirst(es[up], es[down]))):
			out = append(out, es[up])
			up++
		case hasDown:
			out = append(out, es[down])
			down++
		default:
			return out
		}
	}
	return out
}

// upFirst breaks a tie in distance between an entry above and one below:
// the earlier created goes first, then the smaller ticket id.
func upFirst(up, down store.PoolEntry) bool {
	if c := up.CreatedAt.Compare(down.CreatedAt); c != 0 {
		return c < 0
	}
	return up.TicketID < down.TicketID
}

// AssignMatches implements store.Store. In memory a call costs no round
// trip, so the matches are simply assigned one after the other; each takes
// the lock on its own, so that a big batch does not hold up other callers.
func (s *Store) AssignMatches(ctx context.Context, ids []string, now time.Time) []store.AssignResult {
	out := make([]store.AssignResult, len(ids))
	for i, id := range ids {
		out[i].Assignment, out[i].Err = s.AssignMatch(ctx, id, now)
	}
	return out
}

// Package sim measures the quality of the matches the matcher forms. It
// replays a seeded stream of arriving tickets through the real matcher and
// the in-memory store on a virtual clock: a discrete-event loop stands in
// for the broker, delivering each ticket message when it is due, so ten
// minutes of traffic take seconds and the same seed always gives the same
// run. One matcher handles one message at a time, as a single replica with
// one worker would.
package sim

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
	"github.com/quickmatch/quickmatch/matcher"
)

// Epoch is virtual time zero of every run.
var Epoch = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)

// Ticket is one ticket of a run and what became of it.
type Ticket struct {
	// Ticket is the ticket as it was created.
	contracts.Ticket
	// Home is the region the ticket's latencies were drawn around.
	Home string
	// Skill is the party's matching skill under the queue's rule.
	Skill float64
	// Status is matched or expired once the run is over.
	Status contracts.Status
	// Match indexes Result.Matches, or is -1.
	Match int
	// Ended is when the ticket was matched or expired.
	Ended time.Time
	// Deliveries counts the ticket's messages the matcher handled.
	Deliveries int
}

// Wait is how long the ticket searched.
func (t *Ticket) Wait() time.Duration { return t.Ended.Sub(t.CreatedAt) }

// Result is a finished run.
type Result struct {
	Config  Config
	Tickets []Ticket
	// Matches are in the order they formed; a match's CreatedAt is the
	// virtual time it formed at.
	Matches []contracts.Match
	// End is the virtual time the last event happened at.
	End time.Time

	byID map[string]int
}

// Ticket returns the ticket with the given id.
func (r *Result) Ticket(id string) (*Ticket, bool) {
	i, ok := r.byID[id]
	if !ok {
		return nil, false
	}
	return &r.Tickets[i], true
}

type eventKind uint8

const (
	arrive  eventKind = iota // the next ticket of the stream arrives
	deliver                  // a ticket message reaches the matcher
)

type event struct {
	at      time.Duration // since Epoch
	seq     uint64        // breaks ties in time: first scheduled, first run
	kind    eventKind
	body    []byte
	tickets []int // indexes of the delivered message's tickets
}

type eventHeap []event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// simulation is the state of one run.
type simulation struct {
	cfg     *Config
	store   *memstore.Store
	matcher *matcher.Matcher
	res     *Result
	events  eventHeap
	seq     uint64
	now     time.Duration
	matchAt map[string]int // match id → index in res.Matches
}

// Run plays the arrival stream of cfg through the matcher until every
// ticket is matched or expired. An error from the matcher fails the run:
// with the in-memory store nothing it does may fail.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Check(); err != nil {
		return nil, fmt.Errorf("checking the simulation config: %w", err)
	}
	// The simulator measures how tickets are matched; every player takes
	// the match offered, so a queue's acceptance step would change nothing
	// but the statuses on the way.
	q := cfg.Queue
	q.AcceptTimeout = 0
	set, err := queues.NewSet(q)
	if err != nil {
		return nil, fmt.Errorf("building the queue set: %w", err)
	}
	s := &simulation{
		cfg:     &cfg,
		store:   memstore.New(memstore.Options{}),
		res:     &Result{Config: cfg, byID: map[string]int{}},
		matchAt: map[string]int{},
	}
	s.matcher = matcher.New(matcher.Config{
		Queues:     set,
		Store:      s.store,
		Publisher:  publisher{s},
		Metrics:    metrics.NewUnregistered(),
		Log:        slog.New(slog.DiscardHandler),
		Now:        func() time.Time { return Epoch.Add(s.now) },
		Candidates: cfg.Candidates,
	})
	if err := s.loop(ctx, newArrivals(&cfg)); err != nil {
		return nil, err
	}
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	return s.res, nil
}

func (s *simulation) schedule(e event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.events, e)
}

// loop runs events until none is left. Every ticket is delivered at most
// once per retry delay until its max wait, so the number of events is
// bounded; the budget turns a matcher that never lets go into an error.
func (s *simulation) loop(ctx context.Context, arr *arrivals) error {
	q := &s.cfg.Queue
	perTicket := int(q.MaxWait/q.RetryDelay) + 4
	budget := 1
	if arr.more(0) {
		s.schedule(event{at: arr.gap(), kind: arrive})
	}
	for n := 0; s.events.Len() > 0; n++ {
		if n > budget {
			return fmt.Errorf("simulation ran %d events for %d tickets: a ticket is never settled", n, len(s.res.Tickets))
		}
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("simulating: %w", err)
			}
		}
		e := heap.Pop(&s.events).(event)
		s.now = e.at
		switch e.kind {
		case arrive:
			if !arr.more(e.at) {
				continue
			}
			if err := s.arrive(ctx, arr); err != nil {
				return err
			}
			budget += perTicket + 1
			s.schedule(event{at: e.at + arr.gap(), kind: arrive})
		case deliver:
			for _, i := range e.tickets {
				s.res.Tickets[i].Deliveries++
			}
			if err := s.matcher.Handle(ctx, broker.Message{Body: e.body}); err != nil {
				return fmt.Errorf("matcher failed on ticket %s at %v: %w", s.res.Tickets[e.tickets[0]].ID, e.at, err)
			}
		}
	}
	s.res.End = Epoch.Add(s.now)
	return nil
}

// arrive does what the front does for a new ticket: stores it, searching
// and expiring at its max wait, and publishes its message.
func (s *simulation) arrive(ctx context.Context, arr *arrivals) error {
	now := Epoch.Add(s.now)
	t, home := arr.next(now)
	if err := s.store.CreateTicket(ctx, t, now.Add(s.cfg.Queue.MaxWait)); err != nil {
		return fmt.Errorf("creating ticket %s: %w", t.ID, err)
	}
	skills := make([]float64, len(t.Players))
	for i, p := range t.Players {
		skills[i] = p.Skill
	}
	s.res.byID[t.ID] = len(s.res.Tickets)
	s.res.Tickets = append(s.res.Tickets, Ticket{
		Ticket: t,
		Home:   home,
		Skill:  s.cfg.Queue.PartySkill(skills),
		Status: contracts.StatusSearching,
		Match:  -1,
	})
	body, err := contracts.EncodeTicketMessage(contracts.TicketTry{Ticket: t})
	if err != nil {
		return err
	}
	return s.publish(contracts.TicketQueue(t.Queue), body, 0)
}

// publish is the broker: a ticket message is delivered after delay, a
// match message is recorded as a formed match.
func (s *simulation) publish(name string, body []byte, delay time.Duration) error {
	switch {
	case name == contracts.MatchQueue:
		if delay != 0 {
			return errors.New("a match message was sent through the retry queue")
		}
		mm, err := contracts.DecodeMatchMessage(body)
		if err != nil {
			return fmt.Errorf("reading a match message: %w", err)
		}
		// The message carries what an assigner reads; the teams and
		// players are in the store.
		m, err := s.store.Match(context.Background(), mm.Match.ID)
		if err != nil {
			return fmt.Errorf("reading the match of a match message: %w", err)
		}
		return s.record(m)
	case name == contracts.TicketQueue(s.cfg.Queue.Name):
		tm, rejected, err := contracts.DecodeTicketMessage(body)
		if err == nil && len(rejected) > 0 {
			err = rejected[0].Err
		}
		if err != nil {
			return fmt.Errorf("reading a ticket message: %w", err)
		}
		e := event{at: s.now + delay, kind: deliver, body: bytes.Clone(body)}
		for _, try := range tm.Tickets {
			i, ok := s.res.byID[try.Ticket.ID]
			if !ok {
				return fmt.Errorf("a ticket message names unknown ticket %s", try.Ticket.ID)
			}
			e.tickets = append(e.tickets, i)
		}
		s.schedule(e)
		return nil
	default:
		return fmt.Errorf("publishing to unknown queue %q", name)
	}
}

// record keeps a formed match. Publishing a match again is allowed (the
// matcher does so on redelivery) and changes nothing.
func (s *simulation) record(m contracts.Match) error {
	if _, dup := s.matchAt[m.ID]; dup {
		return nil
	}
	if now := Epoch.Add(s.now); !m.CreatedAt.Equal(now) {
		return fmt.Errorf("match %s says it formed at %v, but the clock reads %v", m.ID, m.CreatedAt, now)
	}
	s.matchAt[m.ID] = len(s.res.Matches)
	s.res.Matches = append(s.res.Matches, m)
	return nil
}

// settle reads what became of every ticket. A ticket still searching when
// no event is left would be lost: that is a bug in the matcher.
func (s *simulation) settle(ctx context.Context) error {
	for i := range s.res.Tickets {
		rt := &s.res.Tickets[i]
		t, err := s.store.Ticket(ctx, rt.ID)
		if err != nil {
			return fmt.Errorf("reading ticket %s after the run: %w", rt.ID, err)
		}
		rt.Status = t.Status
		switch t.Status {
		case contracts.StatusMatched:
			mi, ok := s.matchAt[t.Match.ID]
			if !ok {
				return fmt.Errorf("ticket %s is in match %s, which was never published", rt.ID, t.Match.ID)
			}
			rt.Match, rt.Ended = mi, s.res.Matches[mi].CreatedAt
		case contracts.StatusExpired:
			rt.Ended = t.UpdatedAt
		default:
			return fmt.Errorf("ticket %s ended the run %s", rt.ID, t.Status)
		}
	}
	for _, m := range s.res.Matches {
		for _, id := range m.TicketIDs {
			if rt, ok := s.res.Ticket(id); !ok || rt.Status != contracts.StatusMatched || s.res.Matches[rt.Match].ID != m.ID {
				return fmt.Errorf("match %s lists ticket %s, which is not matched into it", m.ID, id)
			}
		}
	}
	return nil
}

// publisher is the matcher's view of the simulated broker.
type publisher struct{ s *simulation }

func (p publisher) Publish(ctx context.Context, name string, bodies ...[]byte) error {
	for _, b := range bodies {
		if err := p.s.publish(name, b, 0); err != nil {
			return err
		}
	}
	return nil
}

func (p publisher) PublishDelayed(ctx context.Context, name string, bodies ...[]byte) error {
	if !strings.HasPrefix(name, contracts.TicketQueuePrefix) {
		return fmt.Errorf("delayed publish to %q, which has no retry delay in the simulation", name)
	}
	for _, b := range bodies {
		if err := p.s.publish(name, b, p.s.cfg.Queue.RetryDelay); err != nil {
			return err
		}
	}
	return nil
}

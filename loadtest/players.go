package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

// maxPollsPerTicket bounds the long-polls of one ticket; a healthy ticket
// needs two or three.
const maxPollsPerTicket = 10_000

// ticketMaker draws the parties that queue: their size from the party mix,
// each player's skill from a normal distribution, and their latencies from
// the configured regions with uniform jitter. It is safe for concurrent use.
type ticketMaker struct {
	queue   string
	mean    float64
	stddev  float64
	regions []Region
	jitter  float64
	party   []PartyShare
	total   float64 // sum of the party weights
	idBase  string

	mu  sync.Mutex
	rng *rand.Rand
	seq int64
}

func newTicketMaker(c *Config, seed uint64) *ticketMaker {
	m := &ticketMaker{
		queue:   c.Queue,
		mean:    c.SkillMean,
		stddev:  c.SkillStddev,
		regions: c.Regions,
		jitter:  c.Jitter,
		party:   c.Party,
		idBase:  c.RunID + "-p",
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	for _, p := range c.Party {
		m.total += p.Weight
	}
	return m
}

// Next makes the next ticket request; every player id is new.
func (m *ticketMaker) Next() *contracts.TicketRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.make(m.partySize())
}

// NextSolo makes a ticket request for one player.
func (m *ticketMaker) NextSolo() *contracts.TicketRequest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.make(1)
}

func (m *ticketMaker) make(size int) *contracts.TicketRequest {
	req := &contracts.TicketRequest{Queue: m.queue, Players: make([]contracts.Player, size)}
	for i := range req.Players {
		m.seq++
		req.Players[i] = contracts.Player{
			ID:    fmt.Sprintf("%s%d", m.idBase, m.seq),
			Skill: m.mean + m.stddev*m.rng.NormFloat64(),
		}
	}
	if len(m.regions) > 0 {
		req.Latencies = make(map[string]float64, len(m.regions))
		for _, r := range m.regions {
			ms := r.LatencyMS
			if m.jitter > 0 {
				ms += (m.rng.Float64()*2 - 1) * m.jitter
			}
			req.Latencies[r.Name] = min(max(ms, 0), 60000)
		}
	}
	return req
}

func (m *ticketMaker) partySize() int {
	x := m.rng.Float64() * m.total
	for _, p := range m.party {
		if x < p.Weight {
			return p.Size
		}
		x -= p.Weight
	}
	return m.party[len(m.party)-1].Size
}

// due is how many players have arrived after elapsed at rate per second.
func due(rate float64, elapsed time.Duration) int64 {
	if elapsed <= 0 {
		return 0
	}
	return int64(rate * elapsed.Seconds())
}

// arrivalTime is when player n (from 0) arrives at rate per second.
func arrivalTime(start time.Time, rate float64, n int64) time.Time {
	return start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
}

// player follows tickets from create to a terminal status.
type player struct {
	client   *Client
	rec      *Recorder
	pollWait time.Duration
	// pollUntil is the ?until of every poll but the last read.
	pollUntil string
	// cancelAtEnd cancels the tickets still searching when the run ends.
	cancelAtEnd bool
	// outcomes, if set, gets one line per logical create as it ends.
	outcomes *outcomeLog
	// nextFront spreads the players over the fronts, round robin.
	nextFront atomic.Uint64
}

// ticketRun is one logical create and the ticket it made, as its player
// follows them.
type ticketRun struct {
	req     *contracts.TicketRequest
	arrival time.Time
	// front is the client's front the calls go to now; it moves on past a
	// front that fails as if it were down.
	front int
	// Of the create: the tries sent, the front of the last one, and whether
	// one got no answer, and so may have made a ticket.
	tries       int
	createFront string
	unanswered  bool
	ticketID    string // "" until a create try is answered with one
}

// play queues req, which arrived at arrival, and long-polls its ticket
// until it is terminal or ctx ends. A ticket still open then is abandoned
// (see abandon) or, without cancelAtEnd, lost. Times are measured from
// arrival, so a generator that falls behind its schedule shows in the
// figures instead of hiding.
func (p *player) play(ctx context.Context, req *contracts.TicketRequest, arrival time.Time) {
	tk := &ticketRun{req: req, arrival: arrival, front: p.firstFront()}
	n := len(req.Players)
	p.rec.Count(outAttempted, n)
	t, err := p.create(ctx, tk)
	if tk.tries > 1 {
		p.rec.CreateEvent(createRetried)
	}
	if err != nil {
		o := outCreateFailed
		if tk.unanswered {
			o = outCreateUnanswered
		}
		p.rec.Count(o, n)
		p.outcomes.write(tk.line(o))
		return
	}
	tk.ticketID = t.ID
	now := time.Now()
	p.rec.Created(n, arrival, now)
	status, at := p.follow(ctx, tk, t, now)
	if !status.Terminal() && p.cancelAtEnd {
		status, at = p.abandon(ctx, tk, status)
	}
	p.finish(tk, status, at)
}

// firstFront is the next front of the round robin.
func (p *player) firstFront() int {
	return int((p.nextFront.Add(1) - 1) % uint64(p.client.Fronts()))
}

// follow long-polls tk's ticket, seen as t at now, until it is terminal or
// ctx ends, and returns the status last seen and when. A poll that fails
// as if its front were down goes to the next front: any front answers any
// ticket, so a front that died does not stall its players.
func (p *player) follow(ctx context.Context, tk *ticketRun, t ticketState, now time.Time) (contracts.Status, time.Time) {
	n := len(tk.req.Players)
	status, version := t.Status, t.Version
	matched := false
	noteMatch := func(now time.Time) {
		if !matched && (status == contracts.StatusMatched || status == contracts.StatusAssigned) {
			matched = true
			p.rec.Matched(n, tk.arrival, now)
		}
	}
	noteMatch(now)
	backoff := 50 * time.Millisecond
	for i := 0; i < maxPollsPerTicket && !status.Terminal(); i++ {
		wait := p.pollWait
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl)-time.Second)
		}
		if wait < 10*time.Millisecond {
			break
		}
		got, err := p.client.PollTicket(ctx, p.client.Front(tk.front), tk.ticketID, wait, version, p.pollUntil)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			p.rec.Error(err)
			if retryable(err) {
				tk.front++
			}
			if !sleep(ctx, backoff) {
				break
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		now = time.Now()
		if got.Version > version {
			status, version = got.Status, got.Version
		}
		noteMatch(now)
	}
	return status, now
}

// endings maps the status a ticket was last seen in to its outcome; any
// status not listed means the ticket was lost.
var endings = map[contracts.Status]outcome{
	contracts.StatusAssigned:  outAssigned,
	contracts.StatusCancelled: outCancelled,
	contracts.StatusExpired:   outExpired,
	contracts.StatusFailed:    outFailed,
	statusAbandoned:           outAbandoned,
}

// finish counts the outcome of tk's ticket, last seen in status at at, and
// logs it.
func (p *player) finish(tk *ticketRun, status contracts.Status, at time.Time) {
	n := len(tk.req.Players)
	o, ok := endings[status]
	switch {
	case !ok:
		o = outLost
		p.rec.Lost(n, status)
	case o == outAssigned:
		p.rec.Assigned(n, tk.arrival, at)
	default:
		p.rec.Count(o, n)
	}
	p.outcomes.write(tk.line(o))
}

// createTries bounds the attempts to create one ticket. With the backoff
// doubling from 100 ms to a cap of 1 s they span about 4.5 s, so that a
// create rides out a front or broker restart of a few seconds.
const createTries = 8

// create queues tk's party as a client would: a create that got no answer,
// or a 5xx, is sent again, to the next front, with the same body and
// Idempotency-Key. If an earlier try had made the ticket after all, the
// suite answers the retry with that ticket, marked replayed; a suite that
// does not honour the key answers 409 with its id instead, and the player
// follows that ticket. Every failed attempt counts as an error.
func (p *player) create(ctx context.Context, tk *ticketRun) (ticketState, error) {
	cr, err := newCreateRequest(tk.req)
	if err != nil {
		p.rec.Error(err)
		return ticketState{}, err
	}
	backoff := 100 * time.Millisecond
	for try := range createTries {
		var t ticketState
		t, err = p.tryCreate(ctx, tk, cr)
		if err == nil {
			return t, nil
		}
		if id, ok := conflictOnRetry(err, try); ok {
			p.rec.CreateEvent(createConflicted)
			// Version 0 makes the first poll answer at once.
			return ticketState{ID: id, Status: contracts.StatusSearching}, nil
		}
		p.rec.Error(err)
		// Jitter spreads the retries of players refused at once.
		pause := backoff/2 + rand.N(backoff/2+1)
		if !retryable(err) || try == createTries-1 || !sleep(ctx, pause) {
			break
		}
		backoff = min(2*backoff, time.Second)
		tk.front++
	}
	return ticketState{}, err
}

// tryCreate sends one try of cr to tk's front.
func (p *player) tryCreate(ctx context.Context, tk *ticketRun, cr *createRequest) (ticketState, error) {
	tk.tries++
	tk.createFront = p.client.Front(tk.front)
	t, replayed, err := p.client.CreateTicket(ctx, tk.createFront, cr)
	if replayed {
		p.rec.CreateEvent(createReplayed)
	}
	if err != nil && (!answered(err) || outcomeUnknown(err)) {
		tk.unanswered = true
	}
	return t, err
}

// conflictOnRetry returns the ticket a 409 player_has_ticket names when it
// answers a retry: an earlier try of the same create made it.
func conflictOnRetry(err error, try int) (string, bool) {
	ae, ok := errors.AsType[*apiError](err)
	if !ok || try == 0 || ae.Code != contracts.CodePlayerHasTicket || ae.TicketID == "" {
		return "", false
	}
	return ae.TicketID, true
}

// statusAbandoned marks a ticket the player cancelled at the end of the run.
const statusAbandoned contracts.Status = "abandoned"

// abandon cancels a ticket still open when the run ends, as a player who
// gives up would. A cancel that succeeds proves the suite still holds the
// ticket as searching: it is abandoned, not lost. A ticket the cancel finds
// matched has not been assigned in time; one last read tells whether it is
// terminal now, and if not it is lost.
func (p *player) abandon(ctx context.Context, tk *ticketRun, status contracts.Status) (contracts.Status, time.Time) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	t, err := p.onFronts(tk, func(front string) (ticketState, error) {
		return p.client.CancelTicket(ctx, front, tk.ticketID)
	})
	if err == nil && t.Status == contracts.StatusCancelled {
		return statusAbandoned, time.Now()
	}
	if err != nil {
		if ae, ok := errors.AsType[*apiError](err); !ok || ae.Code != contracts.CodeTicketMatched {
			p.rec.Error(err)
		}
	}
	t, err = p.onFronts(tk, func(front string) (ticketState, error) {
		return p.client.PollTicket(ctx, front, tk.ticketID, 0, 0, "")
	})
	if err != nil {
		p.rec.Error(err)
		return status, time.Now()
	}
	return t.Status, time.Now()
}

// onFronts calls fn with tk's front and, while a front fails as if it were
// down, with the next ones, each once at most. The errors it moves past are
// counted; the last is the caller's.
func (p *player) onFronts(tk *ticketRun, fn func(front string) (ticketState, error)) (ticketState, error) {
	var (
		t   ticketState
		err error
	)
	for i := range p.client.Fronts() {
		if i > 0 {
			p.rec.Error(err)
			tk.front++
		}
		if t, err = fn(p.client.Front(tk.front)); err == nil || !retryable(err) {
			break
		}
	}
	return t, err
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// arrivals starts players until the duration ends or the player budget is
// spent; the players themselves run under playCtx on the worker pool, and
// wait waits for them.
type arrivals struct {
	cfg         *Config
	maker       *ticketMaker
	player      *player
	rec         *Recorder
	maxInFlight int64
	pool        workers

	players  atomic.Int64 // players arrived, skipped ones included: the schedule's index
	started  atomic.Int64 // players started
	creating atomic.Int64 // closed-loop workers between their time check and their create
}

// start runs one player.
func (a *arrivals) start(playCtx context.Context, req *contracts.TicketRequest, arrival time.Time) {
	a.started.Add(int64(len(req.Players)))
	a.rec.Begin()
	a.pool.run(func() {
		defer a.rec.End()
		a.player.play(playCtx, req, arrival)
	})
}

// wait waits for every player started.
func (a *arrivals) wait() { a.pool.wait() }

// completeMatches adds single players until the players started fill whole
// matches, so that in a one-band scenario no ticket is left without a
// partner when arrivals end.
func (a *arrivals) completeMatches(playCtx context.Context) {
	size := int64(a.cfg.MatchSize)
	for range size {
		if a.started.Load()%size == 0 {
			return
		}
		a.start(playCtx, a.maker.NextSolo(), time.Now())
	}
}

// openLoop starts players at the configured rate, whatever the suite's
// answers: a slow suite sees more tickets in flight, not fewer arrivals.
// Arrivals past the in-flight limit are skipped and counted.
func (a *arrivals) openLoop(ctx, playCtx context.Context, start time.Time) {
	const tick = time.Millisecond
	end := start.Add(a.cfg.Warmup + a.cfg.Duration)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	defer a.completeMatches(playCtx)
	// Bounded by count as well as time: the ticker cannot fire more often.
	maxIter := int((a.cfg.Warmup+a.cfg.Duration)/tick)*2 + 1000
	for range maxIter {
		now := time.Now()
		players := a.players.Load()
		if !now.Before(end) || a.cfg.Players > 0 && players >= a.cfg.Players {
			return
		}
		target := due(a.cfg.Rate, now.Sub(start))
		if a.cfg.Players > 0 {
			target = min(target, a.cfg.Players)
		}
		for players < target {
			req := a.maker.Next()
			arrival := arrivalTime(start, a.cfg.Rate, players)
			players = a.players.Add(int64(len(req.Players)))
			if a.rec.InFlight() >= a.maxInFlight {
				a.rec.Count(outSkipped, len(req.Players))
				continue
			}
			a.start(playCtx, req, arrival)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// closedLoop keeps the configured number of players in the queue: each
// worker queues a new party as soon as its previous ticket is terminal. It
// returns when the duration ends.
func (a *arrivals) closedLoop(ctx, playCtx context.Context, start time.Time) {
	end := start.Add(a.cfg.Warmup + a.cfg.Duration)
	for range a.cfg.Concurrency {
		a.pool.wg.Go(func() {
			// Each pass takes at least one request; the count bounds a
			// suite that answers instantly.
			for range 100_000_000 {
				a.creating.Add(1)
				if ctx.Err() != nil || !time.Now().Before(end) {
					a.creating.Add(-1)
					return
				}
				req := a.maker.Next()
				size := int64(len(req.Players))
				if n := a.players.Add(size); a.cfg.Players > 0 && n > a.cfg.Players {
					a.players.Add(-size)
					a.creating.Add(-1)
					return
				}
				a.creating.Add(-1)
				a.started.Add(size)
				a.rec.Begin()
				a.player.play(playCtx, req, time.Now())
				a.rec.End()
			}
		})
	}
	sleep(ctx, time.Until(end))
	// Once no worker is between its time check and its count, the count
	// is final.
	for range 1000 {
		if a.creating.Load() == 0 {
			break
		}
		sleep(ctx, time.Millisecond)
	}
	a.completeMatches(playCtx)
}

// workerIdle is how long a worker waits for its next player.
const workerIdle = time.Second

// workers runs jobs on goroutines that stay for the next job, so that the
// stacks they grew for one player serve the next instead of growing again.
// The zero value is ready to use.
type workers struct {
	jobs     chan func() // unbuffered: a send succeeds only when a worker waits
	stop     chan struct{}
	initOnce sync.Once
	stopOnce sync.Once
	wg       sync.WaitGroup
}

func (w *workers) init() {
	w.initOnce.Do(func() {
		w.jobs = make(chan func())
		w.stop = make(chan struct{})
	})
}

// run hands job to an idle worker, or starts one.
func (w *workers) run(job func()) {
	w.init()
	select {
	case w.jobs <- job:
	default:
		w.wg.Go(func() {
			job()
			w.serve()
		})
	}
}

// serve takes jobs until the pool stops or none comes for workerIdle.
func (w *workers) serve() {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for range 100_000_000 {
		select {
		case job := <-w.jobs:
			job()
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		case <-w.stop:
			return
		}
	}
}

// wait stops the idle workers and waits for the busy ones. No job may be
// run after it is called.
func (w *workers) wait() {
	w.init()
	w.stopOnce.Do(func() { close(w.stop) })
	w.wg.Wait()
}

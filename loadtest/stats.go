package main

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/quickmatch/quickmatch/contracts"
)

// Outcomes of a ticket, counted in tickets and in players.
type outcome int

const (
	outAttempted    outcome = iota // a create was sent
	outCreated                     // the front accepted it
	outCreateFailed                // the suite refused every try: no ticket was made
	// outCreateUnanswered is a create that failed with some try unanswered:
	// that try may have made a ticket nobody follows.
	outCreateUnanswered
	outSkipped // the arrival was dropped: too many tickets in flight
	outMatched // a poll showed it matched (or later)
	outAssigned
	outCancelled
	outExpired
	outFailed
	outAbandoned // still searching at the end, so the player cancelled it
	outLost      // created, but not terminal when the run ended
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	"attempted", "created", "create_failed", "create_unanswered", "skipped", "matched",
	"assigned", "cancelled", "expired", "failed", "abandoned", "lost",
}

// Events of a create's tries, counted apart from the outcomes: under
// faults they show whether the suite honours the Idempotency-Key.
type createEvent int

const (
	createRetried  createEvent = iota // took more than one try
	createReplayed                    // answered Idempotent-Replayed: an earlier try had made the ticket
	// createConflicted is a 409 player_has_ticket answering a retry: an
	// earlier try made the ticket, but the suite did not honour its key.
	createConflicted
	numCreateEvents
)

// histogram range: 1 µs to 10 minutes at 3 significant digits.
const (
	histMin    = 1
	histMax    = int64(10 * time.Minute / time.Microsecond)
	histDigits = 3
)

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// recordDuration adds d in microseconds, clamped to the histogram's range.
func recordDuration(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	_ = h.RecordValue(min(max(us, histMin), histMax))
}

// Recorder collects what the players and servers see. It is safe for
// concurrent use.
//
// Players who arrive before measureFrom warm the suite and the generator
// up: they count for lost tickets, outcomes and errors like any other, but
// not for the latency figures. Throughput is what completes in the window
// from measureFrom to the end of the arrivals (CloseWindow), whoever's
// ticket it is, so that a slow tail of stragglers does not dilute it.
type Recorder struct {
	start       time.Time
	measureFrom time.Time

	tickets [numOutcomes]atomic.Int64
	players [numOutcomes]atomic.Int64
	// inFlight is tickets created or being created and not yet finished.
	inFlight atomic.Int64
	creates  [numCreateEvents]atomic.Int64

	mu        sync.Mutex
	errors    map[string]int64
	lostAt    map[string]int64        // lost tickets by the status last seen
	samples   map[string]string       // the first message of each error kind
	assign    *hdrhistogram.Histogram // time to assigned, after the warm-up
	match     *hdrhistogram.Histogram // time to the first answer at matched or later
	window    *hdrhistogram.Histogram // time to assigned since the last Sample, warm-up included
	windowEnd time.Time               // zero until CloseWindow
	// Players created and assigned within the window.
	windowCreated, windowAssigned int64
	lastAssign                    time.Time
	prev                          [numOutcomes]int64 // player counts at the last Sample
	prevAt                        time.Time
	timeline                      []Sample
	maxInFlight                   int64
}

// Sample is one point of the timeline.
type Sample struct {
	T            float64 `json:"t_s"` // seconds since the start
	CreatedPerS  float64 `json:"created_per_s"`
	AssignedPerS float64 `json:"assigned_per_s"`
	P50MS        float64 `json:"p50_ms"`
	P99MS        float64 `json:"p99_ms"`
	InFlight     int64   `json:"in_flight"`
	Errors       int64   `json:"errors"`
}

// NewRecorder starts a recorder at start whose figures count the players
// arriving from measureFrom on.
func NewRecorder(start, measureFrom time.Time) *Recorder {
	return &Recorder{
		start:       start,
		measureFrom: measureFrom,
		prevAt:      start,
		errors:      map[string]int64{},
		lostAt:      map[string]int64{},
		samples:     map[string]string{},
		assign:      newHistogram(),
		match:       newHistogram(),
		window:      newHistogram(),
	}
}

// Count adds one ticket of the given party size to an outcome.
func (r *Recorder) Count(o outcome, partySize int) {
	r.tickets[o].Add(1)
	r.players[o].Add(int64(partySize))
}

func (r *Recorder) measured(arrival time.Time) bool { return !arrival.Before(r.measureFrom) }

// inWindow reports whether t is in the throughput window; r.mu is held.
func (r *Recorder) inWindow(t time.Time) bool {
	return !t.Before(r.measureFrom) && (r.windowEnd.IsZero() || t.Before(r.windowEnd))
}

// CloseWindow ends the throughput window at t, when arrivals end.
func (r *Recorder) CloseWindow(t time.Time) {
	r.mu.Lock()
	r.windowEnd = t
	r.mu.Unlock()
}

// Created records a ticket that arrived at arrival and that the front
// accepted at t.
func (r *Recorder) Created(partySize int, arrival, t time.Time) {
	r.Count(outCreated, partySize)
	r.mu.Lock()
	if r.inWindow(t) {
		r.windowCreated += int64(partySize)
	}
	r.mu.Unlock()
}

// Matched records the first sight of a ticket's match at t.
func (r *Recorder) Matched(partySize int, arrival, t time.Time) {
	r.Count(outMatched, partySize)
	if !r.measured(arrival) {
		return
	}
	r.mu.Lock()
	recordDuration(r.match, t.Sub(arrival))
	r.mu.Unlock()
}

// Assigned records a ticket seen assigned at t.
func (r *Recorder) Assigned(partySize int, arrival, t time.Time) {
	r.Count(outAssigned, partySize)
	r.mu.Lock()
	defer r.mu.Unlock()
	recordDuration(r.window, t.Sub(arrival))
	if r.measured(arrival) {
		recordDuration(r.assign, t.Sub(arrival))
	}
	if r.inWindow(t) {
		r.windowAssigned += int64(partySize)
	}
	if t.After(r.lastAssign) {
		r.lastAssign = t
	}
}

// Lost records a ticket still open when the run ended, last seen in status.
func (r *Recorder) Lost(partySize int, status contracts.Status) {
	r.Count(outLost, partySize)
	r.mu.Lock()
	r.lostAt[string(status)]++
	r.mu.Unlock()
}

// Error counts a failed call by its kind.
func (r *Recorder) Error(err error) {
	k := errorKind(err)
	r.mu.Lock()
	r.errors[k]++
	if _, ok := r.samples[k]; !ok {
		r.samples[k] = err.Error()
	}
	r.mu.Unlock()
}

// CreateEvent counts one event of a create.
func (r *Recorder) CreateEvent(e createEvent) { r.creates[e].Add(1) }

// Begin and End bracket a ticket in flight.
func (r *Recorder) Begin() int64 {
	n := r.inFlight.Add(1)
	r.mu.Lock()
	r.maxInFlight = max(r.maxInFlight, n)
	r.mu.Unlock()
	return n
}

func (r *Recorder) End() { r.inFlight.Add(-1) }

// InFlight is tickets in flight now.
func (r *Recorder) InFlight() int64 { return r.inFlight.Load() }

// Players is the players counted under o so far.
func (r *Recorder) Players(o outcome) int64 { return r.players[o].Load() }

// Tickets is the tickets counted under o so far.
func (r *Recorder) Tickets(o outcome) int64 { return r.tickets[o].Load() }

// Sample closes the window since the last sample at now, adds it to the
// timeline and returns it.
func (r *Recorder) Sample(now time.Time) Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	var cur [numOutcomes]int64
	for i := range cur {
		cur[i] = r.players[i].Load()
	}
	secs := now.Sub(r.prevAt).Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	var errs int64
	for _, n := range r.errors {
		errs += n
	}
	s := Sample{
		T:            now.Sub(r.start).Seconds(),
		CreatedPerS:  float64(cur[outCreated]-r.prev[outCreated]) / secs,
		AssignedPerS: float64(cur[outAssigned]-r.prev[outAssigned]) / secs,
		P50MS:        usToMS(r.window.ValueAtQuantile(50)),
		P99MS:        usToMS(r.window.ValueAtQuantile(99)),
		InFlight:     r.inFlight.Load(),
		Errors:       errs,
	}
	r.prev, r.prevAt = cur, now
	r.window.Reset()
	r.timeline = append(r.timeline, s)
	return s
}

// snapshot is the recorder's state, copied for the report.
type snapshot struct {
	tickets, players [numOutcomes]int64
	creates          [numCreateEvents]int64
	errors           map[string]int64
	lostAt           map[string]int64
	samples          map[string]string
	assign, match    *hdrhistogram.Histogram
	measureFrom      time.Time
	windowEnd        time.Time
	windowCreated    int64
	windowAssigned   int64
	lastAssign       time.Time
	timeline         []Sample
	maxInFlight      int64
}

func (r *Recorder) snapshot() snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := snapshot{
		errors:         maps.Clone(r.errors),
		lostAt:         maps.Clone(r.lostAt),
		samples:        maps.Clone(r.samples),
		assign:         hdrhistogram.Import(r.assign.Export()),
		match:          hdrhistogram.Import(r.match.Export()),
		measureFrom:    r.measureFrom,
		windowEnd:      r.windowEnd,
		windowCreated:  r.windowCreated,
		windowAssigned: r.windowAssigned,
		lastAssign:     r.lastAssign,
		timeline:       append([]Sample(nil), r.timeline...),
		maxInFlight:    r.maxInFlight,
	}
	for i := range s.tickets {
		s.tickets[i] = r.tickets[i].Load()
		s.players[i] = r.players[i].Load()
	}
	for i := range s.creates {
		s.creates[i] = r.creates[i].Load()
	}
	return s
}

func usToMS(us int64) float64 { return float64(us) / 1000 }

// Package metrics holds the Prometheus metrics of the suite. Labels are
// bounded: queue, region, outcome and kind, never ticket, player or server ids.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is every metric a service may record. Each process makes one and
// registers it once; a service records only the ones that concern it.
type Metrics struct {
	TicketsCreated   *prometheus.CounterVec   // queue
	TicketsFinished  *prometheus.CounterVec   // queue, status (terminal status)
	MatchesFormed    *prometheus.CounterVec   // queue, region
	Assignments      *prometheus.CounterVec   // queue, outcome (assigned, no_capacity, failed, backfilled)
	Requeues         *prometheus.CounterVec   // queue (broker queue), reason
	DeadLetters      *prometheus.CounterVec   // queue (broker queue)
	WaitSeconds      *prometheus.HistogramVec // queue: ticket created → matched
	TimeToAssign     *prometheus.HistogramVec // queue: match formed → placed on a server
	LongPollsWaiting *prometheus.GaugeVec     // kind (ticket, server)
	HTTPRequests     *prometheus.CounterVec   // route, code
	HTTPDuration     *prometheus.HistogramVec // route, method, code
	Repairs          *prometheus.CounterVec   // kind (republished, match_resent, stale_claim, backfill_fill)
	Acceptance       *prometheus.CounterVec   // queue, outcome (accepted, declined, timed_out, requeued)

	regions labelSet
}

// MaxRegionLabels bounds the values of the region label. Fronts take only
// regions the deployment knows, but what servers register is up to them;
// past the bound a region is counted as OtherRegion, so that no client can
// grow the series without end.
const (
	MaxRegionLabels = 64
	OtherRegion     = "other"
)

// Region is the region label of region: region itself while fewer than
// MaxRegionLabels regions have been seen, OtherRegion past them.
func (m *Metrics) Region(region string) string {
	return m.regions.label(region, MaxRegionLabels, OtherRegion)
}

// labelSet remembers the values a label has taken.
type labelSet struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (s *labelSet) label(v string, limit int, other string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[v] {
		return v
	}
	if len(s.seen) >= limit {
		return other
	}
	if s.seen == nil {
		s.seen = make(map[string]bool)
	}
	s.seen[v] = true
	return v
}

// waitBuckets reach past the 10 s at which default buckets stop, because a
// ticket may search for minutes.
var waitBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600}

// New makes the metrics and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		TicketsCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mm_tickets_created_total", Help: "Tickets accepted by the front.",
		}, []string{"queue"}),
		TicketsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mm_tickets_finished_total", Help: "Tickets that reached a terminal status, by status.",
		}, []string{"queue", "status"}),
		MatchesFormed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mm_matches_formed_total", Help: "Matches claimed by the matchers.",
		}, []string{"queue", "region"}),
		Assignments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mm_assignments_total", Help: "Attempts to place a match on a game server, by outcome; backfilled counts tickets seated in running matches.",
		}, []string{"queue", "outcome"}),
		Requeues: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mm_requeues_total", Help: "Messages sent back through a retry queue, by reason.",
		}, []string{"queue", "reason"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mm_dead_letters_total", Help: "Messages dead-lettered because they can never be processed.",
		}, []string{"queue"}),
		WaitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mm_ticket_wait_seconds", Help: "Time from ticket creation to its match.", Buckets: waitBuckets,
		}, []string{"queue"}),
		TimeToAssign: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			// The match message does not carry its tickets' creation
			// times; a ticket's whole wait is mm_ticket_wait_seconds
			// plus this.
			Name: "mm_match_time_to_assign_seconds", Help: "Time from a match's forming to its placement on a game server.", Buckets: waitBuckets,
		}, []string{"queue"}),
		LongPollsWaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mm_long_polls_waiting", Help: "Long-poll requests held open now.",
		}, []string{"kind"}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mm_http_requests_total", Help: "HTTP requests answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mm_http_request_duration_seconds", Help: "Time to answer an HTTP request, by route pattern, method and status code; long-polls and streams count their whole hold.",
			Buckets: waitBuckets,
		}, []string{"route", "method", "code"}),
		Repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mm_repairs_total",
			Help: "What died processes or lost writes left behind, repaired by the reaper, by kind: tickets announced again (republished), overdue matches sent to the assigners again (match_resent), stale player claims released (stale_claim), backfill fills added to their allocations (backfill_fill).",
		}, []string{"kind"}),
		Acceptance: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mm_acceptance_tickets_total",
			Help: "Tickets offered a match in a queue with accept_timeout, by how it went: in a match every ticket accepted (accepted), declined or cancelled (declined), did not answer in time (timed_out), sent back to searching when the match fell through (requeued).",
		}, []string{"queue", "outcome"}),
	}
	reg.MustRegister(m.TicketsCreated, m.TicketsFinished, m.MatchesFormed, m.Assignments, m.Requeues,
		m.DeadLetters, m.WaitSeconds, m.TimeToAssign, m.LongPollsWaiting, m.HTTPRequests, m.HTTPDuration, m.Repairs, m.Acceptance)
	return m
}

// NewUnregistered makes metrics registered nowhere, for tests and tools.
func NewUnregistered() *Metrics { return New(prometheus.NewRegistry()) }

// Package dashboard is the live view of a deployment that every service
// serves: a page embedded in the binary (GET /dashboard, no build step)
// that reads GET /v1/dashboard, the queues and the game servers as the
// store shows them, and looks tickets up through the front's
// GET /v1/tickets/{id}/explain. It also keeps the evidence the front's wait
// estimate comes from (pace.go).
package dashboard

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Store is what the dashboard reads.
type Store interface {
	Stats(ctx context.Context, now time.Time) (store.Stats, error)
	Candidates(ctx context.Context, queue string, skill, maxGap float64, limit int) ([]store.PoolEntry, error)
}

// Config is what a Dashboard is built from.
type Config struct {
	Queues *queues.Set
	Store  Store
	// Auth establishes who calls GET /v1/dashboard, which only a service
	// may; without one every call is refused.
	Auth *httpapi.Authenticator
	// Matches, if set, reads the cumulative count of matches formed per
	// queue (CounterByLabel of the process's own matcher metric), for the
	// matches per second; nil where the process runs no matcher.
	Matches func() map[string]float64
	Log     *slog.Logger
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Every is how often the store is read while someone looks
	// (DefaultEvery if zero); PoolLimit bounds the tickets read from each
	// queue's pool (DefaultPoolLimit if zero).
	Every     time.Duration
	PoolLimit int
}

// Defaults of Config. Two seconds keep a departure's time within a second
// either way; 5,000 tickets per read is about a megabyte from Redis.
const (
	DefaultEvery     = 2 * time.Second
	DefaultPoolLimit = 5000
	// idleAfter is how long after the last look (a dashboard read or a
	// wait estimate) the store is still read: nobody looking costs the
	// store nothing.
	idleAfter = 5 * time.Minute
	// wholePool is a skill gap wider than any two skills (the API bounds
	// them to ±1e9, and the party penalty to a few times that).
	wholePool = 1e15
)

// Dashboard serves the dashboard and keeps its figures.
type Dashboard struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	// wanted is when someone last looked, in Unix nanoseconds.
	wanted atomic.Int64
	// sampling is held while the store is read, so that reads do not
	// pile up behind a slow store.
	sampling sync.Mutex

	mu        sync.Mutex
	trackers  map[string]*tracker
	stats     store.Stats
	sampledAt time.Time
}

// New builds a Dashboard from cfg.
func New(cfg Config) *Dashboard {
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.PoolLimit <= 0 {
		cfg.PoolLimit = DefaultPoolLimit
	}
	d := &Dashboard{cfg: cfg, log: cfg.Log, now: cfg.Now, trackers: map[string]*tracker{}}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	return d
}

// Run reads the store every Every while someone has looked within the
// last five minutes, until ctx ends.
func (d *Dashboard) Run(ctx context.Context) error {
	tick := time.NewTicker(d.cfg.Every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if d.now().Sub(time.Unix(0, d.wanted.Load())) > idleAfter {
			continue
		}
		if err := d.sample(ctx, 0); err != nil && ctx.Err() == nil {
			d.log.Warn("reading the store for the dashboard", "err", err)
		}
	}
}

// touch notes that someone looks, which keeps Run reading.
func (d *Dashboard) touch() { d.wanted.Store(d.now().UnixNano()) }

// sample reads the store, unless a read younger than fresh is at hand.
func (d *Dashboard) sample(ctx context.Context, fresh time.Duration) error {
	d.sampling.Lock()
	defer d.sampling.Unlock()
	now := d.now()
	d.mu.Lock()
	last := d.sampledAt
	d.mu.Unlock()
	if fresh > 0 && !last.IsZero() && now.Sub(last) < fresh {
		return nil
	}
	st, err := d.cfg.Store.Stats(ctx, now)
	if err != nil {
		return fmt.Errorf("reading the store's counts: %w", err)
	}
	names := d.cfg.Queues.Names()
	pools := make([][]store.PoolEntry, len(names))
	for i, name := range names {
		if pools[i], err = d.cfg.Store.Candidates(ctx, name, 0, wholePool, d.cfg.PoolLimit+1); err != nil {
			return fmt.Errorf("reading the pool of %s: %w", name, err)
		}
	}
	var matches map[string]float64
	if d.cfg.Matches != nil {
		matches = d.cfg.Matches()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, name := range names {
		tr := d.trackers[name]
		if tr == nil {
			tr = &tracker{}
			d.trackers[name] = tr
		}
		complete := len(pools[i]) <= d.cfg.PoolLimit
		tr.observe(now, pools[i][:min(len(pools[i]), d.cfg.PoolLimit)], complete, 3*d.cfg.Every)
		if matches != nil {
			tr.countMatches(now, matches[name])
		}
	}
	d.stats, d.sampledAt = st, now
	return nil
}

// EstimateWait estimates how much longer a ticket of queue, of matching
// skill skill, that has waited waited, will wait (pace.go); it implements
// front.WaitEstimator. Asking keeps the store being read, so the first
// estimates come a few samples after the first ask.
func (d *Dashboard) EstimateWait(queue string, skill float64, waited time.Duration) (contracts.WaitEstimate, bool) {
	d.touch()
	d.mu.Lock()
	defer d.mu.Unlock()
	tr := d.trackers[queue]
	if tr == nil {
		return contracts.WaitEstimate{}, false
	}
	return tr.estimate(waited, skill)
}

// read is the dashboard as of a read of the store at most Every old.
func (d *Dashboard) read(ctx context.Context) (contracts.Dashboard, error) {
	d.touch()
	if err := d.sample(ctx, d.cfg.Every); err != nil {
		return contracts.Dashboard{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := contracts.Dashboard{At: d.sampledAt.UTC(), Queues: []contracts.DashboardQueue{}, Regions: []contracts.DashboardRegion{}}
	for _, name := range d.cfg.Queues.Names() {
		q, _ := d.cfg.Queues.Get(name)
		qs := d.stats.Queues[name]
		view := contracts.DashboardQueue{
			Name:             name,
			PlayersPerMatch:  q.PlayersPerMatch(),
			Searching:        qs.Searching,
			Pooled:           qs.Pooled,
			WaitingForServer: qs.WaitingForServer,
			Bands:            []contracts.SkillBand{},
		}
		if tr := d.trackers[name]; tr != nil {
			view.Bands = bands(tr.latest)
			view.PoolTruncated = tr.truncated
			view.WaitingNow = tr.waitingNow()
			view.RecentWaits = tr.recentWaits()
			view.PoolDeparturesPerSecond = tr.departureRate()
			view.MatchesPerSecond = tr.matchRate()
		}
		out.Queues = append(out.Queues, view)
	}
	for _, name := range slices.Sorted(maps.Keys(d.stats.Regions)) {
		rs := d.stats.Regions[name]
		out.Regions = append(out.Regions, contracts.DashboardRegion{Name: name, Servers: rs.Servers, Live: rs.Live,
			Draining: rs.Draining, FreeSlots: rs.FreeSlots})
	}
	return out, nil
}

// maxBands bounds the bands a queue is shown in: the band width is the
// narrowest of 1, 2 or 5 times a power of ten that keeps the pool's skill
// range within it.
const maxBands = 20

// bands counts the entries by skill band and best region.
func bands(entries []store.PoolEntry) []contracts.SkillBand {
	out := []contracts.SkillBand{}
	if len(entries) == 0 {
		return out
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, e := range entries {
		lo, hi = min(lo, e.Skill), max(hi, e.Skill)
	}
	width := bandWidth(hi - lo)
	byFrom := map[float64]*contracts.SkillBand{}
	for _, e := range entries {
		from := math.Floor(e.Skill/width) * width
		b := byFrom[from]
		if b == nil {
			b = &contracts.SkillBand{From: from, To: from + width, Regions: map[string]int{}}
			byFrom[from] = b
		}
		b.Tickets++
		b.Players += e.Players
		b.Regions[bestRegion(e.Latencies)]++
	}
	for _, from := range slices.Sorted(maps.Keys(byFrom)) {
		out = append(out, *byFrom[from])
	}
	return out
}

func bandWidth(span float64) float64 {
	for width := 1.0; ; width *= 10 {
		for _, m := range []float64{1, 2, 5} {
			// One band more than the span needs, for where the range
			// falls across band edges.
			if span/(m*width) <= maxBands-1 {
				return max(m*width, 10) // finer than 10 points says nothing
			}
		}
	}
}

// bestRegion is the region of the lowest latency (ties to the name first
// in order), or RegionAny for a ticket that states none.
func bestRegion(latencies map[string]float64) string {
	best, bestMS := contracts.RegionAny, math.Inf(1)
	for _, r := range slices.Sorted(maps.Keys(latencies)) {
		if ms := latencies[r]; ms < bestMS {
			best, bestMS = r, ms
		}
	}
	return best
}

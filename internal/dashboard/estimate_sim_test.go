package dashboard

import (
	"context"
	"flag"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/matcher/sim"
)

// allQueues runs the measurement on every example queue; by default only
// on duel, which takes seconds where the others take up to a minute under
// the race detector.
var allQueues = flag.Bool("estimate.all", false, "measure the wait estimate on every example queue")

// TestEstimateAgainstSimulation measures the wait estimate's error on the
// simulator's runs of the example queues. The simulator reports when each
// ticket arrived and when it was matched or expired; since its broker
// delivers at once, a ticket not matched on arrival is in the pool from
// its arrival to its end. So the pool at any virtual moment is known, and
// the test samples it every two seconds as the dashboard samples the store,
// feeds the samples to a tracker, and compares what the tracker predicts
// for every pooled ticket at every sample with how much longer that
// ticket actually waited. It fails only if the estimate is no better than
// the naive one (the queue's mean time in the pool, by Little's law), and
// logs the figures; go test -run TestEstimateAgainstSimulation -v
// -estimate.all ./internal/dashboard/ prints them for every example queue.
func TestEstimateAgainstSimulation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the simulator")
	}
	set, err := queues.LoadFile("../../examples/queues.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		queue   string
		parties []sim.PartyShare
	}{
		{"duel", nil},
		{"ranked-2v2", []sim.PartyShare{{Size: 1, Share: 0.7}, {Size: 2, Share: 0.3}}},
		{"ranked-5v5", []sim.PartyShare{{Size: 1, Share: 0.6}, {Size: 2, Share: 0.2}, {Size: 5, Share: 0.2}}},
		{"brawl", nil},
	} {
		t.Run(tc.queue, func(t *testing.T) {
			if !*allQueues && tc.queue != "duel" {
				t.Skip("set -estimate.all")
			}
			q, ok := set.Get(tc.queue)
			if !ok {
				t.Fatalf("no queue %s in examples/queues.yaml", tc.queue)
			}
			res, err := sim.Run(context.Background(), sim.Config{
				Queue: q, Seed: 1, Rate: 40, Duration: 4 * time.Minute,
				SkillMean: 1500, SkillStdDev: 300, PartyStdDev: 100, Parties: tc.parties,
				Regions: []sim.RegionShare{{Name: "eu-west", Share: 1}, {Name: "us-east", Share: 1}, {Name: "ap-south", Share: 1}},
				Hop:     60,
			})
			if err != nil {
				t.Fatal(err)
			}
			m := measure(res, 4*time.Minute)
			t.Logf("%s: %d predictions (%.0f %% of pooled ticket-samples); |error| of the median: p50 %.2f s, p90 %.2f s; "+
				"actual ≤ predicted p90: %.0f %%; Little's law |error| p50 %.2f s, p90 %.2f s; actual remaining p50 %.2f s, p90 %.2f s",
				tc.queue, m.n, 100*m.coverage, m.p50, m.p90, 100*m.underP90, m.littleP50, m.littleP90, m.actualP50, m.actualP90)
			if m.n == 0 {
				t.Fatal("no prediction made")
			}
			if m.p50 > m.littleP50 {
				t.Errorf("median |error| %.2f s, worse than Little's law's %.2f s", m.p50, m.littleP50)
			}
		})
	}
}

type measured struct {
	n                    int
	coverage             float64 // predictions made ÷ pooled ticket-samples
	p50, p90             float64 // of |predicted median − actual|, seconds
	underP90             float64 // share of actual ≤ predicted p90
	littleP50, littleP90 float64
	actualP50, actualP90 float64 // of the remaining waits themselves
}

// measure replays the pool of res through a tracker, sampling every 2 s
// over the arrival stream's duration (the drain after it is not the
// steady state the estimate is for).
func measure(res *sim.Result, duration time.Duration) measured {
	const every = 2 * time.Second
	var (
		tr                   tracker
		errs, lerrs, actuals []float64
		under                int
		samples              int
		pooledSum            float64
		pooledCount          int
	)
	// Tickets matched on arrival never entered the pool.
	var pooled []sim.Ticket
	for _, tk := range res.Tickets {
		if tk.Ended.After(tk.CreatedAt) {
			pooled = append(pooled, tk)
		}
	}
	start := sim.Epoch
	for at := start.Add(every); at.Before(start.Add(duration)); at = at.Add(every) {
		var entries []store.PoolEntry
		var ends []time.Time
		for _, tk := range pooled {
			if !tk.CreatedAt.After(at) && tk.Ended.After(at) {
				entries = append(entries, store.PoolEntry{TicketID: tk.ID, Skill: tk.Skill, Players: len(tk.Players), CreatedAt: tk.CreatedAt})
				ends = append(ends, tk.Ended)
			}
		}
		tr.observe(at, entries, true, 3*every)
		pooledSum += float64(len(entries))
		pooledCount++
		// Little's law over the evidence's span: mean time in the pool
		// is the mean pool size over the departure rate.
		little := math.NaN()
		if span := min(at.Sub(start), keepFor).Seconds(); len(tr.left) > 0 {
			little = pooledSum / float64(pooledCount) / (float64(len(tr.left)) / span)
		}
		for i, e := range entries {
			samples++
			actual := ends[i].Sub(at).Seconds()
			actuals = append(actuals, actual)
			if est, ok := tr.estimate(at.Sub(e.CreatedAt), e.Skill); ok {
				errs = append(errs, math.Abs(est.RemainingSeconds-actual))
				if actual <= est.P90RemainingSeconds {
					under++
				}
			}
			if !math.IsNaN(little) {
				lerrs = append(lerrs, math.Abs(little-actual))
			}
		}
	}
	m := measured{n: len(errs)}
	if samples > 0 {
		m.coverage = float64(len(errs)) / float64(samples)
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		m.p50, m.p90 = quantile(errs, 0.5), quantile(errs, 0.9)
		m.underP90 = float64(under) / float64(len(errs))
	}
	if len(actuals) > 0 {
		slices.Sort(actuals)
		m.actualP50, m.actualP90 = quantile(actuals, 0.5), quantile(actuals, 0.9)
	}
	if len(lerrs) > 0 {
		slices.Sort(lerrs)
		m.littleP50, m.littleP90 = quantile(lerrs, 0.5), quantile(lerrs, 0.9)
	}
	return m
}

package dashboard

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// The wait estimate is read off the pool itself, because the pool is what
// every process can see: the store keeps no count of matches, and in the
// distributed mode a front or an assigner never sees a matcher's metrics.
// Each sample reads the whole pool of a queue; a ticket that was in the
// previous sample and is not in this one has left it (matched, cancelled or
// expired) somewhere between the two, and how long it had waited is known
// to within half the sampling interval. The waits of the tickets that left
// in the last few minutes are the evidence: a ticket that has waited w is
// told how much longer than w those that waited longer than w went on
// waiting (median and p90), among them the nearest in skill.
// estimate_sim_test.go measures the error on the simulator's runs.
//
// What this cannot see, and so what the figures are not: tickets matched on
// arrival never enter the pool, and tickets that enter and leave between
// two samples are missed, so the waits are those of tickets that had to
// wait, skewed long; which is the population a waiting player belongs to.
// A pool larger than the read limit makes the difference between samples
// meaningless, and no departures are recorded until it shrinks again.

// tracker follows one queue's pool from sample to sample.
type tracker struct {
	// prev is the previous sample, by ticket id, if it was complete.
	prev   map[string]store.PoolEntry
	prevAt time.Time
	// since is when the current run of complete samples, each close
	// enough to the one before to compare, began; zero outside one.
	since time.Time

	// latest is the last sample, complete or not.
	latest    []store.PoolEntry
	latestAt  time.Time
	truncated bool

	// left holds the recent departures, oldest first.
	left []departure

	// matches holds samples of a cumulative count of matches formed,
	// when the process can see one (its own matcher's metric).
	matches []countSample
}

type departure struct {
	at    time.Time
	wait  time.Duration
	skill float64
}

type countSample struct {
	at    time.Time
	count float64
}

// Limits of what a tracker keeps. keepFor is the span of the evidence:
// long enough to hold a few hundred departures of a quiet queue, short
// enough to follow the load as it changes in an evening. maxDepartures
// bounds the memory of a busy queue (the most recent are kept).
const (
	keepFor       = 5 * time.Minute
	maxDepartures = 8192
	// minEvidence is the fewest departures an estimate is made from, and
	// nearestEvidence the fewest of the nearest in skill it keeps.
	minEvidence     = 5
	nearestEvidence = 20
	// rateOver is the span the rates (departures and matches per
	// second) are measured over.
	rateOver = time.Minute
)

// observe records a sample of the pool taken at now. complete says the
// sample holds the whole pool; maxGap is the longest interval across
// which two samples are compared, past which a departure's time is too
// vague to count.
func (tr *tracker) observe(now time.Time, entries []store.PoolEntry, complete bool, maxGap time.Duration) {
	compared := tr.prev != nil && complete && now.After(tr.prevAt) && now.Sub(tr.prevAt) <= maxGap
	if compared {
		// A ticket left at some moment between the samples: the middle
		// is off by at most half the interval either way.
		at := tr.prevAt.Add(now.Sub(tr.prevAt) / 2)
		seen := make(map[string]bool, len(entries))
		for _, e := range entries {
			seen[e.TicketID] = true
		}
		for id, e := range tr.prev {
			if !seen[id] {
				tr.left = append(tr.left, departure{at: at, wait: at.Sub(e.CreatedAt), skill: e.Skill})
			}
		}
	}
	tr.latest, tr.latestAt, tr.truncated = entries, now, !complete
	switch {
	case !complete:
		tr.since = time.Time{}
	case !compared:
		tr.since = now
	}
	if complete {
		tr.prev = make(map[string]store.PoolEntry, len(entries))
		for _, e := range entries {
			tr.prev[e.TicketID] = e
		}
		tr.prevAt = now
	} else {
		tr.prev = nil
	}
	tr.forget(now)
}

// countMatches records the cumulative count of matches formed at now.
func (tr *tracker) countMatches(now time.Time, count float64) {
	tr.matches = append(tr.matches, countSample{at: now, count: count})
	cut := 0
	for cut < len(tr.matches)-1 && now.Sub(tr.matches[cut+1].at) >= rateOver {
		cut++
	}
	tr.matches = tr.matches[cut:]
}

// forget drops the departures past keepFor, and the oldest past
// maxDepartures.
func (tr *tracker) forget(now time.Time) {
	cut := 0
	for cut < len(tr.left) && now.Sub(tr.left[cut].at) > keepFor {
		cut++
	}
	cut = max(cut, len(tr.left)-maxDepartures)
	if cut > 0 {
		tr.left = slices.Delete(tr.left, 0, cut)
	}
}

// estimate is how much longer a ticket of matching skill skill that has
// waited waited is likely to wait: the median and p90 of (w − waited) over
// the recent departures whose wait w was longer than waited, and among
// those the nearest in skill (a quarter of them, and at least
// nearestEvidence): the skill tails wait two to three times as long as the
// middle, and measured on the simulator this cuts the error by a tenth.
// ok is false with too little evidence.
func (tr *tracker) estimate(waited time.Duration, skill float64) (contracts.WaitEstimate, bool) {
	type longer struct{ gap, rest float64 }
	var ls []longer
	for _, d := range tr.left {
		if d.wait > waited {
			ls = append(ls, longer{gap: math.Abs(d.skill - skill), rest: (d.wait - waited).Seconds()})
		}
	}
	if len(ls) < minEvidence {
		return contracts.WaitEstimate{}, false
	}
	slices.SortStableFunc(ls, func(a, b longer) int { return cmp.Compare(a.gap, b.gap) })
	rest := make([]float64, min(len(ls), max(nearestEvidence, len(ls)/4)))
	for i := range rest {
		rest[i] = ls[i].rest
	}
	slices.Sort(rest)
	return contracts.WaitEstimate{
		RemainingSeconds:    seconds(quantile(rest, 0.5)),
		P90RemainingSeconds: seconds(quantile(rest, 0.9)),
		BasedOn:             len(rest),
		Method:              contracts.EstimateFromPoolDepartures,
	}, true
}

// recentWaits are the percentiles of the waits of the tickets that left
// the pool within keepFor of now; nil if none did.
func (tr *tracker) recentWaits() *contracts.Percentiles {
	waits := make([]float64, len(tr.left))
	for i, d := range tr.left {
		waits[i] = d.wait.Seconds()
	}
	return percentiles(waits)
}

// waitingNow are the percentiles of how long the tickets of the latest
// sample had waited then.
func (tr *tracker) waitingNow() *contracts.Percentiles {
	waits := make([]float64, len(tr.latest))
	for i, e := range tr.latest {
		waits[i] = tr.latestAt.Sub(e.CreatedAt).Seconds()
	}
	return percentiles(waits)
}

// departureRate is how many tickets left the pool per second over the
// last rateOver of the current run of complete samples (or all of it, if
// shorter); nil before it spans a second.
func (tr *tracker) departureRate() *float64 {
	if tr.truncated || tr.since.IsZero() {
		return nil
	}
	span := min(rateOver, tr.latestAt.Sub(tr.since))
	if span < time.Second {
		return nil
	}
	n := 0
	for _, d := range tr.left {
		if d.at.After(tr.latestAt.Add(-span)) {
			n++
		}
	}
	return ptr(round3(float64(n) / span.Seconds()))
}

// matchRate is matches formed per second over the samples of the last
// rateOver, or nil without two samples.
func (tr *tracker) matchRate() *float64 {
	if len(tr.matches) < 2 {
		return nil
	}
	first, last := tr.matches[0], tr.matches[len(tr.matches)-1]
	span := last.at.Sub(first.at).Seconds()
	if span <= 0 {
		return nil
	}
	// A counter only goes down when its process restarts, which this
	// one has not; max guards a rounding surprise.
	return ptr(round3(max(0, last.count-first.count) / span))
}

func percentiles(v []float64) *contracts.Percentiles {
	if len(v) == 0 {
		return nil
	}
	slices.Sort(v)
	return &contracts.Percentiles{
		Count: len(v),
		P50:   seconds(quantile(v, 0.5)),
		P90:   seconds(quantile(v, 0.9)),
		P99:   seconds(quantile(v, 0.99)),
		Max:   seconds(v[len(v)-1]),
	}
}

// quantile is the q-quantile of sorted v, by the nearest rank.
func quantile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// seconds rounds a number of seconds to the millisecond, past which the
// figures mean nothing.
func seconds(s float64) float64 { return round3(max(s, 0)) }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func ptr[T any](v T) *T { return &v }

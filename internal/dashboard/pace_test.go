package dashboard

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/internal/store"
)

var t0 = time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC)

func pooled(id string, createdAt time.Time, skill float64) store.PoolEntry {
	return store.PoolEntry{TicketID: id, Skill: skill, Players: 1, CreatedAt: createdAt}
}

// TestTrackerDepartures: a ticket in one complete sample and not in the
// next has left, at the middle of the interval; nothing is counted across
// an incomplete sample or too long a gap.
func TestTrackerDepartures(t *testing.T) {
	const gap = 6 * time.Second
	a, b := pooled("a", t0, 1500), pooled("b", t0.Add(time.Second), 1600)
	type sample struct {
		after    time.Duration
		entries  []store.PoolEntry
		complete bool
	}
	for _, tc := range []struct {
		name    string
		samples []sample
		waits   []time.Duration // of the departures, in order
	}{
		{"one leaves", []sample{{2 * time.Second, []store.PoolEntry{a, b}, true}, {4 * time.Second, []store.PoolEntry{b}, true}},
			[]time.Duration{3 * time.Second}},
		{"both leave", []sample{{2 * time.Second, []store.PoolEntry{a, b}, true}, {4 * time.Second, nil, true}},
			[]time.Duration{2 * time.Second, 3 * time.Second}},
		{"nobody leaves", []sample{{2 * time.Second, []store.PoolEntry{a}, true}, {4 * time.Second, []store.PoolEntry{a, b}, true}}, nil},
		{"after an incomplete sample", []sample{{2 * time.Second, []store.PoolEntry{a, b}, false}, {4 * time.Second, []store.PoolEntry{b}, true}}, nil},
		{"before an incomplete sample", []sample{{2 * time.Second, []store.PoolEntry{a, b}, true}, {4 * time.Second, []store.PoolEntry{b}, false}}, nil},
		{"across a long gap", []sample{{2 * time.Second, []store.PoolEntry{a, b}, true}, {20 * time.Second, []store.PoolEntry{b}, true}}, nil},
		{"the first sample", []sample{{2 * time.Second, []store.PoolEntry{b}, true}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr tracker
			for _, s := range tc.samples {
				tr.observe(t0.Add(s.after), s.entries, s.complete, gap)
			}
			var got []time.Duration
			for _, d := range tr.left {
				got = append(got, d.wait)
			}
			// The previous sample is a map: compare in order of wait.
			slices.Sort(got)
			if fmt.Sprint(got) != fmt.Sprint(tc.waits) {
				t.Errorf("departures waited %v, want %v", got, tc.waits)
			}
		})
	}
}

// trackerWith is a tracker that saw tickets leave after each of waits,
// all near skill 1500, the last at now.
func trackerWith(now time.Time, waits ...time.Duration) *tracker {
	tr := &tracker{latestAt: now}
	for _, w := range waits {
		tr.left = append(tr.left, departure{at: now, wait: w, skill: 1500})
	}
	return tr
}

func TestTrackerEstimate(t *testing.T) {
	secs := func(s ...float64) []time.Duration {
		out := make([]time.Duration, len(s))
		for i, v := range s {
			out[i] = time.Duration(v * float64(time.Second))
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		waits     []time.Duration
		waited    time.Duration
		ok        bool
		rest, p90 float64
		basedOn   int
	}{
		{"too little evidence", secs(1, 2, 3, 4), 0, false, 0, 0, 0},
		{"from the start", secs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0, true, 5, 9, 10},
		// Only the tickets that waited longer than 4 s count, and for
		// each how much longer: 1 to 6 s.
		{"after a wait", secs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 4 * time.Second, true, 3, 6, 6},
		{"longer than all but four", secs(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 6 * time.Second, false, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			est, ok := trackerWith(t0, tc.waits...).estimate(tc.waited, 1500)
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v (%+v)", ok, tc.ok, est)
			}
			if ok && (est.RemainingSeconds != tc.rest || est.P90RemainingSeconds != tc.p90 || est.BasedOn != tc.basedOn || est.Method == "") {
				t.Errorf("estimate %+v, want %v s, p90 %v s, from %d", est, tc.rest, tc.p90, tc.basedOn)
			}
		})
	}
}

// TestTrackerEstimateNearInSkill: among many departures, those nearest in
// skill decide.
func TestTrackerEstimateNearInSkill(t *testing.T) {
	tr := &tracker{}
	for i := range 100 {
		// The far ones waited 60 s, the near ones 2 s.
		skill, wait := 2500.0, time.Minute
		if i%2 == 0 {
			skill, wait = 1500, 2*time.Second
		}
		tr.left = append(tr.left, departure{at: t0, wait: wait, skill: skill})
	}
	near, _ := tr.estimate(0, 1510)
	far, _ := tr.estimate(0, 2490)
	if near.RemainingSeconds != 2 || far.RemainingSeconds != 60 || near.BasedOn != 25 {
		t.Errorf("near %+v, far %+v", near, far)
	}
}

func TestTrackerForgets(t *testing.T) {
	var tr tracker
	tr.left = []departure{{at: t0, wait: time.Second}, {at: t0.Add(4 * time.Minute), wait: time.Second}}
	tr.forget(t0.Add(keepFor + time.Minute))
	if len(tr.left) != 1 {
		t.Errorf("%d departures kept, want 1", len(tr.left))
	}
	for range maxDepartures + 10 {
		tr.left = append(tr.left, departure{at: t0.Add(5 * time.Minute)})
	}
	tr.forget(t0.Add(5 * time.Minute))
	if len(tr.left) != maxDepartures {
		t.Errorf("%d departures kept, want %d", len(tr.left), maxDepartures)
	}
}

func TestTrackerRates(t *testing.T) {
	var tr tracker
	entries := []store.PoolEntry{}
	for i := range 30 {
		entries = append(entries, pooled(fmt.Sprint(i), t0, 1500))
	}
	// One ticket leaves every 2 s, for 40 s: half a ticket per second.
	for i := range 21 {
		tr.observe(t0.Add(time.Duration(i)*2*time.Second), entries[i:], true, 6*time.Second)
		tr.countMatches(t0.Add(time.Duration(i)*2*time.Second), float64(3*i))
	}
	if r := tr.departureRate(); r == nil || *r != 0.5 {
		t.Errorf("departures per second %v, want 0.5", deref(r))
	}
	if r := tr.matchRate(); r == nil || *r != 1.5 {
		t.Errorf("matches per second %v, want 1.5", deref(r))
	}
	if w := tr.waitingNow(); w == nil || w.Count != 10 || w.Max != 40 {
		t.Errorf("waiting now %+v", w)
	}
	if w := tr.recentWaits(); w == nil || w.Count != 20 || w.P50 != 19 || w.Max != 39 {
		t.Errorf("recent waits %+v", w)
	}
	// Incomplete: no rate, since what left cannot be told.
	tr.observe(t0.Add(42*time.Second), entries, false, 6*time.Second)
	if r := tr.departureRate(); r != nil {
		t.Errorf("departures per second %v from an incomplete sample", *r)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

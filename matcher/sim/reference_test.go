package sim

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// randomSearchers draws n tickets arriving over span seconds, each
// searching for up to wait seconds, with integer skills and party sizes up
// to maxParty.
func randomSearchers(rng *rand.Rand, n int, span, wait float64, maxParty int) []searcher {
	ts := make([]searcher, n)
	for i := range ts {
		from := time.Duration(rng.Float64() * span * float64(time.Second))
		if rng.IntN(8) == 0 && i > 0 {
			from = ts[rng.IntN(i)].from // arrivals at the same instant happen
		}
		ts[i] = searcher{
			from:    from,
			to:      from + time.Duration(rng.Float64()*wait*float64(time.Second)),
			skill:   float64(rng.IntN(60)),
			players: 1 + rng.IntN(maxParty),
		}
	}
	return ts
}

// bestPairing tries every perfect pairing of tickets that meet; +Inf when
// there is none.
func bestPairing(ts []searcher) float64 {
	used := make([]bool, len(ts))
	var try func() float64
	try = func() float64 {
		i := 0
		for i < len(ts) && used[i] {
			i++
		}
		if i == len(ts) {
			return 0
		}
		used[i] = true
		best := math.Inf(1)
		for j := i + 1; j < len(ts); j++ {
			if used[j] || !ts[i].meets(&ts[j]) {
				continue
			}
			used[j] = true
			best = min(best, math.Abs(ts[i].skill-ts[j].skill)+try())
			used[j] = false
		}
		used[i] = false
		return best
	}
	return try()
}

// TestMinPairGapAgainstBruteForce checks the duel reference against every
// pairing of small random instances: never above the best, equal to it
// when it says it is exact, with a pairing of that cost that keeps the
// rule; and exact on most instances, so that the check is not vacuous.
func TestMinPairGapAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	cases, exact, infeasible := 0, 0, 0
	for range 2000 {
		n := 2 * (1 + rng.IntN(5))
		ts := randomSearchers(rng, n, 10, 2+10*rng.Float64(), 1)
		best := bestPairing(ts)
		g, err := minPairGap(ts, meetingArcs(ts))
		if math.IsInf(best, 1) {
			// The relaxation may still find an assignment (of odd
			// cycles), but never a pairing.
			infeasible++
			if err == nil && g.Exact {
				t.Fatalf("%v: no pairing exists, minPairGap found %+v", ts, g)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v, but a pairing of cost %g exists", ts, err, best)
		}
		cases++
		if g.Value > best+1e-9 {
			t.Fatalf("%v: minPairGap %g above the best pairing %g", ts, g.Value, best)
		}
		if !g.Exact {
			continue
		}
		exact++
		if math.Abs(g.Value-best) > 1e-9 {
			t.Fatalf("%v: minPairGap says exact %g, the best pairing costs %g", ts, g.Value, best)
		}
		seen := make(map[int]bool)
		sum := 0.0
		for _, p := range g.Pairs {
			if seen[p[0]] || seen[p[1]] || !ts[p[0]].meets(&ts[p[1]]) {
				t.Fatalf("%v: pairing %v repeats a ticket or pairs tickets that never meet", ts, g.Pairs)
			}
			seen[p[0]], seen[p[1]] = true, true
			sum += math.Abs(ts[p[0]].skill - ts[p[1]].skill)
		}
		if len(seen) != n || math.Abs(sum-g.Value) > 1e-9 {
			t.Fatalf("%v: pairing %v covers %d of %d tickets at cost %g, want %g", ts, g.Pairs, len(seen), n, sum, g.Value)
		}
	}
	t.Logf("%d feasible cases, %d exact, %d infeasible", cases, exact, infeasible)
	if cases < 1000 || infeasible == 0 || exact < cases*3/4 {
		t.Fatalf("%d feasible cases, %d exact, %d infeasible: the instances do not test much", cases, exact, infeasible)
	}
}

func TestMinPairGapCases(t *testing.T) {
	s := func(from, to float64, skill float64) searcher {
		return searcher{from: time.Duration(from * float64(time.Second)), to: time.Duration(to * float64(time.Second)), skill: skill, players: 1}
	}
	tests := []struct {
		name string
		ts   []searcher
		want float64
		ok   bool
	}{
		{"nothing", nil, 0, true},
		{"one pair", []searcher{s(0, 1, 10), s(0.5, 0.5, 30)}, 20, true},
		// Sorted neighbours (10,11) and (50,51) never meet; time forces
		// (10,50) and (11,51).
		{"time overrules skill", []searcher{s(0, 1, 10), s(5, 6, 11), s(0, 1, 50), s(5, 6, 51)}, 80, true},
		{"time allows the neighbours", []searcher{s(0, 1, 10), s(0.5, 1, 11), s(5, 6, 50), s(5, 6, 51)}, 2, true},
		{"strangers", []searcher{s(0, 1, 10), s(2, 3, 11)}, 0, false},
		{"touching ends meet", []searcher{s(0, 1, 0), s(1, 2, 7)}, 7, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := minPairGap(tt.ts, meetingArcs(tt.ts))
			if (err == nil) != tt.ok {
				t.Fatalf("minPairGap: %v, want ok %t", err, tt.ok)
			}
			if tt.ok && (!g.Exact || g.Value != tt.want) {
				t.Errorf("minPairGap = %+v, want exact %g", g, tt.want)
			}
		})
	}
}

// bestGrouping tries every split of ts into exactly groups groups of
// minSize to maxSize players whose tickets meet at one moment.
func bestGrouping(ts []searcher, groups, minSize, maxSize int) float64 {
	assign := make([]int, len(ts))
	best := math.Inf(1)
	var try func(i, used int)
	try = func(i, used int) {
		if i == len(ts) {
			if used != groups {
				return
			}
			total := 0.0
			for g := range groups {
				lo, hi, players := math.Inf(1), math.Inf(-1), 0
				var from, to time.Duration = math.MinInt64, math.MaxInt64
				for j, a := range assign {
					if a == g {
						lo, hi = min(lo, ts[j].skill), max(hi, ts[j].skill)
						players += ts[j].players
						from, to = max(from, ts[j].from), min(to, ts[j].to)
					}
				}
				if players < minSize || players > maxSize || from > to {
					return
				}
				total += hi - lo
			}
			best = min(best, total)
			return
		}
		for g := 0; g <= used && g < groups; g++ {
			assign[i] = g
			try(i+1, max(used, g+1))
		}
	}
	try(0, 0)
	return best
}

// TestGroupGapBoundAgainstBruteForce checks the team and free-for-all
// bound against every grouping of small random instances, parties
// included: never above the best; and not trivially zero.
func TestGroupGapBoundAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 1))
	cases, positive, tight := 0, 0, 0
	for range 3000 {
		minSize := 2 + rng.IntN(3)
		maxSize := minSize + rng.IntN(2)
		n := 2 + rng.IntN(7)
		ts := randomSearchers(rng, n, 6, 1+6*rng.Float64(), 2)
		players := 0
		for _, s := range ts {
			players += s.players
		}
		groups := players / maxSize
		if groups*maxSize < players {
			groups++
		}
		best := bestGrouping(ts, groups, minSize, maxSize)
		if math.IsInf(best, 1) {
			continue
		}
		cases++
		got := groupGapBound(ts, groups, minSize, maxSize)
		if got > best+1e-9 {
			t.Fatalf("%+v into %d groups of %d–%d: bound %g above the best grouping %g", ts, groups, minSize, maxSize, got, best)
		}
		if got > 0 {
			positive++
		}
		if math.Abs(got-best) < 1e-9 {
			tight++
		}
	}
	t.Logf("%d cases, %d with a positive bound, %d tight", cases, positive, tight)
	if cases < 300 || positive < cases/2 {
		t.Fatalf("%d cases, %d with a positive bound (%d tight): the instances do not test much", cases, positive, tight)
	}
}

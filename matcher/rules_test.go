package matcher

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// entry is a pool entry for a party of size players at skill that has
// waited the given time at t0.
func entry(id string, skill float64, players int, waited time.Duration, lat map[string]float64) store.PoolEntry {
	e := store.PoolEntry{TicketID: id, Skill: skill, Players: players, CreatedAt: t0.Add(-waited), Latencies: lat}
	for i := range players {
		e.Party = append(e.Party, contracts.Player{ID: fmt.Sprintf("%s.%d", id, i), Skill: skill})
	}
	return e
}

func TestWindowWidens(t *testing.T) {
	w := queues.Window{Initial: 50, PerSecond: 25, Max: 200}
	tests := []struct {
		waited time.Duration
		want   float64
	}{
		{-time.Second, 50},
		{0, 50},
		{2 * time.Second, 100},
		{6 * time.Second, 200},
		{time.Hour, 200},
	}
	for _, tt := range tests {
		if got := w.At(tt.waited); got != tt.want {
			t.Errorf("At(%v) = %v, want %v", tt.waited, got, tt.want)
		}
	}
	q := queues.Duel()
	if got := q.LatencyLimit(time.Hour); !math.IsInf(got, 1) {
		t.Errorf("LatencyLimit with no latency rule = %v, want +Inf", got)
	}
	q.Latency = queues.Window{Initial: 50, PerSecond: 10, Max: 100}
	if got := q.LatencyLimit(3 * time.Second); got != 80 {
		t.Errorf("LatencyLimit(3s) = %v, want 80", got)
	}
}

func TestPartySkill(t *testing.T) {
	q := queues.Duel()
	tests := []struct {
		spread float64
		skills []float64
		want   float64
	}{
		{0, []float64{1000, 1200, 1700}, 1300},
		{0.5, []float64{1000, 1200, 1700}, 1300 + 350},
		{0.5, []float64{1500}, 1500},
		{0.5, nil, 0},
	}
	for _, tt := range tests {
		q.PartySpread = tt.spread
		if got := q.PartySkill(tt.skills); got != tt.want {
			t.Errorf("PartySkill(%v) with spread %v = %v, want %v", tt.skills, tt.spread, got, tt.want)
		}
	}
}

func TestSharedRegion(t *testing.T) {
	limited := queues.Duel()
	limited.Latency = queues.Window{Initial: 100, PerSecond: 10, Max: 200}
	open := queues.Duel()
	e := func(waited time.Duration, lat map[string]float64) store.PoolEntry {
		return entry("x", 1500, 1, waited, lat)
	}
	tests := []struct {
		name    string
		q       queues.Queue
		entries []store.PoolEntry
		want    string
		wantOK  bool
	}{
		{"nobody states latencies: any region", open, []store.PoolEntry{e(0, nil), e(0, nil)}, "", true},
		{"one states latencies: its best region", open,
			[]store.PoolEntry{e(0, map[string]float64{"eu": 30, "us": 20}), e(0, nil)}, "us", true},
		{"lowest worst latency wins", open, []store.PoolEntry{
			e(0, map[string]float64{"eu": 30, "us": 90}), e(0, map[string]float64{"eu": 80, "us": 40})}, "eu", true},
		{"no region in common", open, []store.PoolEntry{
			e(0, map[string]float64{"eu": 30}), e(0, map[string]float64{"us": 30})}, "", false},
		{"the limit excludes a region", limited, []store.PoolEntry{
			e(0, map[string]float64{"eu": 30, "us": 150}), e(0, map[string]float64{"eu": 120, "us": 40})}, "", false},
		{"the limit widens with the ticket's own wait", limited, []store.PoolEntry{
			e(0, map[string]float64{"eu": 30, "us": 150}), e(3*time.Second, map[string]float64{"eu": 120, "us": 40})}, "eu", true},
		{"ties go to the first name", open, []store.PoolEntry{e(0, map[string]float64{"us": 10, "eu": 10})}, "eu", true},
		{"three tickets", open, []store.PoolEntry{
			e(0, map[string]float64{"eu": 10, "us": 50, "ap": 20}), e(0, map[string]float64{"us": 60, "ap": 70}), e(0, nil)}, "us", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := sharedRegion(&tt.q, tt.entries, t0)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("sharedRegion = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func fiveVFive() queues.Queue {
	q := queues.Duel()
	q.Name, q.Teams, q.TeamSize = "5v5", 2, 5
	q.Skill = queues.Window{Initial: 100, PerSecond: 10, Max: 600}
	return q
}

func TestFormTeams(t *testing.T) {
	tests := []struct {
		name    string
		parties []store.PoolEntry
		wantOK  bool
		wantGap float64 // best possible gap between team totals
	}{
		{"ten solos", []store.PoolEntry{
			entry("a", 1000, 1, 0, nil), entry("b", 1100, 1, 0, nil), entry("c", 1200, 1, 0, nil), entry("d", 1300, 1, 0, nil),
			entry("e", 1400, 1, 0, nil), entry("f", 1500, 1, 0, nil), entry("g", 1600, 1, 0, nil), entry("h", 1700, 1, 0, nil),
			entry("i", 1800, 1, 0, nil), entry("j", 1900, 1, 0, nil)}, true, 100},
		{"a five-stack against five solos", []store.PoolEntry{
			entry("stack", 1500, 5, 0, nil), entry("a", 1400, 1, 0, nil), entry("b", 1450, 1, 0, nil),
			entry("c", 1500, 1, 0, nil), entry("d", 1550, 1, 0, nil), entry("e", 1600, 1, 0, nil)}, true, 0},
		{"parties that cannot split evenly", []store.PoolEntry{
			entry("a", 1500, 4, 0, nil), entry("b", 1500, 3, 0, nil), entry("c", 1500, 3, 0, nil)}, false, 0},
		// Each team must be a trio and a duo: {a,d} 7100 against {b,c} 7400
		// beats {a,c} 7700 against {b,d} 6800.
		{"duos and trios", []store.PoolEntry{
			entry("a", 1500, 3, 0, nil), entry("b", 1400, 3, 0, nil), entry("c", 1600, 2, 0, nil), entry("d", 1300, 2, 0, nil)}, true, 300},
	}
	q := fiveVFive()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			teams, ok := formTeams(&q, tt.parties, true)
			if ok != tt.wantOK {
				t.Fatalf("formTeams ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			if len(teams) != 2 {
				t.Fatalf("%d teams, want 2", len(teams))
			}
			var totals []float64
			seen := 0
			for _, team := range teams {
				size, total := 0, 0.0
				for _, i := range team {
					size += tt.parties[i].Players
					total += tt.parties[i].Skill * float64(tt.parties[i].Players)
					seen++
				}
				if size != 5 {
					t.Errorf("team %v holds %d players, want 5", team, size)
				}
				totals = append(totals, total)
			}
			if seen != len(tt.parties) {
				t.Errorf("%d parties placed, want %d", seen, len(tt.parties))
			}
			if gap := math.Abs(totals[0] - totals[1]); gap != tt.wantGap {
				t.Errorf("team totals %v differ by %v, want the best split's %v", totals, gap, tt.wantGap)
			}
		})
	}
}

func TestFindMatch(t *testing.T) {
	duel := queues.Duel() // window 50, +25/s, max 500
	ffa := queues.Duel()
	ffa.Name, ffa.Teams, ffa.TeamSize, ffa.MinTeams, ffa.FillWait = "ffa", 4, 1, 3, 10*time.Second
	five := fiveVFive()
	solos := func(n int, skill float64, waited time.Duration) []store.PoolEntry {
		var es []store.PoolEntry
		for i := range n {
			es = append(es, entry(fmt.Sprintf("s%d", i), skill+float64(i), 1, waited, nil))
		}
		return es
	}
	tests := []struct {
		name    string
		q       queues.Queue
		anchor  store.PoolEntry
		cands   []store.PoolEntry
		exclude map[string]bool
		want    []string // ticket ids, anchor first; nil for no match
	}{
		{"duel: nearest skill", duel, entry("me", 1500, 1, 0, nil),
			[]store.PoolEntry{entry("a", 1540, 1, 0, nil), entry("b", 1490, 1, 0, nil)}, nil, []string{"me", "b"}},
		{"duel: outside the window", duel, entry("me", 1500, 1, 0, nil),
			[]store.PoolEntry{entry("a", 1600, 1, 0, nil)}, nil, nil},
		{"duel: the waiting ticket's wider window admits the newcomer", duel, entry("me", 1500, 1, 0, nil),
			[]store.PoolEntry{entry("a", 1600, 1, 4*time.Second, nil)}, nil, []string{"me", "a"}},
		{"duel: equal gaps go to the longest waiting", duel, entry("me", 1500, 1, 0, nil),
			[]store.PoolEntry{entry("new", 1520, 1, time.Second, nil), entry("old", 1480, 1, 3*time.Second, nil)}, nil, []string{"me", "old"}},
		{"duel: never itself", duel, entry("me", 1500, 1, 0, nil), []store.PoolEntry{entry("me", 1500, 1, 0, nil)}, nil, nil},
		{"duel: excluded candidates are skipped", duel, entry("me", 1500, 1, 0, nil),
			[]store.PoolEntry{entry("a", 1500, 1, 0, nil), entry("b", 1510, 1, 0, nil)}, map[string]bool{"a": true}, []string{"me", "b"}},
		{"duel: the region must be shared", duel, entry("me", 1500, 1, 0, map[string]float64{"eu": 20}),
			[]store.PoolEntry{entry("us", 1500, 1, 0, map[string]float64{"us": 20}), entry("eu", 1530, 1, 0, map[string]float64{"eu": 40})},
			nil, []string{"me", "eu"}},
		{"5v5: ten solos", five, entry("me", 1500, 1, 0, nil), solos(9, 1500, 0), nil,
			[]string{"me", "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"}},
		{"5v5: nine players are not a match", five, entry("me", 1500, 1, 0, nil), solos(8, 1500, 0), nil, nil},
		{"5v5: a party too big for the room left is passed over", five, entry("me", 1500, 5, 0, nil),
			append([]store.PoolEntry{entry("duo", 1500, 2, 0, nil), entry("trio", 1500, 3, 0, nil), entry("quad", 1500, 4, 0, nil)}, solos(1, 1500, 0)...),
			nil, []string{"me", "duo", "trio"}},
		{"ffa: full at once", ffa, entry("me", 1500, 1, 0, nil), solos(3, 1500, 0), nil, []string{"me", "s0", "s1", "s2"}},
		{"ffa: short, before the fill wait", ffa, entry("me", 1500, 1, 0, nil), solos(2, 1500, 0), nil, nil},
		{"ffa: short, after the fill wait", ffa, entry("me", 1500, 1, 0, nil), solos(2, 1500, 11*time.Second), nil, []string{"me", "s0", "s1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, _, teams, ok := findMatch(&tt.q, tt.anchor, tt.cands, tt.exclude, t0)
			var got []string
			for _, e := range entries {
				got = append(got, e.TicketID)
			}
			if !ok {
				got = nil
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("findMatch = %v, want %v", got, tt.want)
			}
			if ok && len(teams) != len(tt.want) && tt.q.TeamSize == 1 {
				t.Errorf("free-for-all of %d tickets formed %d teams", len(tt.want), len(teams))
			}
		})
	}
}

func TestRegionPreference(t *testing.T) {
	q := queues.Duel()
	q.Latency = queues.Window{Initial: 200, PerSecond: 0, Max: 200}
	q.RegionWait = 10 * time.Second
	eu := map[string]float64{"eu": 20, "us": 90}
	us := map[string]float64{"eu": 95, "us": 25}
	tests := []struct {
		name         string
		a, b         time.Duration // how long each ticket has waited
		latA, latB   map[string]float64
		wantRegion   string
		wantOK       bool
		regionWaitOf time.Duration
	}{
		{"both fresh, homes differ: no region", 0, 0, eu, us, "", false, 10 * time.Second},
		{"one past its region wait goes abroad", 11 * time.Second, 0, eu, us, "us", true, 10 * time.Second},
		{"the other past it instead", 0, 11 * time.Second, eu, us, "eu", true, 10 * time.Second},
		{"same home: at once", 0, 0, eu, map[string]float64{"eu": 30, "us": 70}, "eu", true, 10 * time.Second},
		{"a tie for best region counts as best", 0, 0, map[string]float64{"eu": 20, "us": 20}, us, "us", true, 10 * time.Second},
		// eu's worst latency is 95, us's 90.
		{"no region wait: a limit only", 0, 0, eu, us, "us", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q.RegionWait = tt.regionWaitOf
			es := []store.PoolEntry{entry("a", 1500, 1, tt.a, tt.latA), entry("b", 1500, 1, tt.b, tt.latB)}
			got, ok := sharedRegion(&q, es, t0)
			if got != tt.wantRegion || ok != tt.wantOK {
				t.Errorf("sharedRegion = %q, %v; want %q, %v", got, ok, tt.wantRegion, tt.wantOK)
			}
		})
	}
}

// party is a pool entry for a party whose players have the given skills,
// matched at the queue's party skill.
func party(q *queues.Queue, id string, waited time.Duration, skills ...float64) store.PoolEntry {
	e := store.PoolEntry{TicketID: id, Skill: q.PartySkill(skills), Players: len(skills), CreatedAt: t0.Add(-waited)}
	for i, s := range skills {
		e.Party = append(e.Party, contracts.Player{ID: fmt.Sprintf("%s.%d", id, i), Skill: s})
	}
	return e
}

// teamGap is the gap between the two teams' mean player skill.
func teamGap(entries []store.PoolEntry, teams [][]int) float64 {
	var means []float64
	for _, team := range teams {
		total, n := 0.0, 0
		for _, i := range team {
			for _, p := range entries[i].Party {
				total += p.Skill
				n++
			}
		}
		means = append(means, total/float64(n))
	}
	return math.Abs(means[0] - means[1])
}

func TestSelectionBalances(t *testing.T) {
	five := fiveVFive()
	five.PartySpread = 0.25
	stack := func(id string, mean float64, waited time.Duration) store.PoolEntry {
		return party(&five, id, waited, mean-100, mean-50, mean, mean+50, mean+100)
	}
	solo := func(id string, skill float64) store.PoolEntry { return party(&five, id, 0, skill) }
	tests := []struct {
		name      string
		anchor    store.PoolEntry
		cands     []store.PoolEntry
		wantIn    []string // tickets the match must hold
		wantOut   []string // and must not
		fairTeams bool
	}{
		{
			// Nearest first, the stack would face the five solos
			// around its matching skill (its mean + 50): a 50-point gap.
			// The other stack is within reach.
			name:   "a stack meets a stack",
			anchor: stack("me", 1500, 0),
			cands: []store.PoolEntry{solo("a", 1550), solo("b", 1548), solo("c", 1552), solo("d", 1546), solo("e", 1554),
				stack("other", 1505, time.Second)},
			wantIn: []string{"me", "other"}, fairTeams: true,
		},
		{
			// No stack in reach: it faces players of its own strength
			// rather than of its matching skill (one of the stronger
			// solos fits too, and narrows the spread).
			name:   "a stack is met by players of its strength",
			anchor: stack("me", 1500, 0),
			cands: []store.PoolEntry{solo("a", 1550), solo("b", 1548), solo("c", 1552), solo("d", 1546), solo("e", 1554),
				solo("f", 1500), solo("g", 1498), solo("h", 1502), solo("i", 1496), solo("j", 1504)},
			wantIn: []string{"me", "f", "g", "h", "j"}, wantOut: []string{"a", "b", "c"}, fairTeams: true,
		},
		{
			// A solo anchor with a strong stack nearest: greedy puts it
			// against players around the anchor; leaving it out leaves
			// ten solos that split evenly.
			name:   "a stack that cannot be balanced is left out",
			anchor: solo("me", 1500),
			cands: []store.PoolEntry{stack("stack", 1460, 0), solo("a", 1510), solo("b", 1490), solo("c", 1515), solo("d", 1485),
				solo("e", 1520), solo("f", 1480), solo("g", 1525), solo("h", 1475), solo("i", 1530)},
			wantIn: []string{"me", "a", "i"}, wantOut: []string{"stack"}, fairTeams: true,
		},
		{
			name:      "nothing fair in reach: the nearest match stands",
			anchor:    stack("me", 1500, 0),
			cands:     []store.PoolEntry{solo("a", 1590), solo("b", 1588), solo("c", 1592), solo("d", 1586), solo("e", 1594)},
			wantIn:    []string{"me", "a", "b", "c", "d", "e"},
			fairTeams: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, _, teams, ok := findMatch(&five, tt.anchor, tt.cands, nil, t0)
			if !ok {
				t.Fatal("no match")
			}
			var ids []string
			for _, e := range entries {
				ids = append(ids, e.TicketID)
			}
			for _, id := range tt.wantIn {
				if !slices.Contains(ids, id) {
					t.Errorf("match %v lacks %s", ids, id)
				}
			}
			for _, id := range tt.wantOut {
				if slices.Contains(ids, id) {
					t.Errorf("match %v holds %s", ids, id)
				}
			}
			if gap := teamGap(entries, teams); (gap <= fairGap) != tt.fairTeams {
				t.Errorf("match %v, teams %v: team means %.1f apart, want fair %t", ids, teams, gap, tt.fairTeams)
			}
		})
	}
}

func TestBalanceRule(t *testing.T) {
	five := fiveVFive()
	five.Balance = queues.Window{Initial: 20, PerSecond: 10, Max: 200}
	stack := party(&five, "stack", 0, 1600, 1600, 1600, 1600, 1600)
	var solos []store.PoolEntry
	for i := range 5 {
		solos = append(solos, party(&five, fmt.Sprintf("s%d", i), 0, 1550))
	}
	// Team means 50 apart: refused while the window is 20, allowed once
	// the oldest ticket has waited 3 s (20 + 10 × 3 = 50).
	if _, _, _, ok := findMatch(&five, stack, solos, nil, t0); ok {
		t.Error("a match 50 points apart formed under a balance window of 20")
	}
	solos[0].CreatedAt = t0.Add(-3 * time.Second)
	if _, _, _, ok := findMatch(&five, stack, solos, nil, t0); !ok {
		t.Error("no match once the balance window reached 50")
	}
}

// TestSplitInTwoAgainstSearch checks the enumerated two-team split against
// the budgeted search on random parties: the same best gap, and a split
// that keeps every party whole and fills both teams.
func TestSplitInTwoAgainstSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for i := range 500 {
		q := fiveVFive()
		q.TeamSize = 2 + rng.IntN(5)
		var es []store.PoolEntry
		for players := 0; players < 2*q.TeamSize; {
			size := 1 + rng.IntN(min(q.TeamSize, 2*q.TeamSize-players))
			skills := make([]float64, size)
			for k := range skills {
				skills[k] = float64(1000 + rng.IntN(1000))
			}
			es = append(es, party(&q, fmt.Sprintf("p%d", len(es)), 0, skills...))
			players += size
		}
		fast, okFast := splitInTwo(&q, es, true)
		q.Teams = 2
		slow, okSlow := searchTeams(&q, es, true)
		if okFast != okSlow {
			t.Fatalf("case %d: split found %t by enumeration, %t by search", i, okFast, okSlow)
		}
		if !okFast {
			continue
		}
		gap := func(teams [][]int) float64 {
			var totals []float64
			for _, team := range teams {
				total, players := 0.0, 0
				for _, k := range team {
					total += strength(&es[k])
					players += es[k].Players
				}
				if players != q.TeamSize {
					t.Fatalf("case %d: team %v holds %d players, want %d", i, team, players, q.TeamSize)
				}
				totals = append(totals, total)
			}
			return math.Abs(totals[0] - totals[1])
		}
		if g, h := gap(fast), gap(slow); math.Abs(g-h) > 1e-9 {
			t.Fatalf("case %d: enumeration's best gap %g, search's %g", i, g, h)
		}
	}
}

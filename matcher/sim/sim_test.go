package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/queues"
)

func exampleQueues(t *testing.T) *queues.Set {
	t.Helper()
	set, err := queues.LoadFile("../../examples/queues.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return set
}

var threeRegions = []RegionShare{{Name: "eu-west", Share: 1}, {Name: "us-east", Share: 1}, {Name: "ap-south", Share: 1}}

// shortConfig is a short run of q. Its max wait is cut to 30 s: tickets
// left over once arrivals stop retry every second until they expire, which
// would otherwise be most of the work.
func shortConfig(q queues.Queue, seed uint64) Config {
	q.MaxWait = min(q.MaxWait, 30*time.Second)
	cfg := Config{
		Queue: q, Seed: seed, Rate: 30, Duration: 20 * time.Second,
		SkillMean: 1500, SkillStdDev: 300, PartyStdDev: 100,
		Regions: threeRegions, Hop: 60,
	}
	if q.TeamSize > 1 {
		cfg.Parties = []PartyShare{{Size: 1, Share: 0.6}, {Size: 2, Share: 0.3}, {Size: q.TeamSize, Share: 0.1}}
	}
	return cfg
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func reportJSON(t *testing.T, res *Result) string {
	t.Helper()
	rep, err := res.Report()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// matchLog is what a run did, match by match, without the random match ids.
func matchLog(res *Result) string {
	var b []byte
	for _, m := range res.Matches {
		b = fmt.Appendf(b, "%v %s %v %v\n", m.CreatedAt.Sub(Epoch), m.Region, m.TicketIDs, m.Teams)
	}
	return string(b)
}

func TestSameSeedSameRun(t *testing.T) {
	set := exampleQueues(t)
	for _, name := range []string{"ranked-5v5", "brawl"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			q, _ := set.Get(name)
			a, b := run(t, shortConfig(q, 7)), run(t, shortConfig(q, 7))
			if ra, rb := reportJSON(t, a), reportJSON(t, b); ra != rb {
				t.Fatalf("two runs of seed 7 report differently:\n%s\n%s", ra, rb)
			}
			if la, lb := matchLog(a), matchLog(b); la != lb {
				t.Fatal("two runs of seed 7 formed different matches")
			}
			if c := run(t, shortConfig(q, 8)); matchLog(c) == matchLog(a) {
				t.Fatal("seeds 7 and 8 formed the same matches: the seed is not used")
			}
		})
	}
}

// TestMatchesKeepTheRules runs short simulations of random queues and loads
// and checks every match against its queue's rules at the moment it formed:
// no ticket or player twice, the match's shape, no party split, the skill
// spread within the oldest ticket's window, and a region every ticket
// reaches under its own latency limit. Every ticket ends matched, or
// expired no sooner than its max wait.
func TestMatchesKeepTheRules(t *testing.T) {
	set := exampleQueues(t)
	rng := rand.New(rand.NewPCG(2024, 6))
	for i := range 20 {
		cfg := randomConfig(rng, set)
		t.Run(fmt.Sprintf("%d-%s-seed-%d", i, cfg.Queue.Name, cfg.Seed), func(t *testing.T) {
			t.Parallel()
			res := run(t, cfg)
			if len(res.Matches) == 0 {
				t.Fatalf("no match formed with %+v", cfg)
			}
			checkRun(t, &cfg.Queue, res)
			// The run's own matches keep the reference's rule, so the
			// reference (an optimum or a lower bound) is never above it.
			rep, err := res.Report()
			if err != nil {
				t.Fatal(err)
			}
			if g := rep.ArrivalGap; g.Reference > g.Run+1e-6 {
				t.Errorf("arrival-aware reference %g above the run's own total %g (%s)", g.Reference, g.Run, g.Method)
			}
		})
	}
}

// randomConfig varies the queue and everything about the players: a short
// run, perhaps without regions, with random parties that fit the queue.
func randomConfig(rng *rand.Rand, set *queues.Set) Config {
	names := set.Names()
	q, _ := set.Get(names[rng.IntN(len(names))])
	if rng.IntN(4) == 0 {
		// A harsher variant: narrow windows make expiry and the
		// free-for-all's short matches common.
		q.Skill = queues.Window{Initial: 10, PerSecond: 2, Max: 100}
		q.FillWait = 5 * time.Second
	}
	// Region preference and the balance rule on or off, whatever the
	// example says.
	switch rng.IntN(3) {
	case 0:
		q.RegionWait = 0
	case 1:
		q.RegionWait = time.Duration(1+rng.IntN(15)) * time.Second
	}
	if q.TeamSize > 1 {
		switch rng.IntN(3) {
		case 0:
			q.Balance = queues.Window{}
		case 1:
			q.Balance = queues.Window{Initial: 5 + 30*rng.Float64(), PerSecond: 2 * rng.Float64(), Max: 300}
		}
	}
	// As in shortConfig, leftovers retrying until they expire would be
	// most of the work.
	q.MaxWait = min(q.MaxWait, time.Duration(20+rng.IntN(20))*time.Second)
	cfg := Config{
		Queue:       q,
		Seed:        rng.Uint64(),
		Rate:        5 + 45*rng.Float64(),
		Duration:    time.Duration(15+rng.IntN(30)) * time.Second,
		SkillMean:   1500,
		SkillStdDev: 100 + 400*rng.Float64(),
		PartyStdDev: 200 * rng.Float64(),
		Hop:         100 * rng.Float64(),
	}
	if rng.IntN(3) > 0 {
		cfg.Regions = threeRegions[:1+rng.IntN(len(threeRegions))]
	}
	for size := 1; size <= q.TeamSize; size++ {
		if size == 1 || rng.IntN(2) == 0 {
			cfg.Parties = append(cfg.Parties, PartyShare{Size: size, Share: rng.Float64()})
		}
	}
	return cfg
}

func checkRun(t *testing.T, q *queues.Queue, res *Result) {
	t.Helper()
	inMatch := map[string]string{} // ticket or player id → match id
	for _, m := range res.Matches {
		checkMatch(t, q, res, &m, inMatch)
	}
	for i := range res.Tickets {
		tk := &res.Tickets[i]
		switch tk.Status {
		case contracts.StatusMatched:
			if _, ok := inMatch[tk.ID]; !ok {
				t.Errorf("ticket %s is matched but in no match", tk.ID)
			}
		case contracts.StatusExpired:
			if tk.Wait() < q.MaxWait {
				t.Errorf("ticket %s expired after %v, before its max wait %v", tk.ID, tk.Wait(), q.MaxWait)
			}
			if _, ok := inMatch[tk.ID]; ok {
				t.Errorf("ticket %s expired but is in match %s", tk.ID, inMatch[tk.ID])
			}
		default:
			t.Errorf("ticket %s ended the run %s", tk.ID, tk.Status)
		}
	}
}

func checkMatch(t *testing.T, q *queues.Queue, res *Result, m *contracts.Match, inMatch map[string]string) {
	t.Helper()
	formed := m.CreatedAt
	teamOf := map[string]int{}
	for i, team := range m.Teams {
		for _, p := range team {
			if _, dup := teamOf[p]; dup {
				t.Errorf("match %s lists player %s twice in its teams", m.ID, p)
			}
			teamOf[p] = i
		}
	}
	var (
		skills  []float64
		oldest  = formed
		players = 0
		stated  = false
	)
	for _, tid := range m.TicketIDs {
		tk, ok := res.Ticket(tid)
		if !ok {
			t.Fatalf("match %s names unknown ticket %s", m.ID, tid)
		}
		if other, dup := inMatch[tid]; dup {
			t.Errorf("ticket %s in matches %s and %s", tid, other, m.ID)
		}
		inMatch[tid] = m.ID
		skills = append(skills, partySkill(q, tk.Players))
		if tk.CreatedAt.Before(oldest) {
			oldest = tk.CreatedAt
		}
		team := -1
		for _, p := range tk.Players {
			players++
			if other, dup := inMatch[p.ID]; dup {
				t.Errorf("player %s in matches %s and %s", p.ID, other, m.ID)
			}
			inMatch[p.ID] = m.ID
			pt, ok := teamOf[p.ID]
			if !ok {
				t.Errorf("player %s of ticket %s is on no team of match %s", p.ID, tid, m.ID)
			}
			if team >= 0 && pt != team {
				t.Errorf("party of ticket %s split across teams in match %s", tid, m.ID)
			}
			team = pt
		}
		if len(tk.Latencies) == 0 {
			continue
		}
		stated = true
		limit := q.LatencyLimit(formed.Sub(tk.CreatedAt))
		ms, ok := tk.Latencies[m.Region]
		if !ok || ms > limit {
			t.Errorf("ticket %s reaches region %q of match %s in %v ms (listed: %t), limit %v ms", tid, m.Region, m.ID, ms, ok, limit)
		}
		// Before its region wait, only its best region will do.
		if best := slices.Min(slices.Collect(maps.Values(tk.Latencies))); formed.Sub(tk.CreatedAt) < q.RegionWait && ms > best {
			t.Errorf("ticket %s is in region %q of match %s at %v ms after %v, before its region wait %v, with a region at %v ms",
				tid, m.Region, m.ID, ms, formed.Sub(tk.CreatedAt), q.RegionWait, best)
		}
	}
	if !stated && m.Region != "" {
		t.Errorf("match %s is in region %s though no ticket states latencies", m.ID, m.Region)
	}
	if players != len(teamOf) || players != len(m.Players) {
		t.Errorf("match %s: %d players in its tickets, %d on its teams, %d listed", m.ID, players, len(teamOf), len(m.Players))
	}

	// Shape: a team queue fills every seat; a free-for-all has one player
	// per team and may start short only after the fill wait.
	if q.TeamSize == 1 && (q.Teams > 2 || q.MinTeams != 0) {
		n := len(m.Teams)
		switch {
		case n < q.MinTeamsPerMatch() || n > q.Teams:
			t.Errorf("match %s has %d players, want %d to %d", m.ID, n, q.MinTeamsPerMatch(), q.Teams)
		case n < q.Teams && formed.Sub(oldest) < q.FillWait:
			t.Errorf("match %s started with %d of %d players after %v, before the fill wait %v", m.ID, n, q.Teams, formed.Sub(oldest), q.FillWait)
		}
		for i, team := range m.Teams {
			if len(team) != 1 {
				t.Errorf("free-for-all match %s team %d holds %d players", m.ID, i, len(team))
			}
		}
	} else {
		if len(m.Teams) != q.Teams {
			t.Errorf("match %s has %d teams, want %d", m.ID, len(m.Teams), q.Teams)
		}
		for i, team := range m.Teams {
			if len(team) != q.TeamSize {
				t.Errorf("match %s team %d holds %d players, want %d", m.ID, i, len(team), q.TeamSize)
			}
		}
	}

	if spread, window := slices.Max(skills)-slices.Min(skills), q.Skill.At(formed.Sub(oldest)); spread > window+1e-9 {
		t.Errorf("match %s: skill spread %v over the oldest ticket's window %v", m.ID, spread, window)
	}

	// Balance: team means of the players' own skills within the balance
	// window of the oldest ticket.
	if q.TeamSize > 1 {
		skillOf := map[string]float64{}
		for _, tid := range m.TicketIDs {
			tk, _ := res.Ticket(tid)
			for _, p := range tk.Players {
				skillOf[p.ID] = p.Skill
			}
		}
		var means []float64
		for _, team := range m.Teams {
			total := 0.0
			for _, p := range team {
				total += skillOf[p]
			}
			means = append(means, total/float64(len(team)))
		}
		if gap, limit := slices.Max(means)-slices.Min(means), q.BalanceLimit(formed.Sub(oldest)); gap > limit+1e-9 {
			t.Errorf("match %s: team means %v apart, over the balance window %v", m.ID, gap, limit)
		}
	}
}

// partySkill is the queue's documented party rule, recomputed here rather
// than read from the run.
func partySkill(q *queues.Queue, party []contracts.Player) float64 {
	sum, lo, hi := 0.0, party[0].Skill, party[0].Skill
	for _, p := range party {
		sum += p.Skill
		lo, hi = min(lo, p.Skill), max(hi, p.Skill)
	}
	return sum/float64(len(party)) + q.PartySpread*(hi-lo)
}

func TestConfigCheck(t *testing.T) {
	set := exampleQueues(t)
	duo, _ := set.Get("ranked-2v2")
	good := func() Config {
		return Config{Queue: duo, Seed: 1, Rate: 10, Duration: time.Minute, SkillStdDev: 1, Parties: []PartyShare{{Size: 2, Share: 1}}}
	}
	tests := []struct {
		name   string
		change func(*Config)
		ok     bool
	}{
		{"good", func(*Config) {}, true},
		{"count alone", func(c *Config) { c.Duration, c.Count = 0, 100 }, true},
		{"no end", func(c *Config) { c.Duration = 0 }, false},
		{"no rate", func(c *Config) { c.Rate = 0 }, false},
		{"party over the team size", func(c *Config) { c.Parties = []PartyShare{{Size: 3, Share: 1}} }, false},
		{"party of none", func(c *Config) { c.Parties = []PartyShare{{Size: 0, Share: 1}} }, false},
		{"shares sum to zero", func(c *Config) { c.Parties = []PartyShare{{Size: 1, Share: 0}} }, false},
		{"negative share", func(c *Config) { c.Regions = []RegionShare{{Name: "x", Share: -1}} }, false},
		{"bad queue", func(c *Config) { c.Queue.MaxWait = 0 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.change(&cfg)
			if err := cfg.Check(); (err == nil) != tt.ok {
				t.Errorf("Check() = %v, want ok %t", err, tt.ok)
			}
		})
	}
}

func TestCountEndsTheStream(t *testing.T) {
	q := queues.Duel()
	res := run(t, Config{Queue: q, Seed: 3, Rate: 50, Count: 101, SkillMean: 1500, SkillStdDev: 200})
	if len(res.Tickets) != 101 {
		t.Fatalf("%d tickets arrived, want 101", len(res.Tickets))
	}
	rep, err := res.Report()
	if err != nil {
		t.Fatal(err)
	}
	// An odd number of duellists leaves at least one unmatched.
	if rep.PlayersIn != 101 || rep.PlayersMatched+rep.PlayersExpired != 101 || rep.PlayersExpired == 0 {
		t.Fatalf("players in %d, matched %d, expired %d", rep.PlayersIn, rep.PlayersMatched, rep.PlayersExpired)
	}
	if !rep.Gap.Exact || rep.Gap.Ratio < 1 {
		t.Fatalf("duel gap %+v: want an exact optimum and a ratio of at least 1", rep.Gap)
	}
}

func TestParseMixes(t *testing.T) {
	tests := []struct {
		in      string
		parties bool
		want    string
		ok      bool
	}{
		{"1:0.6,2:0.2,5:0.2", true, "1:0.6,2:0.2,5:0.2", true},
		{" 1:1 ", true, "1:1", true},
		{"1", true, "", false},
		{"x:1", true, "", false},
		{"1:y", true, "", false},
		{"eu-west,us-east", false, "eu-west:1,us-east:1", true},
		{"eu-west:0.5,ap-south:2", false, "eu-west:0.5,ap-south:2", true},
		{"", false, "", true},
		{"eu-west:z", false, "", false},
		{":1", false, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var got string
			var err error
			if tt.parties {
				var ps []PartyShare
				ps, err = ParseParties(tt.in)
				got = FormatParties(ps)
			} else {
				var rs []RegionShare
				rs, err = ParseRegions(tt.in)
				got = FormatRegions(rs)
			}
			if (err == nil) != tt.ok {
				t.Fatalf("parsing %q: error %v, want ok %t", tt.in, err, tt.ok)
			}
			if tt.ok && got != tt.want {
				t.Errorf("parsing %q gave %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestBalanceReport(t *testing.T) {
	q, _ := exampleQueues(t).Get("ranked-2v2")
	// Four matches of 2v2: even solos; solos 20 points of mean apart
	// (inside 50 ± 3 %, which allows 20.87); a duo 22 apart (outside);
	// and two duos.
	res := &Result{Config: Config{Queue: q}, byID: map[string]int{}}
	add := func(id string, skills ...float64) {
		t := Ticket{Match: len(res.Matches)}
		t.ID = id
		for i, s := range skills {
			t.Players = append(t.Players, contracts.Player{ID: fmt.Sprintf("%s.%d", id, i), Skill: s})
		}
		t.Skill = q.PartySkill(skills)
		res.byID[id] = len(res.Tickets)
		res.Tickets = append(res.Tickets, t)
	}
	match := func(teams ...[]string) {
		m := contracts.Match{Teams: teams}
		for _, team := range teams {
			for _, p := range team {
				id, _, _ := strings.Cut(p, ".")
				if !slices.Contains(m.TicketIDs, id) {
					m.TicketIDs = append(m.TicketIDs, id)
				}
			}
		}
		res.Matches = append(res.Matches, m)
	}
	add("a", 1500)
	add("b", 1500)
	add("c", 1500)
	add("d", 1500)
	match([]string{"a.0", "b.0"}, []string{"c.0", "d.0"})
	add("e", 1520)
	add("f", 1520)
	add("g", 1500)
	add("h", 1500)
	match([]string{"e.0", "f.0"}, []string{"g.0", "h.0"})
	add("i", 1522, 1522)
	add("j", 1500)
	add("k", 1500)
	match([]string{"i.0", "i.1"}, []string{"j.0", "k.0"})
	add("l", 1500, 1500)
	add("m", 1510, 1490)
	match([]string{"l.0", "l.1"}, []string{"m.0", "m.1"})
	skillOf, partyOf := map[string]float64{}, map[string]float64{}
	for _, tk := range res.Tickets {
		for _, p := range tk.Players {
			skillOf[p.ID], partyOf[p.ID] = p.Skill, tk.Skill
		}
	}
	b := res.balance(skillOf, partyOf)
	if b.Matches != 4 || b.Within3pct != 0.75 {
		t.Errorf("%d matches, %.2f within 3 %%; want 4 and 0.75", b.Matches, b.Within3pct)
	}
	if b.WithParties != (BalanceShare{Matches: 2, Within3pct: 0.5}) || b.WithoutParties != (BalanceShare{Matches: 2, Within3pct: 1}) {
		t.Errorf("with parties %+v, without %+v", b.WithParties, b.WithoutParties)
	}
	if b.Stacks != 2 || b.StackVsStack != 1 {
		t.Errorf("%d matches with a duo, %d duo against duo; want 2 and 1", b.Stacks, b.StackVsStack)
	}
	// In matching skill the mixed duo m counts at 1500 + 0.25 × 20 = 1505:
	// still within.
	if b.MatchingWithin3pct != 0.75 {
		t.Errorf("matching skill: %.2f within 3 %%, want 0.75", b.MatchingWithin3pct)
	}
}

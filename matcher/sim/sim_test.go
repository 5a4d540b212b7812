package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

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

func shortRun(t *testing.T, q queues.Queue, seed uint64) *Result {
	t.Helper()
	cfg := Config{
		Queue: q, Seed: seed, Rate: 30, Duration: 40 * time.Second,
		SkillMean: 1500, SkillStdDev: 300, PartyStdDev: 100,
		Regions: []RegionShare{{Name: "eu-west", Share: 1}, {Name: "us-east", Share: 1}, {Name: "ap-south", Share: 1}},
		Hop:     60,
	}
	if q.TeamSize > 1 {
		cfg.Parties = []PartyShare{{Size: 1, Share: 0.6}, {Size: 2, Share: 0.3}, {Size: q.TeamSize, Share: 0.1}}
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestSameSeedSameRun(t *testing.T) {
	q, _ := exampleQueues(t).Get("ranked-5v5")
	report := func() string {
		rep, err := shortRun(t, q, 7).Report()
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if a, b := report(), report(); a != b {
		t.Fatalf("two runs of seed 7 differ:\n%s\n%s", a, b)
	}
}

func TestMinSpreadSum(t *testing.T) {
	tests := []struct {
		name             string
		xs               []float64
		groups, min, max int
		want             float64
	}{
		{"pairs of sorted neighbours", []float64{1, 10, 2, 11}, 2, 2, 2, 2},
		{"pairs, unsorted input", []float64{100, 0, 50, 51}, 2, 2, 2, 99},
		{"groups of three", []float64{1, 2, 3, 10, 11, 12}, 2, 3, 3, 4},
		{"one group", []float64{5, 1, 9}, 1, 3, 3, 8},
		{"sizes in a range", []float64{1, 2, 3, 100}, 2, 1, 3, 2},
		{"no players", nil, 0, 2, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MinSpreadSum(tt.xs, tt.groups, tt.min, tt.max)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("MinSpreadSum = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestMatchesKeepTheRules runs short simulations of every example queue on
// several seeds and checks every match against its queue's rules at the
// moment it formed: no player twice, the match's shape, no party split, the
// skill spread within the oldest ticket's window, and a region every ticket
// reaches under its own latency limit.
func TestMatchesKeepTheRules(t *testing.T) {
	set := exampleQueues(t)
	for _, name := range set.Names() {
		q, _ := set.Get(name)
		for seed := range uint64(2) {
			t.Run(fmt.Sprintf("%s/seed-%d", name, seed), func(t *testing.T) {
				res := shortRun(t, q, seed)
				if len(res.Matches) == 0 {
					t.Fatal("no match formed")
				}
				seen := map[string]string{}
				for _, m := range res.Matches {
					checkMatch(t, &q, res, m.ID, m.TicketIDs, m.Teams, m.Region, m.CreatedAt, seen)
				}
			})
		}
	}
}

func checkMatch(t *testing.T, q *queues.Queue, res *Result, id string, ticketIDs []string, teams [][]string, region string, formed time.Time, seen map[string]string) {
	t.Helper()
	if len(teams) < q.MinTeamsPerMatch() || len(teams) > q.Teams {
		t.Errorf("match %s has %d teams, want %d to %d", id, len(teams), q.MinTeamsPerMatch(), q.Teams)
	}
	teamOf := map[string]int{}
	for i, team := range teams {
		if len(team) > q.TeamSize || (q.MinTeams == 0 && len(team) != q.TeamSize) {
			t.Errorf("match %s team %d holds %d players, team size %d", id, i, len(team), q.TeamSize)
		}
		for _, p := range team {
			teamOf[p] = i
		}
	}
	var (
		skills []float64
		oldest = formed
	)
	for _, tid := range ticketIDs {
		tk, ok := res.Ticket(tid)
		if !ok {
			t.Fatalf("match %s names unknown ticket %s", id, tid)
		}
		skills = append(skills, tk.Skill)
		if tk.CreatedAt.Before(oldest) {
			oldest = tk.CreatedAt
		}
		team := -1
		for _, p := range tk.Players {
			if other, dup := seen[p.ID]; dup {
				t.Errorf("player %s in matches %s and %s", p.ID, other, id)
			}
			seen[p.ID] = id
			pt, ok := teamOf[p.ID]
			if !ok {
				t.Errorf("player %s of ticket %s is on no team of match %s", p.ID, tid, id)
			}
			if team >= 0 && pt != team {
				t.Errorf("party of ticket %s split across teams in match %s", tid, id)
			}
			team = pt
		}
		limit := q.LatencyLimit(formed.Sub(tk.CreatedAt))
		switch {
		case len(tk.Latencies) == 0:
		case region == "":
			t.Errorf("match %s has no region but ticket %s states latencies", id, tid)
		default:
			if ms, ok := tk.Latencies[region]; !ok || ms > limit {
				t.Errorf("ticket %s reaches %s of match %s in %v ms, limit %v", tid, region, id, ms, limit)
			}
		}
	}
	if spread, window := slices.Max(skills)-slices.Min(skills), q.Skill.At(formed.Sub(oldest)); spread > window+1e-9 {
		t.Errorf("match %s spread %v over the oldest ticket's window %v", id, spread, window)
	}
}

package matcher

import (
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

// TestSeat: the rules by which a ticket takes a backfill seat.
func TestSeat(t *testing.T) {
	q := queues.Duel()
	q.TeamSize = 2
	q.Latency = queues.Window{Initial: 80, PerSecond: 5, Max: 200}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	req := func(open ...int) *contracts.Backfill {
		return &contracts.Backfill{MatchID: "m", Region: "eu-west", Open: open, Skill: 1500, CreatedAt: now}
	}
	entry := func(players int, skill float64, waited time.Duration, lat map[string]float64) store.PoolEntry {
		return store.PoolEntry{TicketID: "t", Players: players, Skill: skill, CreatedAt: now.Add(-waited), Latencies: lat}
	}
	near := map[string]float64{"eu-west": 30}
	for _, tc := range []struct {
		name string
		b    *contracts.Backfill
		e    store.PoolEntry
		team int // -1: no seat
	}{
		{"a solo in the team with the most seats", req(1, 2), entry(1, 1500, 0, near), 1},
		{"a duo where two seats are open", req(2, 1), entry(2, 1500, 0, near), 0},
		{"a duo for one seat each", req(1, 1), entry(2, 1500, 0, near), -1},
		{"no seat open", req(0, 0), entry(1, 1500, 0, near), -1},
		{"beyond the first window", req(1, 0), entry(1, 1500+q.Skill.Initial+1, 0, near), -1},
		{"within the window of a longer wait", req(1, 0), entry(1, 1500+q.Skill.Initial+1, 10*time.Second, near), 0},
		{"another region only", req(1, 0), entry(1, 1500, 0, map[string]float64{"us-east": 20}), -1},
		{"past the latency limit", req(1, 0), entry(1, 1500, 0, map[string]float64{"eu-west": q.Latency.Max + 1}), -1},
		{"no latencies: any region", req(1, 0), entry(1, 1500, 0, nil), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			team, ok := seat(&q, tc.b, tc.e, now)
			if !ok {
				team = -1
			}
			if team != tc.team {
				t.Errorf("seat = %d, want %d", team, tc.team)
			}
		})
	}
	// The request's own age widens the window too.
	old := req(1, 0)
	old.CreatedAt = now.Add(-10 * time.Second)
	if _, ok := seat(&q, old, entry(1, 1500+q.Skill.Initial+1, 0, near), now); !ok {
		t.Error("a request waiting 10 s does not take a player its wider window reaches")
	}
}

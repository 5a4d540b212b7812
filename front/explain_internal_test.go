package front

import (
	"slices"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

// TestExplainRules covers the rules explainTicket applies that the HTTP
// scenarios of explain_test.go do not reach: the latency window, the
// region wait, a free-for-all's fill wait, and the status reserved for
// the acceptance step.
func TestExplainRules(t *testing.T) {
	t0 := time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC)
	latency := queues.Duel()
	latency.Latency = queues.Window{Initial: 50, PerSecond: 10, Max: 200}
	regionWait := queues.Duel()
	regionWait.RegionWait = 10 * time.Second
	brawl := queues.Duel()
	brawl.Name, brawl.Teams, brawl.MinTeams, brawl.FillWait = "brawl", 8, 4, 15*time.Second
	free := store.Stats{Regions: map[string]store.RegionStats{"eu-west": {FreeSlots: 2}, "us-east": {FreeSlots: 2}}}

	ticket := func(id string, status contracts.Status, skill float64, lat map[string]float64) contracts.Ticket {
		return contracts.Ticket{ID: id, Queue: "duel", Status: status, CreatedAt: t0, UpdatedAt: t0,
			Players: []contracts.Player{{ID: "p-" + id, Skill: skill}}, Latencies: lat}
	}
	entry := func(id string, skill float64, waited time.Duration, lat map[string]float64) store.PoolEntry {
		return store.PoolEntry{TicketID: id, Skill: skill, Players: 1, CreatedAt: t0.Add(-waited), Latencies: lat}
	}
	for _, tc := range []struct {
		name   string
		q      queues.Queue
		t      contracts.Ticket
		cands  []store.PoolEntry
		stats  store.Stats
		waited time.Duration
		want   []string
		needed int
	}{
		{
			name: "over the latency limit, then under it",
			q:    latency,
			t:    ticket("a", contracts.StatusSearching, 1500, map[string]float64{"eu-west": 90}),
			// a takes eu-west only once its limit reaches 90 ms.
			cands: []store.PoolEntry{entry("b", 1500, 0, map[string]float64{"eu-west": 40})},
			stats: free,
			// 50 ms at first: the ticket takes no region yet.
			want: []string{contracts.BlockNoSharedRegion}, needed: 2,
		},
		{
			name:   "under the latency limit after a wait",
			q:      latency,
			t:      ticket("a", contracts.StatusSearching, 1500, map[string]float64{"eu-west": 90}),
			cands:  []store.PoolEntry{entry("b", 1500, 0, map[string]float64{"eu-west": 40})},
			stats:  free,
			waited: 5 * time.Second, // 100 ms
			want:   []string{}, needed: 2,
		},
		{
			name: "held to the best region during the region wait",
			q:    regionWait,
			t:    ticket("a", contracts.StatusSearching, 1500, map[string]float64{"eu-west": 20, "us-east": 80}),
			// b's best is us-east; a's is eu-west.
			cands: []store.PoolEntry{entry("b", 1500, 0, map[string]float64{"eu-west": 90, "us-east": 30})},
			stats: free,
			want:  []string{contracts.BlockNoSharedRegion}, needed: 2,
		},
		{
			name: "free-for-all short of its minimum",
			q:    brawl,
			t:    ticket("a", contracts.StatusSearching, 1500, nil),
			cands: []store.PoolEntry{
				entry("b", 1500, 20*time.Second, nil), entry("c", 1500, 0, nil)},
			stats: free,
			// b has waited the fill wait: 4 players would do, 3 are here.
			want: []string{contracts.BlockTooFewInWindow}, needed: 4,
		},
		{
			name: "no server anywhere for a ticket without latencies",
			q:    queues.Duel(),
			t:    ticket("a", contracts.StatusSearching, 1500, nil),
			// b has waited: its wider window reaches a, 200 points off.
			cands: []store.PoolEntry{entry("b", 1700, 8*time.Second, nil)},
			want:  []string{contracts.BlockNoServerCapacity}, needed: 2,
		},
		{
			name: "waiting for its players to accept",
			q:    queues.Duel(),
			t:    ticket("a", contracts.StatusPendingAcceptance, 1500, nil),
			want: []string{contracts.BlockWaitingForAcceptance}, needed: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0.Add(tc.waited)
			tc.t.CreatedAt, tc.t.UpdatedAt = t0, t0
			for i := range tc.cands {
				tc.cands[i].CreatedAt = tc.cands[i].CreatedAt.Add(tc.waited)
			}
			x := explainTicket(&tc.q, tc.t, explainInput{cands: tc.cands, stats: tc.stats}, now)
			got := []string{}
			for _, b := range x.Blockers {
				got = append(got, b.Code)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("blockers %v, want %v (%+v)", got, tc.want, x.Blockers)
			}
			if x.PlayersNeeded != tc.needed {
				t.Errorf("players needed %d, want %d", x.PlayersNeeded, tc.needed)
			}
		})
	}
}

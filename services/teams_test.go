package services

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/queues"
)

// TestTeamsAndFreeForAll: a 5v5 queue with parties and a free-for-all queue
// end to end, in both modes (issue #3).
func TestTeamsAndFreeForAll(t *testing.T) {
	five := testQueue()
	five.Name, five.Teams, five.TeamSize, five.PartySpread = "ranked-5v5", 2, 5, 0.25
	ffa := testQueue()
	ffa.Name, ffa.Teams, ffa.TeamSize, ffa.MinTeams, ffa.FillWait = "brawl", 4, 1, 3, time.Second
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			s := startStack(t, m, stackOptions{matchers: 2, queue: five, more: []queues.Queue{ffa}})
			c := newClient(t)
			c.registerServer(s.assignerURL, "gs-1", "eu-west", 10)
			party := func(queue string, ids ...string) contracts.TicketRequest {
				req := contracts.TicketRequest{Queue: queue, Latencies: map[string]float64{"eu-west": 30}}
				for i, id := range ids {
					req.Players = append(req.Players, contracts.Player{ID: id, Skill: 1500 + float64(10*i)})
				}
				return req
			}

			t.Run("5v5 with parties", func(t *testing.T) {
				reqs := []contracts.TicketRequest{
					party("ranked-5v5", "trio-1", "trio-2", "trio-3"),
					party("ranked-5v5", "duo-1", "duo-2"),
				}
				for i := range 5 {
					reqs = append(reqs, party("ranked-5v5", fmt.Sprintf("solo-%d", i)))
				}
				var ids []string
				for _, r := range reqs {
					ids = append(ids, c.createTicket(s.frontURL, r).ID)
				}
				var match *contracts.MatchRef
				for _, id := range ids {
					tk := c.awaitTerminal(s.frontURL, id, 10*time.Second)
					if tk.Status != contracts.StatusAssigned {
						t.Fatalf("ticket %v ended %s", tk.PlayerIDs(), tk.Status)
					}
					if match != nil && tk.Match.ID != match.ID {
						t.Fatalf("tickets split over matches %s and %s", match.ID, tk.Match.ID)
					}
					match = tk.Match
				}
				if len(match.Teams) != 2 || len(match.Teams[0]) != 5 || len(match.Teams[1]) != 5 {
					t.Fatalf("teams %v, want 2 of 5", match.Teams)
				}
				for _, p := range [][]string{{"trio-1", "trio-2", "trio-3"}, {"duo-1", "duo-2"}} {
					team := teamOf(match.Teams, p[0])
					for _, id := range p[1:] {
						if teamOf(match.Teams, id) != team {
							t.Errorf("party %v split across teams %v", p, match.Teams)
						}
					}
				}
			})

			t.Run("a party larger than a team is refused", func(t *testing.T) {
				req := party("ranked-5v5", "six-1", "six-2", "six-3", "six-4", "six-5", "six-6")
				if code := c.do("POST", s.frontURL+"/v1/tickets", req, nil); code != 400 {
					t.Fatalf("party of 6 in 5v5: status %d, want 400", code)
				}
				if code := c.do("POST", s.frontURL+"/v1/tickets", party("brawl", "ffa-duo-1", "ffa-duo-2"), nil); code != 400 {
					t.Fatalf("party of 2 in a free-for-all: status %d, want 400", code)
				}
			})

			t.Run("free-for-all full and short", func(t *testing.T) {
				full := make([]string, 4)
				for i := range full {
					full[i] = c.createTicket(s.frontURL, party("brawl", fmt.Sprintf("ffa-%d", i))).ID
				}
				first := c.awaitTerminal(s.frontURL, full[0], 10*time.Second)
				if first.Status != contracts.StatusAssigned || len(first.Match.Teams) != 4 {
					t.Fatalf("full free-for-all: %s with teams %v, want assigned with 4", first.Status, first.Match)
				}
				// Three players start a short match once the fill wait passes.
				var short []string
				for i := range 3 {
					short = append(short, c.createTicket(s.frontURL, party("brawl", fmt.Sprintf("ffa-short-%d", i))).ID)
				}
				tk := c.awaitTerminal(s.frontURL, short[0], 10*time.Second)
				if tk.Status != contracts.StatusAssigned || len(tk.Match.Teams) != 3 {
					t.Fatalf("short free-for-all: %s with %v, want assigned with 3 teams", tk.Status, tk.Match)
				}
				for _, tm := range tk.Match.Teams {
					if len(tm) != 1 {
						t.Errorf("free-for-all team %v, want one player each", tm)
					}
				}
			})
		})
	}
}

func teamOf(teams [][]string, player string) int {
	for i, tm := range teams {
		if slices.Contains(tm, player) {
			return i
		}
	}
	return -1
}

package services

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

// TestBackfill: a 2v2 match that lost a player asks for one seat in its
// first team, in both modes. The seat goes to a solo ticket within the
// skill window, not to a duo that would not fit nor to a player far off
// in skill, and to one ticket only; the server sees the player in its
// allocation although it has no free slot; ending the match withdraws a
// request.
func TestBackfill(t *testing.T) {
	q := testQueue()
	q.Name, q.TeamSize = "fill-2v2", 2
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			s := startStack(t, m, stackOptions{queue: q})
			c := newClient(t)
			c.registerServer(s.assignerURL, "gs-bf", "eu-west", 1)
			create := func(skill float64, ids ...string) contracts.Ticket {
				t.Helper()
				req := contracts.TicketRequest{Queue: q.Name, Latencies: map[string]float64{"eu-west": 30}}
				for _, id := range ids {
					req.Players = append(req.Players, contracts.Player{ID: id, Skill: skill})
				}
				return c.createTicket(s.frontURL, req)
			}
			var first []contracts.Ticket
			for i := range 4 {
				first = append(first, create(1500, fmt.Sprintf("bf-%d", i)))
			}
			tk := c.awaitTerminal(s.frontURL, first[0].ID, 10*time.Second)
			if tk.Status != contracts.StatusAssigned {
				t.Fatalf("first match: ticket ended %s", tk.Status)
			}
			matchID := tk.Match.ID
			backfill := func(open ...int) int {
				t.Helper()
				return c.do(http.MethodPost, s.assignerURL+"/v1/servers/gs-bf/matches/"+matchID+"/backfill", contracts.BackfillRequest{Open: open}, nil)
			}
			if code := backfill(3, 0); code != http.StatusBadRequest {
				t.Errorf("asking for more seats than a team has: %d, want 400", code)
			}
			if code := backfill(1); code != http.StatusBadRequest {
				t.Errorf("asking for one team of two: %d, want 400", code)
			}
			if code := backfill(1, 0); code != http.StatusAccepted {
				t.Fatalf("backfill: %d, want 202", code)
			}

			duo := create(1500, "bf-duo-1", "bf-duo-2")
			far := create(1500+3*q.Skill.Max, "bf-far")
			solo := create(1510, "bf-solo")
			late := c.awaitTerminal(s.frontURL, solo.ID, 10*time.Second)
			if late.Status != contracts.StatusAssigned || late.Assignment.ServerID != "gs-bf" || late.Match == nil || late.Match.ID != matchID {
				t.Fatalf("the solo ticket ended %+v, want seated in %s on gs-bf", late, matchID)
			}
			if got := late.Match.Teams[0]; !slices.Contains(got, "bf-solo") {
				t.Errorf("the solo ticket's match shows team 0 as %v", got)
			}
			// The allocation gains the party just after the ticket shows
			// its server, in the distributed mode (the fill's second
			// step): the server's long-poll wakes on it.
			var allocs contracts.Allocations
			for deadline := time.Now().Add(5 * time.Second); ; {
				c.do(http.MethodGet, fmt.Sprintf("%s/v1/servers/gs-bf/allocations?wait=1s&after=%d", s.assignerURL, allocs.Version), nil, &allocs)
				if len(allocs.Allocations) == 1 && slices.Contains(allocs.Allocations[0].TicketIDs, solo.ID) || time.Now().After(deadline) {
					break
				}
			}
			if len(allocs.Allocations) != 1 || !slices.Contains(allocs.Allocations[0].TicketIDs, solo.ID) ||
				!slices.Contains(allocs.Allocations[0].Teams[0], "bf-solo") || len(allocs.Allocations[0].Players) != 5 {
				t.Errorf("allocations after the backfill: %+v", allocs)
			}
			var srv contracts.Server
			c.do(http.MethodGet, s.assignerURL+"/v1/servers/gs-bf", nil, &srv)
			if srv.Allocated != 1 {
				t.Errorf("server hosts %d matches after the backfill, want still 1", srv.Allocated)
			}
			// Neither the duo (two players for one seat) nor the far
			// player took a seat, and the one seat went once.
			another := create(1500, "bf-another")
			time.Sleep(3 * q.RetryDelay)
			for _, id := range []string{duo.ID, far.ID, another.ID} {
				var got contracts.Ticket
				c.do(http.MethodGet, s.frontURL+"/v1/tickets/"+id, nil, &got)
				if got.Status != contracts.StatusSearching {
					t.Errorf("ticket %v is %s, want searching: the request had one seat", got.PlayerIDs(), got.Status)
				}
			}

			for _, id := range []string{duo.ID, far.ID, another.ID} {
				c.do(http.MethodDelete, s.frontURL+"/v1/tickets/"+id, nil, nil)
			}

			// A request withdrawn with its match takes nobody.
			if code := backfill(0, 1); code != http.StatusAccepted {
				t.Fatalf("second backfill: %d", code)
			}
			if code := c.do(http.MethodDelete, s.assignerURL+"/v1/servers/gs-bf/matches/"+matchID, nil, nil); code != http.StatusNoContent {
				t.Fatalf("ending the match: %d", code)
			}
			if code := backfill(0, 1); code != http.StatusNotFound {
				t.Errorf("backfill of an ended match: %d, want 404", code)
			}
			after := create(1500, "bf-after")
			time.Sleep(3 * q.RetryDelay)
			var got contracts.Ticket
			c.do(http.MethodGet, s.frontURL+"/v1/tickets/"+after.ID, nil, &got)
			if got.Status != contracts.StatusSearching {
				t.Errorf("a ticket after the match ended is %s, want searching", got.Status)
			}
		})
	}
}

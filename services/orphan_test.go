package services

import (
	"context"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// TestOrphanedTicketIsAnnouncedAgain: a front that dies between storing a
// ticket and publishing it leaves a ticket no matcher has seen. The reaper
// publishes it again once MM_ORPHAN_AFTER has passed, and it is matched
// with a player who queued normally, long before its max wait would have
// expired it.
func TestOrphanedTicketIsAnnouncedAgain(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			q := testQueue()
			s := startStack(t, m, stackOptions{queue: q, orphanAfter: 300 * time.Millisecond})
			c := newClient(t)
			c.registerServer(s.assignerURL, "gs-1", "eu-west", 1)
			now := time.Now().UTC()
			orphan := contracts.Ticket{ID: store.NewID("duel"), Queue: "duel", Status: contracts.StatusSearching, Version: 1,
				CreatedAt: now, UpdatedAt: now, Players: []contracts.Player{{ID: "p-orphan", Skill: 1500}},
				Latencies: map[string]float64{"eu-west": 20}}
			if err := s.front.app.deps.Store.CreateTicket(context.Background(), orphan, now.Add(q.MaxWait)); err != nil {
				t.Fatal(err)
			}
			partner := c.createTicket(s.frontURL, player("p-partner", 1500))
			got := c.awaitTerminal(s.frontURL, orphan.ID, q.MaxWait/2)
			if got.Status != contracts.StatusAssigned {
				t.Fatalf("orphaned ticket ended %s, want assigned", got.Status)
			}
			if p := c.awaitTerminal(s.frontURL, partner.ID, 5*time.Second); p.Match == nil || p.Match.ID != got.Match.ID {
				t.Errorf("partner %+v is not in the orphan's match %+v", p.Match, got.Match)
			}
		})
	}
}

// TestOverdueMatchIsSentAgain: a match whose message is gone (a Redis that
// lost its last writes forgets a placement whose message the assigner
// acknowledged) still waits for a server past its deadline; the reaper
// sends it to the assigners again, and it is placed.
func TestOverdueMatchIsSentAgain(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			q := testQueue()
			s := startStack(t, m, stackOptions{queue: q})
			c := newClient(t)
			c.registerServer(s.assignerURL, "gs-1", "eu-west", 1)
			st := s.front.app.deps.Store
			ctx := context.Background()
			now := time.Now().UTC()
			match := contracts.Match{ID: store.NewID("duel"), Queue: "duel", Region: "eu-west", CreatedAt: now,
				AssignDeadline: now.Add(200 * time.Millisecond)}
			for _, p := range []string{"p-1", "p-2"} {
				tk := contracts.Ticket{ID: store.NewID("duel"), Queue: "duel", Status: contracts.StatusSearching, Version: 1,
					CreatedAt: now, UpdatedAt: now, Players: []contracts.Player{{ID: p, Skill: 1500}}}
				if err := st.CreateTicket(ctx, tk, now.Add(q.MaxWait)); err != nil {
					t.Fatal(err)
				}
				match.TicketIDs = append(match.TicketIDs, tk.ID)
				match.Players = append(match.Players, tk.Players...)
				match.Teams = append(match.Teams, []string{p})
			}
			if err := st.ClaimMatch(ctx, match, now); err != nil {
				t.Fatal(err)
			}
			for _, id := range match.TicketIDs {
				if got := c.awaitTerminal(s.frontURL, id, 10*time.Second); got.Status != contracts.StatusAssigned {
					t.Errorf("ticket %s of the overdue match ended %s, want assigned", id, got.Status)
				}
			}
		})
	}
}

package player_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/assigner/gameserver"
	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/front/player"
)

// TestAccept: in a queue that asks, Wait stops at the match offered, and
// Accept answers it: two players who accept are assigned; a player who
// declines the next match is cancelled and the other searches again.
func TestAccept(t *testing.T) {
	file := filepath.Join(t.TempDir(), "queues.yaml")
	const queuesYAML = "queues:\n  - name: tour\n    accept_timeout: 10s\n    max_wait: 30s\n"
	if err := os.WriteFile(file, []byte(queuesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	url := startEmbeddedWith(t, file)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	gs, err := gameserver.New(gameserver.Config{ID: "gs-a", URLs: []string{url}, Token: token(t, "gs-a", "server"),
		Registration: contracts.ServerRequest{Address: "10.0.0.9:7777", Region: "eu-west", Capacity: 4}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gs.Register(ctx); err != nil {
		t.Fatal(err)
	}
	queue := func(p *player.Client, id string) contracts.Ticket {
		t.Helper()
		tk, err := p.Create(ctx, contracts.TicketRequest{Queue: "tour", Players: []contracts.Player{{ID: id, Skill: 1500}}})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	asked := func(p *player.Client, id string) contracts.Ticket {
		t.Helper()
		tk, err := p.Wait(ctx, id, contracts.StatusAssigned)
		if err != nil || !tk.Asked() {
			t.Fatalf("Wait = %+v, %v; want a ticket asked to accept", tk, err)
		}
		return tk
	}
	pa, pb := newPlayer(t, []string{url}, "p-a"), newPlayer(t, []string{url}, "p-b")
	a, b := queue(pa, "p-a"), queue(pb, "p-b")
	asked(pa, a.ID)
	asked(pb, b.ID)
	if tk, err := pa.Accept(ctx, a.ID, true); err != nil || tk.Status != contracts.StatusPendingAcceptance || !tk.Acceptance.Accepted {
		t.Fatalf("Accept = %+v, %v", tk, err)
	}
	if tk, err := pb.Accept(ctx, b.ID, true); err != nil || tk.Status != contracts.StatusMatched {
		t.Fatalf("the last Accept = %+v, %v", tk, err)
	}
	if tk, err := pa.Wait(ctx, a.ID, contracts.StatusAssigned); err != nil || tk.Status != contracts.StatusAssigned {
		t.Fatalf("Wait after accepting = %+v, %v", tk, err)
	}

	pc, pd := newPlayer(t, []string{url}, "p-c"), newPlayer(t, []string{url}, "p-d")
	c, d := queue(pc, "p-c"), queue(pd, "p-d")
	asked(pc, c.ID)
	if tk, err := pc.Accept(ctx, c.ID, false); err != nil || tk.Status != contracts.StatusCancelled || tk.Reason != contracts.ReasonDeclined {
		t.Fatalf("declining = %+v, %v", tk, err)
	}
	// The match fell through: d is offered nothing now.
	if _, err := pd.Accept(ctx, d.ID, true); !errors.Is(err, player.ErrConflict) {
		t.Errorf("accepting a match that fell through = %v; want ErrConflict", err)
	}
	if tk, err := pd.Ticket(ctx, d.ID); err != nil || tk.Status != contracts.StatusSearching || tk.Match != nil {
		t.Errorf("the other ticket after a decline = %+v, %v; want searching", tk, err)
	}
	if _, err := pc.Accept(ctx, c.ID, true); err == nil {
		t.Error("accepting a declined match succeeded")
	}
}

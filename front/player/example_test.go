package player_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/front/player"
)

// A game client queues its player and waits for a server to connect to.
// The token comes from the studio's backend after its own login; the
// callback is asked before every request, so it can refresh it.
func Example() {
	ctx := context.Background()
	mm, err := player.New(player.Config{
		Fronts: []string{"https://mm.example.com"},
		Token:  func(context.Context) (string, error) { return os.Getenv("QUICKMATCH_TOKEN"), nil },
	})
	if err != nil {
		log.Fatal(err)
	}
	t, err := mm.Create(ctx, contracts.TicketRequest{Queue: "duel",
		Players: []contracts.Player{{ID: "p-1", Skill: 1520}}, Latencies: map[string]float64{"eu-west": 31}})
	if err != nil {
		log.Fatal(err) // errors.Is(err, player.ErrPlayerHasTicket): resume the ticket it names
	}
	if t, err = mm.Wait(ctx, t.ID, contracts.StatusAssigned); err != nil {
		log.Fatal(err)
	}
	if t.Status == contracts.StatusAssigned {
		fmt.Println("connect to", t.Assignment.Address)
	} else {
		fmt.Println("no match:", t.Status, t.Reason) // expired, failed or cancelled
	}
}

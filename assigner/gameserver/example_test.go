package gameserver_test

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/quickmatch/quickmatch/assigner/gameserver"
	"github.com/quickmatch/quickmatch/contracts"
)

// A game server registers, heartbeats and hosts the matches placed on it
// until it is told to stop, and then drains: Run does all of it.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var gs *gameserver.Client
	gs, err := gameserver.New(gameserver.Config{
		ID:           "gs-1",
		URLs:         []string{"https://mm.example.com"},
		Token:        func(context.Context) (string, error) { return os.Getenv("QUICKMATCH_TOKEN"), nil },
		Registration: contracts.ServerRequest{Address: "10.0.0.7:7777", Region: "eu-west", Capacity: 4},
		Handler: func(ctx context.Context, a contracts.Allocation) {
			play(ctx, a) // admit a.Players into a.Teams, run the game
			if err := gs.End(ctx, a.MatchID); err != nil {
				log.Print(err)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := gs.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

func play(context.Context, contracts.Allocation) {}

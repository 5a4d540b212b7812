// Command assigner serves the game-server API (contracts/openapi.yaml) and places formed
// matches on game servers. It needs MM_AMQP_URL and MM_REDIS_ADDR.
package main

import (
	"os"

	"github.com/quickmatch/quickmatch/services"
)

func main() { os.Exit(services.Main(services.Assigner)) }

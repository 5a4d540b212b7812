// Command front serves the player API (contracts/openapi.yaml) and holds its long-polls.
// It needs MM_AMQP_URL and MM_REDIS_ADDR; see README.md for the rest.
package main

import (
	"os"

	"github.com/quickmatch/quickmatch/services"
)

func main() { os.Exit(services.Main(services.Front)) }

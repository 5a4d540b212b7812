// Command matchmaker runs the front, the matcher and the assigner in one
// process. With no MM_AMQP_URL and MM_REDIS_ADDR it runs the embedded mode,
// with an in-memory broker and store: `go run ./services/matchmaker`.
package main

import (
	"os"

	"github.com/quickmatch/quickmatch/services"
)

func main() { os.Exit(services.Main(services.All)) }

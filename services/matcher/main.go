// Command matcher consumes ticket messages and forms matches. It needs
// MM_AMQP_URL and MM_REDIS_ADDR; run as many replicas as the load wants.
package main

import (
	"os"

	"github.com/quickmatch/quickmatch/services"
)

func main() { os.Exit(services.Main(services.Matcher)) }

package contracts

// Queue names in the broker. Every name starts with a deployment prefix
// (MM_AMQP_PREFIX, "mm." by default) so that several deployments, or tests,
// can share one broker. Messages are published through the default exchange
// straight to these queues; each work queue has a retry queue whose message
// TTL dead-letters back into it, which is how a miss comes back after a delay.
const (
	// TicketQueuePrefix + queue name carries the ticket messages of one
	// matchmaking queue, e.g. "tickets.duel".
	TicketQueuePrefix = "tickets."
	// MatchQueue carries match messages to the assigners.
	MatchQueue = "matches"
	// RetrySuffix names the delay queue of a work queue.
	RetrySuffix = ".retry"
	// DeadLetterQueue holds messages no consumer could process.
	DeadLetterQueue = "dead"
)

// TicketQueue is the broker queue of the matchmaking queue named queue.
func TicketQueue(queue string) string { return TicketQueuePrefix + queue }

// Package broker defines how services pass work to each other through durable
// queues, and the guarantees any implementation keeps. Two implementations
// pass one conformance suite (package brokertest): membroker for the
// embedded mode and rabbit (RabbitMQ) for the distributed one.
//
// Queue names are logical (contracts.TicketQueue("duel"), contracts.MatchQueue);
// an implementation may prefix them. Every work queue has a retry queue that
// holds a message for the queue's retry delay and then puts it back on the
// work queue, and there is one dead-letter queue, contracts.DeadLetterQueue.
package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

// ErrDeadLetter, wrapped in a handler's error, sends the message to the
// dead-letter queue instead of retrying it: for messages that can never be
// processed, such as undecodable ones.
var ErrDeadLetter = errors.New("dead-letter")

// Message is one delivery.
type Message struct {
	Body []byte
	// Redelivered is true when the message was delivered before and not
	// acknowledged: a consumer died or gave up on it.
	Redelivered bool
}

// Handler processes one message. Returning nil acknowledges it. An error
// wrapping ErrDeadLetter dead-letters it. Any other error is taken as
// transient: the message is delivered again after a short backoff (never in
// a hot loop), with Redelivered set.
type Handler func(ctx context.Context, m Message) error

// ConsumeOptions bound how much a consumer takes at once.
type ConsumeOptions struct {
	// Prefetch is how many unacknowledged messages the consumer holds.
	Prefetch int
	// Workers is how many handlers run at once (at most Prefetch).
	Workers int
}

// Broker is the whole contract, as the conformance suite checks it.
type Broker interface {
	// Declare makes sure work queue name and its retry queue exist, the
	// retry queue holding messages for retryDelay. Declaring again with the
	// same arguments is harmless. Publish and Consume on a queue that was
	// never declared fail.
	Declare(ctx context.Context, name string, retryDelay time.Duration) error
	// Publish appends bodies to work queue name as persistent messages and
	// returns once the broker has confirmed every one (durably stored), or
	// an error if any is not confirmed.
	Publish(ctx context.Context, name string, bodies ...[]byte) error
	// PublishDelayed is Publish through name's retry queue: the messages
	// reach the work queue after its retry delay.
	PublishDelayed(ctx context.Context, name string, bodies ...[]byte) error
	// Consume delivers messages of queue name to h until ctx ends, then
	// stops taking new messages, waits for running handlers (which get a
	// context that is not cancelled with ctx) and returns nil. Messages
	// taken but not acknowledged go back to the queue for another consumer.
	// It survives connection loss: it resumes once the broker is back.
	// Consuming contracts.DeadLetterQueue reads the dead letters.
	Consume(ctx context.Context, name string, opts ConsumeOptions, h Handler) error
	// Ping checks that the broker is reachable.
	Ping(ctx context.Context) error
	// Close releases the connection; consumers return.
	Close() error
}

// CheckDeclare checks the arguments of Declare, as every implementation
// must: a non-empty name that is not the dead-letter queue, which belongs to
// the broker, and a positive retry delay.
func CheckDeclare(name string, retryDelay time.Duration) error {
	switch {
	case name == "":
		return errors.New("declaring a queue: empty name")
	case name == contracts.DeadLetterQueue:
		return fmt.Errorf("declaring %s: the dead-letter queue is the broker's own", name)
	case retryDelay <= 0:
		return fmt.Errorf("declaring %s: retry delay %v is not positive", name, retryDelay)
	}
	return nil
}

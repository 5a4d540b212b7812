package front

import (
	"context"
	"fmt"
	"sync"

	"github.com/quickmatch/quickmatch/contracts"
)

// announcer tells the matchers of the tickets a front creates. The tickets
// of one queue created while that queue's previous message waits for its
// confirm go out together as the next message (group commit): under load
// one message and one confirm carry many tickets, and a lone create waits
// for no timer, only for a message already on its way.
type announcer struct {
	pub    Publisher
	queues sync.Map // queue name → *announceQueue
}

// announceQueue is the announcements of one queue.
type announceQueue struct {
	name    string // the work queue
	mu      sync.Mutex
	waiting []*announcement
	sending bool // an announcement is sending a message, or is about to
}

// announcement is one ticket waiting to be announced.
type announcement struct {
	ticket contracts.Ticket
	err    error
	// done receives false once the ticket's message is confirmed or has
	// failed (err), or true when the announcement is to send the next
	// message.
	done chan bool
}

func (a *announcer) queue(name string) *announceQueue {
	if q, ok := a.queues.Load(name); ok {
		return q.(*announceQueue)
	}
	q, _ := a.queues.LoadOrStore(name, &announceQueue{name: contracts.TicketQueue(name)})
	return q.(*announceQueue)
}

// announce publishes t to its queue's matchers and returns once the broker
// has confirmed the message holding it. The caller that finds no message
// on its way sends one with every ticket waiting then, up to
// MaxTicketsPerMessage, and hands the sending on to the next ticket that
// arrived meanwhile; ctx bounds the message this call sends.
func (a *announcer) announce(ctx context.Context, t contracts.Ticket) error {
	me := &announcement{ticket: t, done: make(chan bool, 1)}
	q := a.queue(t.Queue)
	q.mu.Lock()
	q.waiting = append(q.waiting, me)
	if q.sending {
		q.mu.Unlock()
		if lead := <-me.done; !lead {
			return me.err
		}
		q.mu.Lock()
	}
	q.sending = true
	n := min(len(q.waiting), contracts.MaxTicketsPerMessage)
	batch := q.waiting[:n:n]
	q.waiting = q.waiting[n:]
	q.mu.Unlock()

	err := a.send(ctx, q.name, batch)

	q.mu.Lock()
	if len(q.waiting) == 0 {
		q.sending = false
		q.waiting = nil // let the array go
		q.mu.Unlock()
	} else {
		next := q.waiting[0]
		q.mu.Unlock()
		next.done <- true
	}
	for _, o := range batch {
		o.err = err
		if o != me {
			o.done <- false
		}
	}
	return err
}

// send publishes the tickets of batch to work queue name in one message.
func (a *announcer) send(ctx context.Context, name string, batch []*announcement) error {
	tries := make([]contracts.TicketTry, len(batch))
	for i, o := range batch {
		tries[i] = contracts.TicketTry{Ticket: o.ticket}
	}
	body, err := contracts.EncodeTicketMessage(tries...)
	if err != nil {
		return err
	}
	if err := a.pub.Publish(ctx, name, body); err != nil {
		return fmt.Errorf("publishing %d tickets: %w", len(batch), err)
	}
	return nil
}

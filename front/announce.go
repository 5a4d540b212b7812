package front

import (
	"cmp"
	"context"
	"fmt"
	"sync"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/combine"
)

// announcer tells the matchers of the tickets a front creates. The tickets
// of one queue created while that queue's previous message waits for its
// confirm go out together as the next message (group commit, see
// internal/combine): under load one message and one confirm carry many
// tickets, and a lone create waits for no timer, only for a message
// already on its way.
type announcer struct {
	pub    Publisher
	queues sync.Map // queue name → *combine.Combiner[*announcement]
}

// announcement is one ticket to announce, and the outcome of its message.
type announcement struct {
	ticket contracts.Ticket
	err    error
}

func (a *announcer) combiner(queue string) *combine.Combiner[*announcement] {
	if c, ok := a.queues.Load(queue); ok {
		return c.(*combine.Combiner[*announcement])
	}
	c, _ := a.queues.LoadOrStore(queue, &combine.Combiner[*announcement]{Max: contracts.MaxTicketsPerMessage})
	return c.(*combine.Combiner[*announcement])
}

// announce publishes t to its queue's matchers and returns once the broker
// has confirmed the message holding it; ctx bounds the message if this
// call is the one to send it.
func (a *announcer) announce(ctx context.Context, t contracts.Ticket) error {
	me := &announcement{ticket: t}
	a.combiner(t.Queue).Do([]*announcement{me}, func(batch []*announcement) func() {
		// The message is sent and confirmed before the next one starts:
		// the creates that arrive meanwhile make that one bigger.
		err := a.send(ctx, contracts.TicketQueue(t.Queue), batch)
		for _, o := range batch {
			o.err = err
		}
		return nil
	})
	return me.err
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

// announceAll publishes ts, the tickets of each queue in one message
// where they fit, and returns once every message is confirmed; the first
// error is returned.
func (a *announcer) announceAll(ctx context.Context, ts []contracts.Ticket) error {
	byQueue := map[string][]*announcement{}
	for _, t := range ts {
		byQueue[t.Queue] = append(byQueue[t.Queue], &announcement{ticket: t})
	}
	var first error
	for q, batch := range byQueue {
		a.combiner(q).Do(batch, func(batch []*announcement) func() {
			err := a.send(ctx, contracts.TicketQueue(q), batch)
			for _, o := range batch {
				o.err = err
			}
			return nil
		})
		for _, o := range batch {
			first = cmp.Or(first, o.err)
		}
	}
	return first
}

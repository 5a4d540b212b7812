package services

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/matcher"
)

// dyingConsumer takes ticket messages from RabbitMQ on its own connection
// and can vanish without acknowledging, as a matcher process does when it is
// killed.
type dyingConsumer struct {
	t     *testing.T
	conn  *amqp.Connection
	ch    *amqp.Channel
	queue <-chan amqp.Delivery
}

func newDyingConsumer(t *testing.T, cfg Config) *dyingConsumer {
	t.Helper()
	conn, err := amqp.Dial(cfg.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	q, err := ch.Consume(cfg.AMQPPrefix+contracts.TicketQueue("duel"), "dying", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &dyingConsumer{t: t, conn: conn, ch: ch, queue: q}
}

func (d *dyingConsumer) next() amqp.Delivery {
	d.t.Helper()
	select {
	case m := <-d.queue:
		return m
	case <-time.After(10 * time.Second):
		d.t.Fatal("no ticket message within 10s")
	}
	panic("unreachable")
}

// die closes the channel with its message unacknowledged.
func (d *dyingConsumer) die() {
	d.t.Helper()
	if err := d.ch.Close(); err != nil {
		d.t.Fatal(err)
	}
}

// countMatches counts the match messages published through it.
type countMatches struct {
	matcher.Publisher
	n *atomic.Int64
}

func (p countMatches) Publish(ctx context.Context, name string, bodies ...[]byte) error {
	err := p.Publisher.Publish(ctx, name, bodies...)
	if err == nil && name == contracts.MatchQueue {
		p.n.Add(int64(len(bodies)))
	}
	return err
}

// matchPublishFails lets ticket retries through and fails match messages,
// as a process does when it dies between its claim and its publish.
type matchPublishFails struct{ broker.Broker }

func (p matchPublishFails) Publish(ctx context.Context, name string, bodies ...[]byte) error {
	if name == contracts.MatchQueue {
		return errors.New("killed before publishing the match")
	}
	return p.Broker.Publish(ctx, name, bodies...)
}

// TestMatcherDiesMidMessage kills a matcher at each point of handling a
// ticket message: before any effect, after the claim but before the match is
// published, and after the publish but before the ack. In every case the
// redelivered message is finished by a healthy matcher: both tickets end in
// one match, placed once (invariants 4.1 and 4.3).
//
// The healthy matcher runs in the test, on the same broker and store and
// with the settings of a matcher process, so that the test sees when it has
// handled the redelivery and counts the match messages. The game server
// registers only then: until the match is placed, the redelivery of a
// message whose match was published publishes it again, so the last case
// always sends a duplicate, and the test waits for the assigner to have
// handled every match message before it counts the placements.
func TestMatcherDiesMidMessage(t *testing.T) {
	tests := []struct {
		name string
		// handleSecond runs the dying matcher's work on the second
		// ticket's message before it dies.
		handleSecond func(ctx context.Context, m *matcher.Matcher, failing *matcher.Matcher, msg broker.Message) error
		// matchMessages is how many messages of the match are sent: the
		// dying matcher's publish, if it got that far, and the publish
		// (or republish) of the redelivery.
		matchMessages int
	}{
		{"before any effect", func(context.Context, *matcher.Matcher, *matcher.Matcher, broker.Message) error { return nil }, 1},
		{"after the claim, before the publish", func(ctx context.Context, _, failing *matcher.Matcher, msg broker.Message) error {
			if err := failing.Handle(ctx, msg); err == nil {
				return errors.New("the claim should have been followed by a failed publish")
			}
			return nil
		}, 1},
		{"after the publish, before the ack", func(ctx context.Context, m, _ *matcher.Matcher, msg broker.Message) error {
			return m.Handle(ctx, msg)
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := testQueue()
			q.AssignDeadline = 15 * time.Second // the match waits for the server
			s := startStack(t, distributed, stackOptions{noMatchers: true, queue: q})
			c := newClient(t)
			ctx := context.Background()
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			deps, err := Connect(ctx, &s.cfg, "dying-matcher", log)
			if err != nil {
				t.Fatal(err)
			}
			defer deps.Close()
			if err := declareQueues(ctx, deps.Broker, &s.cfg); err != nil {
				t.Fatal(err)
			}
			newMatcher := func(pub matcher.Publisher) *matcher.Matcher {
				return matcher.New(matcher.Config{Queues: s.cfg.Queues, Store: deps.Store, Publisher: pub,
					Metrics: metrics.NewUnregistered(), Log: log})
			}
			var published atomic.Int64
			healthy, failing := newMatcher(countMatches{deps.Broker, &published}), newMatcher(matchPublishFails{deps.Broker})

			a := c.createTicket(s.frontURL, player("p-a", 1500))
			b := c.createTicket(s.frontURL, player("p-b", 1500))
			dying := newDyingConsumer(t, s.cfg)
			first := dying.next()
			// The first ticket finds nobody and waits in the pool.
			if err := healthy.Handle(ctx, broker.Message{Body: first.Body}); err != nil {
				t.Fatal(err)
			}
			if err := first.Ack(false); err != nil {
				t.Fatal(err)
			}
			second := dying.next()
			if err := tt.handleSecond(ctx, healthy, failing, broker.Message{Body: second.Body}); err != nil {
				t.Fatal(err)
			}
			dying.die()

			finishing := matcher.New(matcher.Config{Queues: s.cfg.Queues, Store: deps.Store,
				Publisher: countMatches{deps.Broker, &published}, Metrics: metrics.NewUnregistered(), Log: log,
				Batch: !s.cfg.Embedded()})
			redelivered := make(chan struct{})
			var once sync.Once
			cctx, cancel := context.WithCancel(ctx)
			consumed := make(chan error, 1)
			go func() {
				opts := broker.ConsumeOptions{Prefetch: s.cfg.MatcherPrefetch, Workers: s.cfg.MatcherWorkers}
				consumed <- deps.Broker.Consume(cctx, contracts.TicketQueue("duel"), opts, func(ctx context.Context, msg broker.Message) error {
					err := finishing.Handle(ctx, msg)
					if err == nil && msg.Redelivered && bytes.Equal(msg.Body, second.Body) {
						once.Do(func() { close(redelivered) })
					}
					return err
				})
			}()
			defer func() {
				cancel()
				if err := <-consumed; err != nil {
					t.Errorf("healthy matcher: %v", err)
				}
			}()
			select {
			case <-redelivered:
			case <-time.After(15 * time.Second):
				t.Fatal("the dying matcher's message was not redelivered and handled within 15s")
			}
			// Every match message is sent by now: the other ticket's retries
			// find it matched and send none.
			if n := published.Load(); n != int64(tt.matchMessages) {
				t.Errorf("%d messages of the match sent, want %d", n, tt.matchMessages)
			}
			c.registerServer(s.assignerURL, "gs-1", "eu-west", 10)

			ta := c.awaitTerminal(s.frontURL, a.ID, 15*time.Second)
			tb := c.awaitTerminal(s.frontURL, b.ID, 15*time.Second)
			if ta.Status != contracts.StatusAssigned || tb.Status != contracts.StatusAssigned {
				t.Fatalf("tickets ended %s and %s, want assigned", ta.Status, tb.Status)
			}
			if ta.Match.ID != tb.Match.ID {
				t.Fatalf("tickets in different matches %s and %s", ta.Match.ID, tb.Match.ID)
			}
			// A duplicate match message must not place the match twice:
			// wait until the assigner has handled every message of the
			// match (a duplicate of a placed match is answered with its
			// assignment, so it counts as assigned too), then look.
			sent := int(published.Load())
			handled := s.awaitAssignments(t, "duel", "assigned", sent, 15*time.Second)
			var srv contracts.Server
			c.do(http.MethodGet, s.assignerURL+"/v1/servers/gs-1", nil, &srv)
			if srv.Allocated != 1 {
				t.Fatalf("server hosts %d matches, want 1", srv.Allocated)
			}
			if handled != sent {
				t.Errorf("assigner placed or answered %d messages of the match, want the %d sent", handled, sent)
			}
		})
	}
}

// TestOrphanedTicketExpires: a front that dies between storing a ticket and
// publishing its message leaves a ticket no message will ever visit; the
// reaper still ends it (invariant 4.3).
func TestOrphanedTicketExpires(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			q := testQueue()
			q.MaxWait = 500 * time.Millisecond
			s := startStack(t, m, stackOptions{queue: q})
			ctx := context.Background()
			now := time.Now().UTC()
			orphan := contracts.Ticket{ID: store.NewID("duel"), Queue: "duel", Status: contracts.StatusSearching, Version: 1,
				CreatedAt: now, UpdatedAt: now, Players: []contracts.Player{{ID: "p-orphan", Skill: 1500}}}
			if err := s.front.app.deps.Store.CreateTicket(ctx, orphan, now.Add(q.MaxWait)); err != nil {
				t.Fatal(err)
			}
			tk := newClient(t).awaitTerminal(s.frontURL, orphan.ID, 10*time.Second)
			if tk.Status != contracts.StatusExpired {
				t.Fatalf("orphaned ticket ended %s, want expired", tk.Status)
			}
		})
	}
}

// TestUndecodableMessageIsDeadLettered: garbage on the ticket queue goes to
// the dead-letter queue and the matcher goes on matching (invariant 4.7).
func TestUndecodableMessageIsDeadLettered(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			s := startStack(t, m, stackOptions{})
			ctx := context.Background()
			brk := s.front.app.deps.Broker
			bad := [][]byte{[]byte("not json"), []byte(`{"v":99,"ticket":{}}`), []byte(`{"v":1,"ticket":{"id":"x"}}`)}
			if err := brk.Publish(ctx, contracts.TicketQueue("duel"), bad...); err != nil {
				t.Fatal(err)
			}
			c := newClient(t)
			c.registerServer(s.assignerURL, "gs-1", "eu-west", 1)
			a := c.createTicket(s.frontURL, player("p-1", 1500))
			c.createTicket(s.frontURL, player("p-2", 1500))
			if tk := c.awaitTerminal(s.frontURL, a.ID, 10*time.Second); tk.Status != contracts.StatusAssigned {
				t.Fatalf("ticket after the poison ended %s, want assigned", tk.Status)
			}
			got := make(chan []byte, len(bad))
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			consumed := make(chan error, 1)
			go func() {
				consumed <- brk.Consume(dctx, contracts.DeadLetterQueue, broker.ConsumeOptions{Prefetch: 10, Workers: 1},
					func(_ context.Context, msg broker.Message) error {
						got <- msg.Body
						return nil
					})
			}()
			defer func() {
				cancel()
				if err := <-consumed; err != nil {
					t.Errorf("consuming dead letters: %v", err)
				}
			}()
			seen := map[string]bool{}
			for range bad {
				select {
				case b := <-got:
					seen[string(b)] = true
				case <-dctx.Done():
					t.Fatalf("dead-letter queue holds %d of %d bad messages", len(seen), len(bad))
				}
			}
			for _, b := range bad {
				if !seen[string(b)] {
					t.Errorf("message %q not dead-lettered", b)
				}
			}
		})
	}
}

package rabbit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/broker/brokertest"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// newTestBroker dials the test RabbitMQ under a fresh prefix and connection
// name, and deletes the test's queues when it ends.
func newTestBroker(tb testing.TB, queueType string) *Broker {
	tb.Helper()
	url := testenv.AMQPURL(tb)
	prefix := testenv.Prefix(tb)
	log := slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Dial(ctx, url, Options{
		Prefix:         prefix,
		QueueType:      queueType,
		ConnectionName: "quickmatch-test-" + prefix,
	}, log)
	if err != nil {
		tb.Fatalf("Dial: %v", err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		deleteQueues(tb, url, b)
	})
	return b
}

// deleteQueues deletes every queue b declared, on a connection of its own
// since b is closed by then.
func deleteQueues(tb testing.TB, url string, b *Broker) {
	tb.Helper()
	names := []string{b.queueName(contracts.DeadLetterQueue)}
	b.mu.Lock()
	for name := range b.declared {
		names = append(names, b.queueName(name), b.retryName(name))
	}
	b.mu.Unlock()
	conn, err := amqp.Dial(url)
	if err != nil {
		tb.Errorf("connecting to delete queues: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		tb.Errorf("opening a channel to delete queues: %v", err)
		return
	}
	defer ch.Close()
	for _, name := range names {
		if _, err := ch.QueueDelete(name, false, false, false); err != nil {
			tb.Errorf("deleting queue %s: %v", name, err)
			return
		}
	}
}

// testBroker is a Broker that the conformance suite can inspect.
type testBroker struct{ *Broker }

// Ready returns how many messages of queue name wait for a consumer: the
// message count of a passive declare, which leaves out the messages
// delivered and not yet acknowledged.
func (b testBroker) Ready(ctx context.Context, name string) (int, error) {
	s, err := b.session(ctx, outageWait)
	if err != nil {
		return 0, fmt.Errorf("inspecting %s: %w", name, err)
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("inspecting %s: %w", name, err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(b.queueName(name), true, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("inspecting %s: %w", name, err)
	}
	return q.Messages, nil
}

func TestConformance(t *testing.T) {
	for _, queueType := range []string{"classic", "quorum"} {
		t.Run(queueType, func(t *testing.T) {
			brokertest.Run(t, func(t *testing.T) brokertest.Broker { return testBroker{newTestBroker(t, queueType)} })
		})
	}
}

func TestDialOptions(t *testing.T) {
	url := testenv.AMQPURL(t)
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"defaults", Options{}, true},
		{"quorum", Options{QueueType: "quorum", PublishChannels: 1}, true},
		{"unknown queue type", Options{QueueType: "stream"}, false},
		{"negative publish channels", Options{PublishChannels: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Prefix = testenv.Prefix(t)
			b, err := Dial(context.Background(), url, tt.opts, nil)
			if !tt.ok {
				if err == nil {
					b.Close()
					t.Fatal("Dial succeeded")
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			t.Cleanup(func() {
				b.Close()
				deleteQueues(t, url, b)
			})
			if err := b.Ping(context.Background()); err != nil {
				t.Errorf("Ping: %v", err)
			}
		})
	}
}

func TestDialUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Port 1 on loopback refuses connections.
	if b, err := Dial(ctx, "amqp://guest:guest@127.0.0.1:1/", Options{}, nil); err == nil {
		b.Close()
		t.Fatal("Dial of a closed port succeeded")
	}
}

// TestReconnect closes the broker's connection from the server side and
// checks that publishing works again and that a running consumer resumes.
func TestReconnect(t *testing.T) {
	ctl := testenv.Command(t, "rabbitmqctl") // to close a connection from the server side
	b := newTestBroker(t, "classic")
	ctx := context.Background()
	if err := b.Declare(ctx, "work", time.Second); err != nil {
		t.Fatalf("Declare: %v", err)
	}
	got := make(chan string, 100)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(cctx, "work", broker.ConsumeOptions{Prefetch: 4, Workers: 2}, func(ctx context.Context, m broker.Message) error {
			got <- string(m.Body)
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Consume: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Consume did not return after its context ended")
		}
	})
	expect := func(want string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case body := <-got:
				if body == want {
					return
				}
				// An earlier message may come again: its ack may have
				// been lost with the connection.
			case <-timeout:
				t.Fatalf("%q not consumed within 30s", want)
			}
		}
	}
	if err := b.Publish(ctx, "work", []byte("before")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	expect("before")

	old := connectionPID(t, ctl, b.opts.ConnectionName, "")
	rabbitmqctl(t, ctl, "close_connection", old, "quickmatch test: forced close")

	deadline := time.Now().Add(30 * time.Second)
	for {
		err := b.Publish(ctx, "work", []byte("after"))
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("Publish during the outage: %v, want an error wrapping ErrUnavailable", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish still failing 30s after the connection was closed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	expect("after")
	if err := b.Ping(ctx); err != nil {
		t.Errorf("Ping after reconnecting: %v", err)
	}
	// The broker is on a new connection under the same name.
	connectionPID(t, ctl, b.opts.ConnectionName, old)
	// Queues declared after the reconnect work too.
	if err := b.Declare(ctx, "later", time.Second); err != nil {
		t.Fatalf("Declare after reconnecting: %v", err)
	}
}

// connectionPID finds the connection named name, other than the one with
// pid except, on the server, waiting for it to appear since a reconnect may
// be under way.
func connectionPID(t *testing.T, ctl, name, except string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := rabbitmqctl(t, ctl, "-q", "list_connections", "--no-table-headers", "pid", "client_properties")
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if fields := strings.Fields(line); len(fields) > 1 && fields[0] != except && strings.Contains(line, `"`+name+`"`) {
				return fields[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection named %q on the server", name)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func rabbitmqctl(t *testing.T, ctl string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ctl, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func BenchmarkPublishConsume(b *testing.B) {
	for _, queueType := range []string{"classic", "quorum"} {
		b.Run(queueType, func(b *testing.B) {
			brokertest.Bench(b, newTestBroker(b, queueType))
		})
	}
}

// waitReady polls queue name until done accepts its count of ready
// messages, and returns that count; it fails the test after 30s.
func waitReady(t *testing.T, b testBroker, name string, done func(ready int) bool) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := b.Ready(context.Background(), name)
		if err != nil {
			t.Fatalf("Ready(%q): %v", name, err)
		}
		if done(n) {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still has %d messages ready after 30s", name, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOutOfOrderSettle runs handlers that finish out of order, some failing
// once and some dead-lettering, and checks that the coalesced
// acknowledgements settle every delivery as the Handler contract says: a
// success once, a failure redelivered once, a dead letter in the
// dead-letter queue, and nothing left unacknowledged.
func TestOutOfOrderSettle(t *testing.T) {
	for _, queueType := range []string{"classic", "quorum"} {
		t.Run(queueType, func(t *testing.T) {
			t.Parallel()
			const n, prefetch, workers = 200, 16, 4
			// Message i fails its first delivery when i%10 == failOnce
			// and is dead-lettered when i%10 == dead.
			const failOnce, dead = 3, 7
			b := testBroker{newTestBroker(t, queueType)}
			ctx := context.Background()
			if err := b.Declare(ctx, "work", time.Second); err != nil {
				t.Fatalf("Declare: %v", err)
			}

			var mu sync.Mutex
			seen := make(map[int][]bool) // message → Redelivered of each delivery
			deliveries, want := 0, n+n/10
			all := make(chan struct{}) // closed once want deliveries are in
			probes := make(chan struct{})
			// probed counts the probes handed to a handler: a stop before
			// the last of them would send it back to the queue, as a stop
			// should.
			var probed sync.WaitGroup
			probed.Add(prefetch)
			h := func(ctx context.Context, m broker.Message) error {
				if string(m.Body) == "probe" {
					<-probes
					probed.Done()
					return nil
				}
				var i int
				if _, err := fmt.Sscanf(string(m.Body), "m-%d", &i); err != nil {
					return fmt.Errorf("%w: %w", broker.ErrDeadLetter, err)
				}
				// The handler's work, of a length that depends on the
				// message so that handlers finish out of order: part of
				// the scenario, not a wait for an event.
				time.Sleep(time.Duration(i%4) * time.Millisecond)
				mu.Lock()
				seen[i] = append(seen[i], m.Redelivered)
				tries := len(seen[i])
				if deliveries++; deliveries == want {
					close(all)
				}
				mu.Unlock()
				switch {
				case i%10 == failOnce && tries == 1:
					return errors.New("store unavailable")
				case i%10 == dead:
					return fmt.Errorf("undecodable: %w", broker.ErrDeadLetter)
				}
				return nil
			}
			cctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- b.Consume(cctx, "work", broker.ConsumeOptions{Prefetch: prefetch, Workers: workers}, h)
			}()
			stopped := false
			stop := func() {
				if stopped {
					return
				}
				stopped = true
				cancel()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("Consume: %v", err)
					}
				case <-time.After(30 * time.Second):
					t.Fatalf("Consume did not return within 30s of its context ending")
				}
			}
			t.Cleanup(stop)

			bodies := make([][]byte, n)
			for i := range bodies {
				bodies[i] = fmt.Appendf(nil, "m-%d", i)
			}
			if err := b.Publish(ctx, "work", bodies...); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			select {
			case <-all:
			case <-time.After(30 * time.Second):
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%d of %d deliveries within 30s", deliveries, want)
			}
			// Nothing is left unacknowledged: then the consumer takes a
			// whole prefetch of probes, which its handlers hold. A lost
			// acknowledgement would take up room in the prefetch and
			// leave a probe in the queue.
			probe := make([][]byte, prefetch)
			for i := range probe {
				probe[i] = []byte("probe")
			}
			if err := b.Publish(ctx, "work", probe...); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			waitReady(t, b, "work", func(n int) bool { return n == 0 })
			close(probes)
			probed.Wait()
			waitReady(t, b, contracts.DeadLetterQueue, func(got int) bool { return got >= n/10 })
			stop()

			mu.Lock()
			defer mu.Unlock()
			for i := range n {
				want := []bool{false}
				if i%10 == failOnce {
					want = []bool{false, true}
				}
				if got := seen[i]; !slices.Equal(got, want) {
					t.Errorf("message %d delivered with Redelivered %v, want %v", i, got, want)
				}
			}
			for _, name := range []string{"work", contracts.DeadLetterQueue} {
				if got, err := b.Ready(ctx, name); err != nil {
					t.Errorf("Ready(%q): %v", name, err)
				} else if want := map[string]int{"work": 0, contracts.DeadLetterQueue: n / 10}[name]; got != want {
					t.Errorf("%s has %d messages after the consumer stopped, want %d", name, got, want)
				}
			}
		})
	}
}

// TestShutdownKeepsAcks stops a consumer while its handlers are finishing
// and checks that no acknowledgement is lost: every message is either
// handled once or back in the queue. A quorum queue drops
// acknowledgements still on their way when their channel closes, so
// Consume cancels its consumer and closes the channel only once the
// handlers have settled.
func TestShutdownKeepsAcks(t *testing.T) {
	for _, queueType := range []string{"classic", "quorum"} {
		t.Run(queueType, func(t *testing.T) {
			t.Parallel()
			const n, rounds = 1000, 5
			b := testBroker{newTestBroker(t, queueType)}
			ctx := context.Background()
			if err := b.Declare(ctx, "work", time.Second); err != nil {
				t.Fatalf("Declare: %v", err)
			}
			body := make([][]byte, n)
			for i := range body {
				body[i] = []byte("m")
			}
			left := 0 // messages in the queue
			for round := range rounds {
				if err := b.Publish(ctx, "work", body...); err != nil {
					t.Fatalf("Publish: %v", err)
				}
				left += n
				var handled atomic.Int64
				cctx, cancel := context.WithCancel(ctx)
				stopAt := int64(left / 2)
				err := b.Consume(cctx, "work", broker.ConsumeOptions{Prefetch: 256, Workers: 16}, func(context.Context, broker.Message) error {
					if handled.Add(1) == stopAt {
						cancel() // with handlers running and a prefetch taken
					}
					return nil
				})
				cancel()
				if err != nil {
					t.Fatalf("Consume: %v", err)
				}
				left -= int(handled.Load())
				// The messages taken and not handled come back to the
				// queue together once the channel is closed; a lost
				// acknowledgement would bring back one more with them.
				if got := waitReady(t, b, "work", func(got int) bool { return got >= left }); got != left {
					t.Fatalf("round %d: %d messages back in the queue after %d were handled, want %d: acknowledgements were lost",
						round, got, handled.Load(), left)
				}
			}
		})
	}
}

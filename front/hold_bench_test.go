package front_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker/membroker"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/redisstore"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// BenchmarkHeldPoll measures what a held ticket poll costs a front: the Go
// heap and stacks in use per held poll (held-B/poll, as the load tester's
// hold mode reads them, and gc-B/poll after a collection, which shrinks
// the stacks), and the time from a change to the poll's answer (ns/op,
// one poll held and woken per op, which with carried state reads nothing).
// The polls are sent on bare connections, so that the client side, in the
// same process, costs little beside them.
func BenchmarkHeldPoll(b *testing.B) {
	for _, backend := range []string{"memstore", "redisstore"} {
		b.Run(backend, func(b *testing.B) {
			newEnv := func(b *testing.B) *frontEnv {
				if backend == "memstore" {
					return newMemEnv(b)
				}
				addr, prefix := testenv.Redis(b)
				c := redis.NewClient(&redis.Options{Addr: addr})
				b.Cleanup(func() { c.Close() })
				mb := membroker.New(nil)
				b.Cleanup(func() { mb.Close() })
				return newFrontEnv(b, redisstore.New(c, redisstore.Options{Prefix: prefix, Listener: "front"}), mb)
			}
			b.Run("memory", func(b *testing.B) {
				const n = 2000
				e := newEnv(b)
				ids := make([]string, n)
				for i := range ids {
					ids[i] = createDirect(b, e, i)
				}
				var conns []net.Conn
				b.Cleanup(func() {
					for _, c := range conns {
						c.Close()
					}
				})
				var heldMem, gcMem int64
				for range b.N {
					held0, gc0 := memInUse(false), memInUse(true)
					for _, id := range ids {
						c, err := net.Dial("tcp", e.srv.Listener.Addr().String())
						if err != nil {
							b.Fatal(err)
						}
						conns = append(conns, c)
						if _, err := fmt.Fprintf(c, "GET /v1/tickets/%s?wait=60s&after=1 HTTP/1.1\r\nHost: x\r\n\r\n", id); err != nil {
							b.Fatal(err)
						}
					}
					waitHeld(b, e, float64(n))
					heldMem += memInUse(false) - held0
					gcMem += memInUse(true) - gc0
					b.StopTimer()
					// A client that leaves lets go of its poll.
					for _, c := range conns {
						c.Close()
					}
					conns = conns[:0]
					waitHeld(b, e, 0)
					b.StartTimer()
				}
				b.ReportMetric(float64(heldMem)/float64(n*b.N), "held-B/poll")
				b.ReportMetric(float64(gcMem)/float64(n*b.N), "gc-B/poll")
			})
			b.Run("wake", func(b *testing.B) {
				e := newEnv(b)
				ctx := context.Background()
				for i := 0; b.Loop(); i++ {
					b.StopTimer()
					id := createDirect(b, e, i)
					res := poll(b, e.srv.URL, "/v1/tickets/"+id+"?wait=10s&after=1")
					waitHeld(b, e, 1)
					b.StartTimer()
					if _, err := e.store.CancelTicket(ctx, id, clock); err != nil {
						b.Fatal(err)
					}
					if r := await(b, res, 5*time.Second); r.status != http.StatusOK || !strings.Contains(string(r.body), `"cancelled"`) {
						b.Fatalf("poll answered %d %s", r.status, r.body)
					}
				}
			})
		})
	}
}

// createDirect stores a searching duel ticket through the store itself.
func createDirect(b *testing.B, e *frontEnv, i int) string {
	b.Helper()
	tk := contracts.Ticket{
		ID: store.NewID("duel"), Queue: "duel", Status: contracts.StatusSearching, Version: 1,
		CreatedAt: clock, UpdatedAt: clock,
		Players:   []contracts.Player{{ID: fmt.Sprintf("p-%d-%d", i, time.Now().UnixNano()), Skill: 1500}},
		Latencies: map[string]float64{"eu-west": 31, "us-east": 112},
	}
	if err := e.store.CreateTicketOnce(context.Background(), tk, clock.Add(time.Hour), store.Idempotency{}); err != nil {
		b.Fatal(err)
	}
	return tk.ID
}

// waitHeld waits until the front holds n polls.
func waitHeld(b *testing.B, e *frontEnv, n float64) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.hub.Waiting() != int(n) {
		if time.Now().After(deadline) {
			b.Fatalf("%d polls held, want %v", e.hub.Waiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// memInUse is the Go heap and stacks in use, after a collection if gc.
func memInUse(gc bool) int64 {
	if gc {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

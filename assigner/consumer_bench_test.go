package assigner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
	"github.com/quickmatch/quickmatch/internal/store/redisstore"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// BenchmarkHandleRedis measures Consumer.Handle on the Redis store with as
// many handlers at once as an assigner runs by default (16) and more,
// each message alone (batch=false) and combined into batches. One op is
// one match placed. Run with a fixed count, since every op needs a match
// made beforehand:
//
//	go test -run '^$' -bench HandleRedis -benchtime 2000x ./assigner/
func BenchmarkHandleRedis(b *testing.B) {
	for _, workers := range []int{16, 64} {
		for _, batch := range []bool{false, true} {
			b.Run(fmt.Sprintf("workers=%d/batch=%v", workers, batch), func(b *testing.B) {
				benchmarkHandle(b, redisStore(b, workers), workers, batch)
			})
		}
	}
}

// BenchmarkHandleMemory is BenchmarkHandleRedis on the in-memory store of
// the embedded mode, where a store call costs no round trip.
func BenchmarkHandleMemory(b *testing.B) {
	for _, batch := range []bool{false, true} {
		b.Run(fmt.Sprintf("workers=16/batch=%v", batch), func(b *testing.B) {
			benchmarkHandle(b, memstore.New(memstore.Options{}), 16, batch)
		})
	}
}

// benchStore is what the benchmark needs of a store.
type benchStore interface {
	MatchStore
	RegisterServer(ctx context.Context, id string, req contracts.ServerRequest, ttl time.Duration, now time.Time) (contracts.Server, error)
	CreateTicket(ctx context.Context, t contracts.Ticket, expiresAt time.Time) error
	ClaimMatch(ctx context.Context, m contracts.Match, now time.Time) error
}

func redisStore(b *testing.B, workers int) *redisstore.Store {
	addr, prefix := testenv.Redis(b)
	client := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 2 * workers})
	b.Cleanup(func() { client.Close() })
	return redisstore.New(client, redisstore.Options{Prefix: prefix})
}

type nopPublisher struct{}

func (nopPublisher) PublishDelayed(context.Context, string, ...[]byte) error { return nil }

func benchmarkHandle(b *testing.B, st benchStore, workers int, batch bool) {
	counted := &batchCounter{MatchStore: st}
	c := NewConsumer(ConsumerConfig{Store: counted, Publisher: nopPublisher{}, Metrics: metrics.NewUnregistered(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Batch: batch})
	ctx := b.Context()
	now := time.Now()
	for i := range 4 {
		req := contracts.ServerRequest{Address: fmt.Sprintf("gs-%d:7777", i), Region: "eu", Capacity: b.N}
		if _, err := st.RegisterServer(ctx, fmt.Sprintf("gs-%d", i), req, time.Hour, now); err != nil {
			b.Fatal(err)
		}
	}
	bodies := make([][]byte, b.N)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(64)
	for i := range bodies {
		g.Go(func() error {
			var err error
			bodies[i], err = storedMatch(gctx, st, fmt.Sprintf("duel.m-%d", i), now)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}

	work := make(chan []byte, len(bodies))
	for _, body := range bodies {
		work <- body
	}
	close(work)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed error
	)
	b.ResetTimer()
	for range workers {
		wg.Go(func() {
			for body := range work {
				if err := c.Handle(ctx, broker.Message{Body: body}); err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "matches/s")
	b.ReportMetric(float64(b.N)/float64(counted.calls.Load()), "matches/batch")
}

// batchCounter counts the AssignMatches calls a consumer makes.
type batchCounter struct {
	MatchStore
	calls atomic.Int64
}

func (s *batchCounter) AssignMatches(ctx context.Context, ids []string, now time.Time) []store.AssignResult {
	s.calls.Add(1)
	return s.MatchStore.AssignMatches(ctx, ids, now)
}

// storedMatch stores a match of two solo tickets and answers its message.
func storedMatch(ctx context.Context, st benchStore, id string, now time.Time) ([]byte, error) {
	m := contracts.Match{ID: id, Queue: "duel", Region: "eu", CreatedAt: now, AssignDeadline: now.Add(time.Hour)}
	for _, side := range []string{"a", "b"} {
		tid := id + "-" + side
		tk := contracts.Ticket{ID: tid, Queue: "duel", Status: contracts.StatusSearching, Version: 1,
			CreatedAt: now, UpdatedAt: now, Players: []contracts.Player{{ID: "p-" + tid, Skill: 1500}}}
		if err := st.CreateTicket(ctx, tk, now.Add(time.Hour)); err != nil {
			return nil, err
		}
		m.TicketIDs = append(m.TicketIDs, tid)
		m.Teams = append(m.Teams, tk.PlayerIDs())
		m.Players = append(m.Players, tk.Players...)
	}
	if err := st.ClaimMatch(ctx, m, now); err != nil {
		return nil, err
	}
	return json.Marshal(contracts.MatchMessage{V: contracts.SchemaVersion, Match: m})
}

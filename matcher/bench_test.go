package matcher

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/broker/membroker"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
	"github.com/quickmatch/quickmatch/internal/store/redisstore"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// BenchmarkMatchPair measures the matcher's work for one duel: the first
// ticket misses and joins the pool, the second finds it and claims both.
// The broker is the in-memory one in both cases, so the figures compare the
// stores.
func BenchmarkMatchPair(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		benchmarkMatchPair(b, memstore.New(memstore.Options{}))
	})
	b.Run("redis", func(b *testing.B) {
		addr, prefix := testenv.Redis(b)
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		b.Cleanup(func() { rdb.Close() })
		benchmarkMatchPair(b, redisstore.New(rdb, redisstore.Options{Prefix: prefix}))
	})
}

func benchmarkMatchPair(b *testing.B, st store.Store) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	brk := membroker.New(log)
	b.Cleanup(func() { brk.Close() })
	q := queues.Duel()
	set, err := queues.NewSet(q)
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{contracts.TicketQueue(q.Name), contracts.MatchQueue} {
		if err := brk.Declare(ctx, name, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	m := New(Config{Queues: set, Store: st, Publisher: brk, Metrics: metrics.NewUnregistered(), Log: log})
	message := func(i int, skill float64) broker.Message {
		now := time.Now()
		t := contracts.Ticket{ID: fmt.Sprintf("%s.t-%d", q.Name, i), Queue: q.Name, Status: contracts.StatusSearching, Version: 1,
			CreatedAt: now, UpdatedAt: now, Players: []contracts.Player{{ID: fmt.Sprintf("p-%d", i), Skill: skill}}}
		if err := st.CreateTicket(ctx, t, now.Add(q.MaxWait)); err != nil {
			b.Fatal(err)
		}
		body, err := contracts.EncodeTicketMessage(contracts.TicketTry{Ticket: t})
		if err != nil {
			b.Fatal(err)
		}
		return broker.Message{Body: body}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// Skills far apart from one pair to the next keep the pool small.
		skill := float64(i%1000) * 10_000
		first, second := message(2*i, skill), message(2*i+1, skill+1)
		if err := m.Handle(ctx, first); err != nil {
			b.Fatal(err)
		}
		if err := m.Handle(ctx, second); err != nil {
			b.Fatal(err)
		}
	}
}

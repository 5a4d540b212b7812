package redisstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// BenchmarkClaimMatch measures the store's part of matching one pair, as
// a matcher does it: two tickets created, one waiting in the pool, the
// other finding it and claiming both.
func BenchmarkClaimMatch(b *testing.B) {
	s := newStore(b)
	i := 0
	for b.Loop() {
		i++
		if err := claimPair(b.Context(), s, "duel", fmt.Sprint(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClaimMatchParallel does the same from many goroutines, each on
// its own queue so that they do not take each other's opponents.
func BenchmarkClaimMatchParallel(b *testing.B) {
	s := newStore(b)
	var worker atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		w := worker.Add(1)
		queue := fmt.Sprintf("duel-%d", w)
		i := 0
		for pb.Next() {
			i++
			// Fatal may only be called from the benchmark's own goroutine.
			if err := claimPair(b.Context(), s, queue, fmt.Sprintf("%d-%d", w, i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func claimPair(ctx context.Context, s *Store, queue, n string) error {
	now := t0
	a := ticket(queue+".a-"+n, "p-a-"+n)
	o := ticket(queue+".b-"+n, "p-b-"+n)
	for _, tk := range []contracts.Ticket{a, o} {
		if err := s.CreateTicket(ctx, tk, now.Add(time.Minute)); err != nil {
			return err
		}
	}
	e := store.PoolEntry{TicketID: a.ID, Skill: 1500, Players: 1, Party: a.Players, CreatedAt: now}
	if ok, err := s.AddToPool(ctx, queue, e); err != nil || !ok {
		return fmt.Errorf("AddToPool = %v, %v", ok, err)
	}
	cands, err := s.Candidates(ctx, queue, 1500, 100, 32)
	if err != nil || len(cands) == 0 {
		return fmt.Errorf("Candidates = %v, %v", cands, err)
	}
	m := contracts.Match{ID: queue + ".m-" + n, Queue: queue, TicketIDs: []string{o.ID, cands[0].TicketID},
		Teams: [][]string{o.PlayerIDs(), a.PlayerIDs()}, Players: append(o.Players, a.Players...), CreatedAt: now}
	return s.ClaimMatch(ctx, m, now)
}

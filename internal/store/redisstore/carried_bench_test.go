package redisstore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// assignedPair claims and assigns a pair of tickets and returns the id of
// one, with the change notifications published on the way.
func assignedPair(b *testing.B, s *Store) (string, []string) {
	b.Helper()
	ctx := b.Context()
	ps := s.client.Subscribe(ctx, s.channel())
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // the confirmation
		b.Fatal(err)
	}
	req := contracts.ServerRequest{Address: "10.0.0.7:7777", Region: "eu-west", Capacity: 4}
	if _, err := s.RegisterServer(ctx, "gs-1", req, time.Hour, t0); err != nil {
		b.Fatal(err)
	}
	if err := claimPair(ctx, s, "duel", "x"); err != nil {
		b.Fatal(err)
	}
	if _, err := s.AssignMatch(ctx, "duel.m-x", t0); err != nil {
		b.Fatal(err)
	}
	var payloads []string
	for len(payloads) < 5 { // 2 matched, 2 assigned, 1 server
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := ps.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		payloads = append(payloads, m.Payload)
	}
	return "duel.a-x", payloads
}

// BenchmarkWake compares what a held ticket poll spends on a wake-up:
// reading the ticket back from Redis (read, as before changes carried the
// ticket) against decoding the state its change carries (carried), and
// reports the size of the change notifications (B/change, the ticket's
// assigned change, which every front receives).
func BenchmarkWake(b *testing.B) {
	s := newStore(b)
	id, payloads := assignedPair(b, s)
	var assigned string
	for _, p := range payloads {
		if strings.HasPrefix(p, "t:"+id+":3 ") {
			assigned = p
		}
	}
	if assigned == "" {
		b.Fatalf("no assigned change of %s among %q", id, payloads)
	}
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Ticket(b.Context(), id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("carried", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c, ok := parseChange(assigned)
			if !ok {
				b.Fatal("unparsed")
			}
			if tk, err := c.Ticket.Get(); err != nil || tk.Status != contracts.StatusAssigned {
				b.Fatalf("carried %+v, %v", tk, err)
			}
		}
		b.ReportMetric(float64(len(assigned)), "B/change")
	})
	b.Run("listen-only", func(b *testing.B) {
		// A process with no waiter for the ticket parses the change and
		// never decodes it.
		b.ReportAllocs()
		var c store.Change
		for b.Loop() {
			c, _ = parseChange(assigned)
		}
		_ = c
	})
}

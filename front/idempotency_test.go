package front_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker/membroker"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
	"github.com/quickmatch/quickmatch/internal/store/redisstore"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// twoFronts starts two fronts that share one store, as replicas do.
func twoFronts(t *testing.T, backend string) (*frontEnv, *frontEnv) {
	t.Helper()
	b := membroker.New(nil)
	t.Cleanup(func() { b.Close() })
	if err := b.Declare(context.Background(), contracts.TicketQueue("duel"), time.Second); err != nil {
		t.Fatal(err)
	}
	if backend == "memory" {
		s := memstore.New(memstore.Options{})
		return newFrontEnv(t, s, b), newFrontEnv(t, s, b)
	}
	addr, prefix := testenv.Redis(t)
	newStore := func() storeListener {
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { c.Close() })
		return redisstore.New(c, redisstore.Options{Prefix: prefix, Listener: "front"})
	}
	return newFrontEnv(t, newStore(), b), newFrontEnv(t, newStore(), b)
}

// createKeyed POSTs a ticket with an Idempotency-Key.
func createKeyed(t *testing.T, e *frontEnv, key, body string) response {
	t.Helper()
	return doWith(t, e.srv.URL, "POST", "/v1/tickets", strings.NewReader(body), http.Header{"Idempotency-Key": {key}})
}

// TestIdempotentCreate: a create whose answer was lost is retried, through
// another front, with the same Idempotency-Key. The retry answers the
// first ticket as it is now, even after it moved on, and makes no second
// ticket; the same key with another body is refused, and so is a malformed
// key, both changing nothing.
func TestIdempotentCreate(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			a, b := twoFronts(t, backend)
			body := ticketBody("duel", "p-1")
			first := createKeyed(t, a, "k-1", body)
			if first.status != http.StatusCreated || first.header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("first create: %d %v %s", first.status, first.header, first.body)
			}
			tk := decodeTicket(t, first)

			for _, key := range []string{"k-1", `"k-1"`} {
				retry := createKeyed(t, b, key, body)
				got := decodeTicket(t, retry)
				if retry.status != http.StatusCreated || got.ID != tk.ID || retry.header.Get("Idempotent-Replayed") != "true" ||
					retry.header.Get("Location") != "/v1/tickets/"+tk.ID {
					t.Errorf("retry with key %s: %d %v %s; want 201 replaying %s", key, retry.status, retry.header, retry.body, tk.ID)
				}
			}

			// The first ticket ends; a late retry still gets it, and no new one.
			if r := a.do("DELETE", "/v1/tickets/"+tk.ID, nil); r.status != http.StatusOK {
				t.Fatalf("cancel: %d %s", r.status, r.body)
			}
			late := createKeyed(t, b, "k-1", body)
			if got := decodeTicket(t, late); late.status != http.StatusCreated || got.ID != tk.ID || got.Status != contracts.StatusCancelled {
				t.Errorf("late retry: %d %s; want 201 with the cancelled %s", late.status, late.body, tk.ID)
			}

			other := createKeyed(t, b, "k-1", ticketBody("duel", "p-2"))
			if p := decodeProblem(t, other); other.status != http.StatusUnprocessableEntity || p.Code != contracts.CodeIdempotencyMismatch {
				t.Errorf("key reused for another body: %d %s; want 422 %s", other.status, other.body, contracts.CodeIdempotencyMismatch)
			}
			for _, bad := range []string{strings.Repeat("k", 256), "clé", `""`} {
				r := createKeyed(t, b, bad, ticketBody("duel", "p-3"))
				if p := decodeProblem(t, r); r.status != http.StatusBadRequest || p.Code != contracts.CodeBadRequest {
					t.Errorf("key %q: %d %s; want 400", bad, r.status, r.body)
				}
			}
			// The fronts tried to store a ticket for every request; only
			// the first was kept.
			for _, id := range append(a.created.IDs(), b.created.IDs()...) {
				if r := a.do("GET", "/v1/tickets/"+id, nil); id != tk.ID && r.status != http.StatusNotFound {
					t.Errorf("ticket %s of a refused or replayed create: %d %s", id, r.status, r.body)
				}
			}
			// p-2 and p-3 were never queued.
			for _, p := range []string{"p-2", "p-3"} {
				r := b.do("POST", "/v1/tickets", strings.NewReader(ticketBody("duel", p)))
				var got contracts.Ticket
				if r.status != http.StatusCreated || json.Unmarshal(r.body, &got) != nil {
					t.Errorf("create for %s: %d %s", p, r.status, r.body)
				}
			}
		})
	}
}

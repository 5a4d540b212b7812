package matcher

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
)

// recorder is a Publisher that keeps what it is given, a call at a time.
type recorder struct {
	mu      sync.Mutex
	matches [][][]byte // one element per Publish call to the match queue
	retries [][][]byte // one element per PublishDelayed call
	dead    [][]byte   // every dead letter
	// failRetries, if set, fails every PublishDelayed; failMatches every
	// Publish to the match queue.
	failRetries, failMatches error
}

func (r *recorder) Publish(_ context.Context, name string, bodies ...[]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name == contracts.DeadLetterQueue {
		r.dead = append(r.dead, bodies...)
		return nil
	}
	if r.failMatches != nil {
		return r.failMatches
	}
	r.matches = append(r.matches, bodies)
	return nil
}

func (r *recorder) PublishDelayed(_ context.Context, _ string, bodies ...[]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failRetries != nil {
		return r.failRetries
	}
	r.retries = append(r.retries, bodies)
	return nil
}

type batchEnv struct {
	st  store.Store
	pub *recorder
	m   *Matcher
	q   queues.Queue
	now time.Time
}

func newBatchEnv(t *testing.T) *batchEnv {
	t.Helper()
	return newBatchEnvWith(t, func(s Store) Store { return s })
}

// newBatchEnvWith is newBatchEnv whose matcher sees the store through wrap.
func newBatchEnvWith(t *testing.T, wrap func(Store) Store) *batchEnv {
	t.Helper()
	q := queues.Duel()
	set, err := queues.NewSet(q)
	if err != nil {
		t.Fatal(err)
	}
	st := memstore.New(memstore.Options{})
	pub := &recorder{}
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	m := New(Config{Queues: set, Store: wrap(st), Publisher: pub, Metrics: metrics.NewUnregistered(), Batch: true,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return now }})
	return &batchEnv{st: st, pub: pub, m: m, q: q, now: now}
}

// ticket stores a fresh ticket created age ago and answers its message.
func (e *batchEnv) ticket(t *testing.T, id string, skill float64, age time.Duration) contracts.TicketTry {
	t.Helper()
	created := e.now.Add(-age)
	tk := contracts.Ticket{ID: e.q.Name + "." + id, Queue: e.q.Name, Status: contracts.StatusSearching, Version: 1,
		CreatedAt: created, UpdatedAt: created, Players: []contracts.Player{{ID: "p-" + id, Skill: skill}}}
	if err := e.st.CreateTicket(t.Context(), tk, created.Add(e.q.MaxWait)); err != nil {
		t.Fatal(err)
	}
	return contracts.TicketTry{Ticket: tk}
}

func (e *batchEnv) status(t *testing.T, id string) contracts.Status {
	t.Helper()
	tk, err := e.st.Ticket(t.Context(), e.q.Name+"."+id)
	if err != nil {
		t.Fatal(err)
	}
	return tk.Status
}

// TestBatchPairsWithinItself hands the matcher one batch of fresh tickets:
// they pair among themselves, the longest-waiting first with its nearest
// skill, without a trip through the pool, and the matches go out in one
// publish; the ticket left over joins the pool and goes out in one retry.
func TestBatchPairsWithinItself(t *testing.T) {
	e := newBatchEnv(t)
	msgs := []contracts.TicketTry{
		e.ticket(t, "a", 1500, 1*time.Second),
		e.ticket(t, "b", 1510, 2*time.Second),
		e.ticket(t, "c", 1540, 3*time.Second),
		e.ticket(t, "d", 1560, 4*time.Second), // the oldest: takes c, its nearest
		e.ticket(t, "lone", 9000, 0),
	}
	var calls []*ticketCall
	for _, msg := range msgs {
		calls = append(calls, &ticketCall{msg: msg})
	}
	e.m.handleBatch(t.Context(), calls)()

	for _, c := range calls {
		if c.err != nil {
			t.Errorf("ticket %s: %v", c.msg.Ticket.ID, c.err)
		}
	}
	if len(e.pub.matches) != 1 || len(e.pub.matches[0]) != 2 {
		t.Fatalf("match publishes: %d calls (%v); want one call of 2 matches", len(e.pub.matches), e.pub.matches)
	}
	pairs := map[string]string{}
	for _, body := range e.pub.matches[0] {
		mm, err := contracts.DecodeMatchMessage(body)
		if err != nil {
			t.Fatal(err)
		}
		ids := mm.Match.TicketIDs
		if len(ids) != 2 {
			t.Fatalf("match %s has tickets %v", mm.Match.ID, ids)
		}
		pairs[ids[0]], pairs[ids[1]] = ids[1], ids[0]
	}
	if got := pairs["duel.d"]; got != "duel.c" {
		t.Errorf("the oldest ticket d was paired with %q, want its nearest, duel.c", got)
	}
	if got := pairs["duel.a"]; got != "duel.b" {
		t.Errorf("ticket a was paired with %q, want duel.b", got)
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		if st := e.status(t, id); st != contracts.StatusMatched {
			t.Errorf("ticket %s is %s, want matched", id, st)
		}
	}
	if len(e.pub.retries) != 1 || len(e.pub.retries[0]) != 1 {
		t.Fatalf("retry publishes: %v; want one call with the lone ticket", e.pub.retries)
	}
	retries, _, err := contracts.DecodeTicketMessage(e.pub.retries[0][0])
	if err != nil || len(retries.Tickets) != 1 {
		t.Fatalf("retry message %s: %v; want one ticket", e.pub.retries[0][0], err)
	}
	retry := retries.Tickets[0]
	if retry.Ticket.ID != "duel.lone" || retry.Attempt != 1 {
		t.Errorf("retry of %s attempt %d, want duel.lone attempt 1", retry.Ticket.ID, retry.Attempt)
	}
	pool, err := e.st.Candidates(t.Context(), e.q.Name, 9000, 0, 10)
	if err != nil || len(pool) != 1 || pool[0].TicketID != "duel.lone" {
		t.Errorf("pool near 9000: %v, %v; want the lone ticket", pool, err)
	}
}

// TestConcurrentHandlesMatchEveryTicketOnce runs many Handle calls at once,
// as a consumer's workers do, so that they combine into batches of many
// sizes: every ticket ends in exactly one match and no message fails.
func TestConcurrentHandlesMatchEveryTicketOnce(t *testing.T) {
	e := newBatchEnv(t)
	const n = 400
	bodies := make([][]byte, n)
	for i := range n {
		b, err := contracts.EncodeTicketMessage(e.ticket(t, fmt.Sprint(i), 1500, time.Duration(i)*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		bodies[i] = b
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, body := range bodies {
		wg.Go(func() {
			if err := e.m.Handle(t.Context(), broker.Message{Body: body}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]string{}
	for _, call := range e.pub.matches {
		for _, body := range call {
			mm, err := contracts.DecodeMatchMessage(body)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range mm.Match.TicketIDs {
				if other, dup := seen[id]; dup {
					t.Errorf("ticket %s is in matches %s and %s", id, other, mm.Match.ID)
				}
				seen[id] = mm.Match.ID
			}
		}
	}
	// Tickets left over by one batch wait in the pool for the next; with
	// an even number of equal skills at most one is left unmatched.
	if len(seen) < n-1 {
		t.Errorf("%d of %d tickets matched", len(seen), n)
	}
	for i := range n {
		id := fmt.Sprint(i)
		if _, ok := seen["duel."+id]; !ok {
			if st := e.status(t, id); st != contracts.StatusSearching {
				t.Errorf("unmatched ticket %s is %s", id, st)
			}
		}
	}
}

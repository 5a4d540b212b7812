package assigner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
)

var consumerNow = time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)

// retryRecorder is a Publisher that keeps what it is given, a call at a
// time, and fails every call with err if set.
type retryRecorder struct {
	mu    sync.Mutex
	calls [][][]byte
	err   error
}

func (r *retryRecorder) PublishDelayed(_ context.Context, name string, bodies ...[]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name != contracts.MatchQueue {
		return fmt.Errorf("publish to %s, want %s", name, contracts.MatchQueue)
	}
	r.calls = append(r.calls, bodies)
	return r.err
}

// countingStore is a MatchStore that counts the AssignMatches calls it
// passes on, keeping their ids, and can hold the first one until release
// is closed.
type countingStore struct {
	MatchStore
	hold    bool
	entered chan struct{} // closed once the first call is held
	release chan struct{}

	mu    sync.Mutex
	calls [][]string
}

func (s *countingStore) AssignMatches(ctx context.Context, ids []string, now time.Time) []store.AssignResult {
	s.mu.Lock()
	s.calls = append(s.calls, slices.Clone(ids))
	first := len(s.calls) == 1
	s.mu.Unlock()
	if first && s.hold {
		close(s.entered)
		<-s.release
	}
	return s.MatchStore.AssignMatches(ctx, ids, now)
}

type consumerEnv struct {
	st    *memstore.Store
	cs    *countingStore
	pub   *retryRecorder
	c     *Consumer
	clock time.Time
}

func newConsumerEnv(t *testing.T, batch bool) *consumerEnv {
	t.Helper()
	st := memstore.New(memstore.Options{})
	e := &consumerEnv{st: st, cs: &countingStore{MatchStore: st}, pub: &retryRecorder{}, clock: consumerNow}
	e.c = NewConsumer(ConsumerConfig{
		Store: e.cs, Publisher: e.pub, Metrics: metrics.NewUnregistered(), Batch: batch,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return e.clock },
	})
	return e
}

// server registers a server live for an hour.
func (e *consumerEnv) server(t *testing.T, id, region string, capacity int) {
	t.Helper()
	req := contracts.ServerRequest{Address: id + ":7777", Region: region, Capacity: capacity}
	if _, err := e.st.RegisterServer(t.Context(), id, req, time.Hour, consumerNow); err != nil {
		t.Fatal(err)
	}
}

// match stores a match of two solo tickets in region, due by deadline,
// and answers its message.
func (e *consumerEnv) match(t *testing.T, name, region string, deadline time.Time) contracts.MatchMessage {
	t.Helper()
	m := contracts.Match{ID: "duel." + name, Queue: "duel", Region: region, CreatedAt: consumerNow, AssignDeadline: deadline}
	for _, side := range []string{"a", "b"} {
		id := "duel." + name + "-" + side
		tk := contracts.Ticket{ID: id, Queue: "duel", Status: contracts.StatusSearching, Version: 1,
			CreatedAt: consumerNow, UpdatedAt: consumerNow, Players: []contracts.Player{{ID: "p-" + id, Skill: 1500}}}
		if err := e.st.CreateTicket(t.Context(), tk, consumerNow.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		m.TicketIDs = append(m.TicketIDs, id)
		m.Teams = append(m.Teams, tk.PlayerIDs())
		m.Players = append(m.Players, tk.Players...)
	}
	if err := e.st.ClaimMatch(t.Context(), m, consumerNow); err != nil {
		t.Fatal(err)
	}
	return contracts.MatchMessage{V: contracts.SchemaVersion, Match: m}
}

// unstored is the message of a match that was never stored.
func unstored(name string) contracts.MatchMessage {
	return contracts.MatchMessage{V: contracts.SchemaVersion, Match: contracts.Match{
		ID: "duel." + name, Queue: "duel", Region: "eu", CreatedAt: consumerNow, AssignDeadline: consumerNow.Add(time.Minute),
		TicketIDs: []string{"duel." + name + "-a"},
	}}
}

func body(t *testing.T, mm contracts.MatchMessage) []byte {
	t.Helper()
	b, err := json.Marshal(mm)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantStatus checks the status of the tickets of mm.
func (e *consumerEnv) wantStatus(t *testing.T, mm contracts.MatchMessage, want contracts.Status) {
	t.Helper()
	for _, id := range mm.Match.TicketIDs {
		tk, err := e.st.Ticket(t.Context(), id)
		if err != nil || tk.Status != want {
			t.Errorf("ticket %s is %s (%v), want %s", id, tk.Status, err, want)
		}
	}
}

// retried answers the matches published for retry and their attempts, in
// order, one list per publish.
func (e *consumerEnv) retried(t *testing.T) [][]string {
	t.Helper()
	e.pub.mu.Lock()
	defer e.pub.mu.Unlock()
	var out [][]string
	for _, bodies := range e.pub.calls {
		var got []string
		for _, b := range bodies {
			mm, err := contracts.DecodeMatchMessage(b)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s#%d", mm.Match.ID, mm.Attempt))
		}
		out = append(out, got)
	}
	return out
}

// TestHandle checks the outcome of one message of every kind, handled
// alone and through the batches.
func TestHandle(t *testing.T) {
	deadline := consumerNow.Add(time.Minute)
	tests := []struct {
		name string
		// setup answers the message to handle.
		setup      func(t *testing.T, e *consumerEnv) []byte
		wantErr    error // nil, broker.ErrDeadLetter or errAny
		wantStatus contracts.Status
		wantRetry  [][]string
	}{
		{
			name: "assigned",
			setup: func(t *testing.T, e *consumerEnv) []byte {
				e.server(t, "gs-1", "eu", 1)
				return body(t, e.match(t, "m-1", "eu", deadline))
			},
			wantStatus: contracts.StatusAssigned,
		},
		{
			name: "failed before",
			setup: func(t *testing.T, e *consumerEnv) []byte {
				e.server(t, "gs-1", "eu", 1)
				mm := e.match(t, "m-1", "eu", deadline)
				if err := e.st.FailMatch(t.Context(), mm.Match.ID, "test", consumerNow); err != nil {
					t.Fatal(err)
				}
				return body(t, mm)
			},
			wantStatus: contracts.StatusFailed,
		},
		{
			name:    "not in the store",
			setup:   func(t *testing.T, e *consumerEnv) []byte { return body(t, unstored("m-1")) },
			wantErr: broker.ErrDeadLetter,
		},
		{
			name:    "undecodable",
			setup:   func(*testing.T, *consumerEnv) []byte { return []byte("{") },
			wantErr: broker.ErrDeadLetter,
		},
		{
			name: "no capacity",
			setup: func(t *testing.T, e *consumerEnv) []byte {
				mm := e.match(t, "m-1", "eu", deadline)
				mm.Attempt = 2
				return body(t, mm)
			},
			wantStatus: contracts.StatusMatched,
			wantRetry:  [][]string{{"duel.m-1#3"}},
		},
		{
			name: "no capacity at the deadline",
			setup: func(t *testing.T, e *consumerEnv) []byte {
				return body(t, e.match(t, "m-1", "eu", consumerNow))
			},
			wantStatus: contracts.StatusFailed,
		},
		{
			name: "retry not sent",
			setup: func(t *testing.T, e *consumerEnv) []byte {
				e.pub.err = errors.New("broker down")
				return body(t, e.match(t, "m-1", "eu", deadline))
			},
			wantErr:    errAny,
			wantStatus: contracts.StatusMatched,
			wantRetry:  [][]string{{"duel.m-1#1"}},
		},
	}
	for _, batch := range []bool{false, true} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/batch=%v", tc.name, batch), func(t *testing.T) {
				e := newConsumerEnv(t, batch)
				raw := tc.setup(t, e)
				err := e.c.Handle(t.Context(), broker.Message{Body: raw})
				checkErr(t, err, tc.wantErr)
				if tc.wantStatus != "" {
					mm, derr := contracts.DecodeMatchMessage(raw)
					if derr != nil {
						t.Fatal(derr)
					}
					e.wantStatus(t, mm, tc.wantStatus)
				}
				if got := e.retried(t); !slices.EqualFunc(got, tc.wantRetry, slices.Equal) {
					t.Errorf("retries published %v, want %v", got, tc.wantRetry)
				}
			})
		}
	}
}

// errAny stands for any error that is not a dead letter.
var errAny = errors.New("any error")

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Errorf("Handle: %v, want nil", err)
	case want == errAny && (err == nil || errors.Is(err, broker.ErrDeadLetter)):
		t.Errorf("Handle: %v, want an error to retry", err)
	case want != nil && want != errAny && !errors.Is(err, want):
		t.Errorf("Handle: %v, want %v", err, want)
	}
}

// TestBatchOutcomes hands the consumer one batch of messages of every
// kind: one store call places them all, each call answers its own
// outcome, and the retries go out in one publish, a match given twice
// only once.
func TestBatchOutcomes(t *testing.T) {
	e := newConsumerEnv(t, true)
	e.server(t, "gs-1", "eu", 2)
	deadline := consumerNow.Add(time.Minute)
	a := e.match(t, "a", "eu", deadline)
	full := e.match(t, "full", "us", deadline) // no server in us
	late := e.match(t, "late", "us", consumerNow)
	b := e.match(t, "b", "eu", deadline)
	again := full
	again.Attempt = 5 // a redelivery of an older attempt
	failed := e.match(t, "failed", "eu", deadline)
	if err := e.st.FailMatch(t.Context(), failed.Match.ID, "test", consumerNow); err != nil {
		t.Fatal(err)
	}
	msgs := []contracts.MatchMessage{a, full, late, unstored("gone"), again, b, failed}
	wantErr := []error{nil, nil, nil, broker.ErrDeadLetter, nil, nil, nil}

	calls := make([]*matchCall, len(msgs))
	for i, mm := range msgs {
		calls[i] = &matchCall{msg: mm}
	}
	e.c.handleBatch(t.Context(), calls)()

	for i, c := range calls {
		t.Run(c.msg.Match.ID, func(t *testing.T) { checkErr(t, c.err, wantErr[i]) })
	}
	wantIDs := [][]string{{"duel.a", "duel.full", "duel.late", "duel.gone", "duel.b", "duel.failed"}}
	if !slices.EqualFunc(e.cs.calls, wantIDs, slices.Equal) {
		t.Errorf("AssignMatches calls %v, want %v", e.cs.calls, wantIDs)
	}
	e.wantStatus(t, a, contracts.StatusAssigned)
	e.wantStatus(t, b, contracts.StatusAssigned)
	e.wantStatus(t, full, contracts.StatusMatched)
	e.wantStatus(t, late, contracts.StatusFailed)
	if got, want := e.retried(t), [][]string{{"duel.full#1"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("retries published %v, want %v", got, want)
	}
}

// TestBatchRetryNotSent: when the one retry publish of a batch fails,
// every call whose match it carried fails, and only those.
func TestBatchRetryNotSent(t *testing.T) {
	e := newConsumerEnv(t, true)
	e.server(t, "gs-1", "eu", 1)
	e.pub.err = errors.New("broker down")
	deadline := consumerNow.Add(time.Minute)
	msgs := []contracts.MatchMessage{e.match(t, "a", "eu", deadline), e.match(t, "x", "us", deadline), e.match(t, "y", "us", deadline)}
	msgs = append(msgs, msgs[1]) // x again: a redelivery beside its retry
	calls := make([]*matchCall, len(msgs))
	for i, mm := range msgs {
		calls[i] = &matchCall{msg: mm}
	}
	e.c.handleBatch(t.Context(), calls)()
	checkErr(t, calls[0].err, nil)
	checkErr(t, calls[1].err, errAny)
	checkErr(t, calls[2].err, errAny)
	checkErr(t, calls[3].err, errAny) // the repeat shares the first call's outcome
	if got, want := e.retried(t), [][]string{{"duel.x#1", "duel.y#1"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("retries published %v, want %v", got, want)
	}
}

// TestCombine runs Handle calls at once while a batch is in the store:
// they wait, and are handled together as the next batch.
func TestCombine(t *testing.T) {
	const n = 8
	e := newConsumerEnv(t, true)
	e.cs.hold, e.cs.entered, e.cs.release = true, make(chan struct{}), make(chan struct{})
	e.server(t, "gs-1", "eu", n)
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = body(t, e.match(t, fmt.Sprintf("m-%d", i), "eu", consumerNow.Add(time.Minute)))
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	handle := func(i int) { wg.Go(func() { errs[i] = e.c.Handle(t.Context(), broker.Message{Body: msgs[i]}) }) }
	handle(0)
	<-e.cs.entered
	for i := 1; i < n; i++ {
		handle(i)
	}
	waitFor(t, func() bool { return e.c.batches.Waiting() == n-1 })
	close(e.cs.release)
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("Handle #%d: %v", i, err)
		}
	}
	if len(e.cs.calls) != 2 || len(e.cs.calls[0]) != 1 || len(e.cs.calls[1]) != n-1 {
		t.Errorf("AssignMatches calls %v, want one of the first match, then one of the other %d", e.cs.calls, n-1)
	}
	if n := e.c.batches.Waiting(); n != 0 {
		t.Errorf("combiner left %d waiting", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(time.Millisecond)
	}
}

package matcher

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/store"
)

// message encodes tries as one ticket message.
func message(t *testing.T, tries ...contracts.TicketTry) []byte {
	t.Helper()
	b, err := contracts.EncodeTicketMessage(tries...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// matchesOf answers the match of every ticket the recorder saw published,
// failing the test if a ticket is in two.
func (e *batchEnv) matchesOf(t *testing.T) map[string]string {
	t.Helper()
	e.pub.mu.Lock()
	defer e.pub.mu.Unlock()
	seen := map[string]string{}
	for _, call := range e.pub.matches {
		for _, body := range call {
			mm, err := contracts.DecodeMatchMessage(body)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range mm.Match.TicketIDs {
				if other, dup := seen[id]; dup && other != mm.Match.ID {
					t.Errorf("ticket %s is in matches %s and %s", id, other, mm.Match.ID)
				}
				seen[id] = mm.Match.ID
			}
		}
	}
	return seen
}

// TestRedeliveredBatchMatchesNobodyTwice handles a message of four tickets,
// then the same message again as RabbitMQ redelivers it after a consumer
// died before its ack: the second delivery reads the store, finds the
// tickets matched and at most publishes their matches again.
func TestRedeliveredBatchMatchesNobodyTwice(t *testing.T) {
	e := newBatchEnv(t)
	body := message(t,
		e.ticket(t, "a", 1500, time.Second), e.ticket(t, "b", 1505, time.Second),
		e.ticket(t, "c", 1510, time.Second), e.ticket(t, "d", 1515, time.Second))
	if err := e.m.Handle(t.Context(), broker.Message{Body: body}); err != nil {
		t.Fatal(err)
	}
	first := e.matchesOf(t)
	if len(first) != 4 {
		t.Fatalf("first delivery matched %v, want all four", first)
	}
	if err := e.m.Handle(t.Context(), broker.Message{Body: body, Redelivered: true}); err != nil {
		t.Fatal(err)
	}
	if again := e.matchesOf(t); len(again) != 4 {
		t.Errorf("after the redelivery: %v", again)
	}
	for id, match := range e.matchesOf(t) {
		if first[id] != match {
			t.Errorf("ticket %s moved from match %s to %s", id, first[id], match)
		}
	}
	if len(e.pub.retries) != 0 {
		t.Errorf("retries %v, want none", e.pub.retries)
	}
}

// TestBatchWithCancelledTickets cancels two tickets of a message after it
// was sent, as players do while their message waits in the queue: the
// message still says searching, the claims that include them fail, and the
// rest pair among themselves.
func TestBatchWithCancelledTickets(t *testing.T) {
	e := newBatchEnv(t)
	tries := []contracts.TicketTry{
		e.ticket(t, "a", 1500, 4*time.Second), e.ticket(t, "x", 1501, 3*time.Second),
		e.ticket(t, "b", 1502, 2*time.Second), e.ticket(t, "y", 1503, time.Second),
		e.ticket(t, "c", 1504, 0), e.ticket(t, "d", 1505, 0),
	}
	for _, id := range []string{"x", "y"} {
		if _, err := e.st.CancelTicket(t.Context(), "duel."+id, e.now); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.m.Handle(t.Context(), broker.Message{Body: message(t, tries...)}); err != nil {
		t.Fatal(err)
	}
	matched := e.matchesOf(t)
	for _, id := range []string{"a", "b", "c", "d"} {
		if _, ok := matched["duel."+id]; !ok {
			t.Errorf("ticket %s is not matched (%v)", id, matched)
		}
		if st := e.status(t, id); st != contracts.StatusMatched {
			t.Errorf("ticket %s is %s", id, st)
		}
	}
	for _, id := range []string{"x", "y"} {
		if m, ok := matched["duel."+id]; ok {
			t.Errorf("cancelled ticket %s is in match %s", id, m)
		}
		if st := e.status(t, id); st != contracts.StatusCancelled {
			t.Errorf("cancelled ticket %s is %s", id, st)
		}
	}
}

// TestPoisonTicketInBatch sends a message whose entries include one that
// can never be handled and one of a queue this deployment lacks: each is
// dead-lettered alone, and the good tickets of the message are matched.
func TestPoisonTicketInBatch(t *testing.T) {
	e := newBatchEnv(t)
	good1, good2 := e.ticket(t, "a", 1500, time.Second), e.ticket(t, "b", 1501, time.Second)
	stranger := contracts.TicketTry{Ticket: contracts.Ticket{ID: "nowhere.z", Queue: "nowhere",
		Players: []contracts.Player{{ID: "p-z"}}}}
	entry := func(v contracts.TicketTry) string {
		b := message(t, v)
		// {"v":2,"tickets":[ENTRY]}
		return string(b[len(`{"v":2,"tickets":[`) : len(b)-2])
	}
	body := `{"v":2,"tickets":[` + entry(good1) + `,{"ticket":{"id":"duel.poison","queue":"duel","players":[]}},` +
		entry(stranger) + `,` + entry(good2) + `]}`
	if err := e.m.Handle(t.Context(), broker.Message{Body: []byte(body)}); err != nil {
		t.Fatalf("Handle: %v; want the good tickets handled and the bad ones dead-lettered", err)
	}
	if len(e.pub.dead) != 2 {
		t.Fatalf("dead letters %q, want the poison entry and the stranger, each alone", e.pub.dead)
	}
	if m := e.matchesOf(t); m["duel.a"] == "" || m["duel.a"] != m["duel.b"] {
		t.Errorf("matches %v, want a and b together", m)
	}

	// A message of nothing but bad entries is dead-lettered whole.
	err := e.m.Handle(t.Context(), broker.Message{Body: []byte(`{"v":2,"tickets":[` + entry(stranger) + `]}`)})
	if !errors.Is(err, broker.ErrDeadLetter) {
		t.Errorf("Handle of a message with no good ticket: %v, want ErrDeadLetter", err)
	}
}

// failingStore fails every pool search near one skill, as a store shard
// that is down fails the tickets it holds.
type failingStore struct {
	Store
	skill float64
}

var errShardDown = errors.New("shard down")

func (s failingStore) Candidates(ctx context.Context, queue string, skill, maxGap float64, limit int) ([]store.PoolEntry, error) {
	if skill == s.skill {
		return nil, errShardDown
	}
	return s.Store.Candidates(ctx, queue, skill, maxGap, limit)
}

// TestBatchWithFailedTickets: when the store fails some tickets of a
// message, only those go back through the retry queue, in one message,
// and the delivery is acknowledged; if that publish fails too, the whole
// delivery is redelivered.
func TestBatchWithFailedTickets(t *testing.T) {
	e := newBatchEnvWith(t, func(s Store) Store { return failingStore{Store: s, skill: 666} })
	body := message(t,
		e.ticket(t, "a", 1500, time.Second), e.ticket(t, "bad", 666, time.Second), e.ticket(t, "b", 1501, time.Second))
	if err := e.m.Handle(t.Context(), broker.Message{Body: body}); err != nil {
		t.Fatalf("Handle: %v; want the failed ticket retried and the message acknowledged", err)
	}
	if len(e.pub.retries) != 1 || len(e.pub.retries[0]) != 1 {
		t.Fatalf("retry publishes %q, want one message", e.pub.retries)
	}
	retry, _, err := contracts.DecodeTicketMessage(e.pub.retries[0][0])
	if err != nil || len(retry.Tickets) != 1 || retry.Tickets[0].Ticket.ID != "duel.bad" || retry.Tickets[0].Attempt != 1 {
		t.Errorf("retry %+v, %v; want duel.bad at attempt 1", retry, err)
	}
	if m := e.matchesOf(t); m["duel.a"] == "" || m["duel.a"] != m["duel.b"] {
		t.Errorf("matches %v, want a and b together", m)
	}

	e.pub.failRetries = errors.New("broker down")
	body = message(t, e.ticket(t, "c", 1700, time.Second), e.ticket(t, "bad2", 666, time.Second), e.ticket(t, "d", 1701, time.Second))
	if err := e.m.Handle(t.Context(), broker.Message{Body: body}); !errors.Is(err, errShardDown) {
		t.Errorf("Handle with the retry publish failing: %v, want the store's error, for a redelivery", err)
	}
}

// TestBatchWithUnpublishedMatch: a match claimed but not published makes
// the whole delivery come back, even though another ticket of it went to
// retry: only a redelivery publishes the claimed match again.
func TestBatchWithUnpublishedMatch(t *testing.T) {
	e := newBatchEnv(t)
	body := message(t, e.ticket(t, "a", 1500, time.Second), e.ticket(t, "b", 1501, time.Second), e.ticket(t, "lone", 9000, 0))
	e.pub.failMatches = errors.New("channel closed")
	if err := e.m.Handle(t.Context(), broker.Message{Body: body}); err == nil {
		t.Fatal("Handle acknowledged a delivery whose match was never published")
	}
	e.pub.failMatches = nil
	if err := e.m.Handle(t.Context(), broker.Message{Body: body, Redelivered: true}); err != nil {
		t.Fatal(err)
	}
	if m := e.matchesOf(t); m["duel.a"] == "" || m["duel.a"] != m["duel.b"] {
		t.Errorf("after the redelivery, matches %v; want a and b's match published", m)
	}
}

package front_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
)

// TestPollUntil: ?until holds a poll past the versions on the way to the
// stage asked for. A poll for assigned sleeps through matched (a plain poll
// held beside it wakes there) and answers the assigned ticket; a poll for
// matched answers at matched; a ticket that ends otherwise answers too.
func TestPollUntil(t *testing.T) {
	e := newMemEnv(t)
	ms := e.store.(*memstore.Store)
	a, b := e.create("duel", "p-1"), e.create("duel", "p-2")
	base := "/v1/tickets/" + a.ID + "?wait=10s&after=1"
	untilAssigned := poll(t, e.srv.URL, base+"&until=assigned")
	untilMatched := poll(t, e.srv.URL, base+"&until=matched")
	plain := poll(t, e.srv.URL, base)
	e.held(3)

	m := contracts.Match{
		ID: "duel.m-1", Queue: "duel", Region: "eu-west",
		Teams: [][]string{{"p-1"}, {"p-2"}}, TicketIDs: []string{a.ID, b.ID},
		Players: append(a.Players, b.Players...), CreatedAt: clock, AssignDeadline: clock.Add(time.Minute),
	}
	if err := ms.ClaimMatch(context.Background(), m, clock); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan response{"plain": plain, "until=matched": untilMatched} {
		if got := decodeTicket(t, await(t, ch, 5*time.Second)); got.Status != contracts.StatusMatched {
			t.Errorf("%s poll answered %s, want matched", name, got.Status)
		}
	}
	e.held(1)
	if _, err := ms.RegisterServer(context.Background(), "gs-1", contracts.ServerRequest{Address: "10.0.0.1:7777", Region: "eu-west", Capacity: 1}, time.Hour, clock); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.AssignMatch(context.Background(), m.ID, clock); err != nil {
		t.Fatal(err)
	}
	if got := decodeTicket(t, await(t, untilAssigned, 5*time.Second)); got.Status != contracts.StatusAssigned || got.Version != 3 {
		t.Errorf("until=assigned poll answered %s at version %d, want assigned at 3", got.Status, got.Version)
	}

	// A ticket that ends before the stage answers with its end.
	c := e.create("duel", "p-3")
	cancelled := poll(t, e.srv.URL, "/v1/tickets/"+c.ID+"?wait=10s&after=1&until=assigned")
	e.held(1)
	if r := e.do("DELETE", "/v1/tickets/"+c.ID, nil); r.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if got := decodeTicket(t, await(t, cancelled, 5*time.Second)); got.Status != contracts.StatusCancelled {
		t.Errorf("until=assigned poll of a cancelled ticket answered %s", got.Status)
	}

	if r := e.do("GET", "/v1/tickets/"+a.ID+"?until=searching", nil); r.status != http.StatusBadRequest {
		t.Errorf("until=searching: %d %s; want 400", r.status, r.body)
	}
}

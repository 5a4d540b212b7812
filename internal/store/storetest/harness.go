package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// base is the start of every test's virtual clock. at(n) is n seconds later.
var base = time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)

func at(seconds int) time.Time { return base.Add(time.Duration(seconds) * time.Second) }

const (
	duel     = "duel"
	euWest   = "eu-west"
	usEast   = "us-east"
	serverTT = 30 * time.Second
	// wait bounds every wait for an asynchronous effect.
	wait = 5 * time.Second
)

// harness wraps one store under test with helpers that fail the test on
// unexpected errors.
type harness struct {
	t   *testing.T
	ctx context.Context
	s   store.Store
	// fresh makes a harness over a new, empty store, for table cases.
	fresh func(t *testing.T) *harness
	// skills remembers the pool skill of every ticket put in the pool, so
	// that inPool can look for it.
	skills map[string]float64
	probes int
}

func newHarness(t *testing.T, s store.Store) *harness {
	return &harness{t: t, ctx: t.Context(), s: s, skills: map[string]float64{}}
}

// tid is the id of the duel ticket called name, and mid that of the duel
// match: "duel.<name>", in the form of store.NewID, so that a store can
// read the queue back from the id (store.QueueOfID).
func tid(name string) string { return duel + "." + name }
func mid(name string) string { return duel + "." + name }

// queueOf is the queue id names, duel if it names none.
func queueOf(id string) string {
	if q, ok := store.QueueOfID(id); ok {
		return q
	}
	return duel
}

// newTicket builds a searching ticket, version 1, created at base, for a party
// of the given players, in the queue its id names.
func newTicket(id string, players ...string) contracts.Ticket {
	ps := make([]contracts.Player, len(players))
	for i, p := range players {
		ps[i] = contracts.Player{ID: p, Skill: 1500 + float64(i)}
	}
	return contracts.Ticket{
		ID:        id,
		Queue:     queueOf(id),
		Status:    contracts.StatusSearching,
		Version:   1,
		CreatedAt: base,
		UpdatedAt: base,
		Players:   ps,
	}
}

// newMatch builds a match of the given tickets, one team per ticket, in the
// queue its id names.
func newMatch(id, region string, tickets ...contracts.Ticket) contracts.Match {
	m := contracts.Match{
		ID:             id,
		Queue:          queueOf(id),
		Region:         region,
		CreatedAt:      base,
		AssignDeadline: base.Add(time.Minute),
	}
	for _, tk := range tickets {
		m.TicketIDs = append(m.TicketIDs, tk.ID)
		m.Teams = append(m.Teams, tk.PlayerIDs())
		m.Players = append(m.Players, tk.Players...)
	}
	return m
}

// create stores a ticket for the players that expires an hour after base.
func (h *harness) create(id string, players ...string) contracts.Ticket {
	h.t.Helper()
	return h.createExpiring(base.Add(time.Hour), id, players...)
}

func (h *harness) createExpiring(expiresAt time.Time, id string, players ...string) contracts.Ticket {
	h.t.Helper()
	tk := newTicket(id, players...)
	if err := h.s.CreateTicket(h.ctx, tk, expiresAt); err != nil {
		h.t.Fatalf("CreateTicket(%s): %v", id, err)
	}
	return tk
}

// solo creates one single-player ticket per id; the player is "p-"+id.
func (h *harness) solo(ids ...string) []contracts.Ticket {
	h.t.Helper()
	out := make([]contracts.Ticket, len(ids))
	for i, id := range ids {
		out[i] = h.create(id, "p-"+id)
	}
	return out
}

func (h *harness) get(id string) contracts.Ticket {
	h.t.Helper()
	tk, err := h.s.Ticket(h.ctx, id)
	if err != nil {
		h.t.Fatalf("Ticket(%s): %v", id, err)
	}
	return tk
}

// want checks a ticket's status and version and returns it.
func (h *harness) want(id string, status contracts.Status, version int64) contracts.Ticket {
	h.t.Helper()
	tk := h.get(id)
	if tk.Status != status || tk.Version != version {
		h.t.Errorf("ticket %s is %s at version %d, want %s at version %d", id, tk.Status, tk.Version, status, version)
	}
	return tk
}

func (h *harness) wantNoTicket(id string) {
	h.t.Helper()
	if tk, err := h.s.Ticket(h.ctx, id); !errors.Is(err, store.ErrNotFound) {
		h.t.Errorf("Ticket(%s) = %s, %v; want ErrNotFound", id, jsonOf(tk), err)
	}
}

// wantFree checks that a new ticket for the players can be created, then
// deletes it again.
func (h *harness) wantFree(players ...string) {
	h.t.Helper()
	h.probes++
	id := tid(fmt.Sprintf("probe-%d", h.probes))
	if err := h.s.CreateTicket(h.ctx, newTicket(id, players...), base.Add(time.Hour)); err != nil {
		h.t.Errorf("players %v should be free: CreateTicket: %v", players, err)
		return
	}
	if err := h.s.DeleteTicket(h.ctx, id); err != nil {
		h.t.Fatalf("DeleteTicket(%s): %v", id, err)
	}
}

// wantBusy checks that a new ticket for player fails, naming holder.
func (h *harness) wantBusy(player, holder string) {
	h.t.Helper()
	h.probes++
	id := tid(fmt.Sprintf("probe-%d", h.probes))
	err := h.s.CreateTicket(h.ctx, newTicket(id, player), base.Add(time.Hour))
	checkBusy(h.t, err, player, holder)
	if err == nil {
		if err := h.s.DeleteTicket(h.ctx, id); err != nil {
			h.t.Fatalf("DeleteTicket(%s): %v", id, err)
		}
	}
}

func checkBusy(t *testing.T, err error, player, holder string) {
	t.Helper()
	var busy *store.PlayerBusyError
	switch {
	case !errors.As(err, &busy):
		t.Errorf("CreateTicket for busy player %s: got %v, want *PlayerBusyError", player, err)
	case !errors.Is(err, store.ErrPlayerBusy):
		t.Errorf("CreateTicket error %v does not match ErrPlayerBusy", err)
	case busy.PlayerID != player || busy.TicketID != holder:
		t.Errorf("PlayerBusyError names player %s, ticket %s; want player %s, ticket %s",
			busy.PlayerID, busy.TicketID, player, holder)
	}
}

func checkConflict(t *testing.T, what string, err error, ticket string, status contracts.Status) {
	t.Helper()
	var c *store.ConflictError
	switch {
	case !errors.As(err, &c):
		t.Errorf("%s: got %v, want *ConflictError for ticket %s", what, err, ticket)
	case !errors.Is(err, store.ErrConflict):
		t.Errorf("%s: error %v does not match ErrConflict", what, err)
	case c.TicketID != ticket || c.Status != status:
		t.Errorf("%s: ConflictError names ticket %s (%q), want ticket %s (%q)", what, c.TicketID, c.Status, ticket, status)
	}
}

func (h *harness) entry(tk contracts.Ticket, skill float64, created time.Time) store.PoolEntry {
	return store.PoolEntry{TicketID: tk.ID, Skill: skill, Players: len(tk.Players), CreatedAt: created, Latencies: tk.Latencies}
}

// pool puts tk in the duel pool at skill.
func (h *harness) pool(tk contracts.Ticket, skill float64) {
	h.t.Helper()
	h.poolAt(duel, h.entry(tk, skill, tk.CreatedAt))
}

func (h *harness) poolAt(queue string, e store.PoolEntry) {
	h.t.Helper()
	ok, err := h.s.AddToPool(h.ctx, queue, e)
	if err != nil || !ok {
		h.t.Fatalf("AddToPool(%s, %s) = %v, %v; want true", queue, e.TicketID, ok, err)
	}
	h.skills[e.TicketID] = e.Skill
}

func (h *harness) candidates(queue string, skill, maxGap float64, limit int) []store.PoolEntry {
	h.t.Helper()
	es, err := h.s.Candidates(h.ctx, queue, skill, maxGap, limit)
	if err != nil {
		h.t.Fatalf("Candidates(%s, %v, %v, %d): %v", queue, skill, maxGap, limit, err)
	}
	return es
}

// inPool reports whether ticket id, once put in the duel pool by pool, is
// still among its candidates.
func (h *harness) inPool(id string) bool {
	h.t.Helper()
	skill, ok := h.skills[id]
	if !ok {
		h.t.Fatalf("ticket %s was never put in the pool", id)
	}
	for _, e := range h.candidates(duel, skill, 0, 1000) {
		if e.TicketID == id {
			return true
		}
	}
	return false
}

func ids(es []store.PoolEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.TicketID
	}
	return out
}

// claim forms a match of the tickets in region euWest at at(1).
func (h *harness) claim(id string, tickets ...contracts.Ticket) contracts.Match {
	h.t.Helper()
	m := newMatch(id, euWest, tickets...)
	if err := h.s.ClaimMatch(h.ctx, m, at(1)); err != nil {
		h.t.Fatalf("ClaimMatch(%s): %v", id, err)
	}
	return m
}

// matched creates two solo tickets and claims them as match id in region.
func (h *harness) matched(id, region string) contracts.Match {
	h.t.Helper()
	tks := h.solo(id+"-a", id+"-b")
	m := newMatch(id, region, tks...)
	if err := h.s.ClaimMatch(h.ctx, m, at(1)); err != nil {
		h.t.Fatalf("ClaimMatch(%s): %v", id, err)
	}
	return m
}

// server registers a server live from base for serverTT.
func (h *harness) server(id, region string, capacity int) contracts.Server {
	h.t.Helper()
	req := contracts.ServerRequest{Address: "addr-" + id + ":7777", Region: region, Capacity: capacity}
	srv, err := h.s.RegisterServer(h.ctx, id, req, serverTT, base)
	if err != nil {
		h.t.Fatalf("RegisterServer(%s): %v", id, err)
	}
	return srv
}

func (h *harness) getServer(id string) contracts.Server {
	h.t.Helper()
	srv, err := h.s.Server(h.ctx, id)
	if err != nil {
		h.t.Fatalf("Server(%s): %v", id, err)
	}
	return srv
}

func (h *harness) allocations(id string) contracts.Allocations {
	h.t.Helper()
	a, err := h.s.Allocations(h.ctx, id)
	if err != nil {
		h.t.Fatalf("Allocations(%s): %v", id, err)
	}
	return a
}

func (h *harness) assign(matchID string) contracts.Assignment {
	h.t.Helper()
	a, err := h.s.AssignMatch(h.ctx, matchID, at(2))
	if err != nil {
		h.t.Fatalf("AssignMatch(%s): %v", matchID, err)
	}
	return a
}

// sameTicket compares tickets field by field: times with Equal, the rest
// deeply, with nil and empty maps alike.
func sameTicket(t *testing.T, got, want contracts.Ticket) {
	t.Helper()
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("ticket %s times: created %v updated %v, want created %v updated %v",
			want.ID, got.CreatedAt, got.UpdatedAt, want.CreatedAt, want.UpdatedAt)
	}
	if g, w := normTicket(got), normTicket(want); !reflect.DeepEqual(g, w) {
		t.Errorf("ticket %s:\n got %s\nwant %s", want.ID, jsonOf(g), jsonOf(w))
	}
}

func normTicket(tk contracts.Ticket) contracts.Ticket {
	tk.CreatedAt, tk.UpdatedAt = time.Time{}, time.Time{}
	if len(tk.Latencies) == 0 {
		tk.Latencies = nil
	}
	if len(tk.Attributes) == 0 {
		tk.Attributes = nil
	}
	return tk
}

func sameMatch(t *testing.T, got, want contracts.Match) {
	t.Helper()
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.AssignDeadline.Equal(want.AssignDeadline) {
		t.Errorf("match %s times: created %v deadline %v, want created %v deadline %v",
			want.ID, got.CreatedAt, got.AssignDeadline, want.CreatedAt, want.AssignDeadline)
	}
	got.CreatedAt, got.AssignDeadline = time.Time{}, time.Time{}
	want.CreatedAt, want.AssignDeadline = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("match %s:\n got %s\nwant %s", want.ID, jsonOf(got), jsonOf(want))
	}
}

func sameEntry(t *testing.T, got, want store.PoolEntry) {
	t.Helper()
	if !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("entry %s created %v, want %v", want.TicketID, got.CreatedAt, want.CreatedAt)
	}
	if got.TicketID != want.TicketID || got.Skill != want.Skill || got.Players != want.Players ||
		!maps.Equal(got.Latencies, want.Latencies) {
		t.Errorf("entry:\n got %s\nwant %s", jsonOf(got), jsonOf(want))
	}
}

func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

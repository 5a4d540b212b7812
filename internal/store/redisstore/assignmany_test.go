package redisstore

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// TestAssignMatches runs the implementation's own tests of AssignMatches:
// what a crash or a stale index leaves, on the single Redis, and the
// round trips and script loading of a batch, on a Redis of the test's own.
func TestAssignMatches(t *testing.T) {
	b := single(t)
	tests := []struct {
		name string
		fn   func(t *testing.T, s *Store)
	}{
		{"AfterCrashBetweenSteps", testBatchAfterCrashBetweenSteps},
		{"FailedPlacementFreedFirst", testBatchFailedPlacementFreedFirst},
		{"StaleServerIndex", testBatchStaleServerIndex},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, b.newStore(t)) })
	}
	t.Run("RoundTrips", testBatchRoundTrips)
	t.Run("AfterScriptFlush", testBatchAfterScriptFlush)
}

// assignAll runs AssignMatches and fails t on a result other than want
// (a server id, or "" for ErrNoCapacity).
func assignAll(t *testing.T, s *Store, ids []string, want ...string) {
	t.Helper()
	for i, r := range s.AssignMatches(t.Context(), ids, t0) {
		switch {
		case want[i] == "" && !errors.Is(r.Err, store.ErrNoCapacity):
			t.Errorf("AssignMatches: %s: %+v, %v; want ErrNoCapacity", ids[i], r.Assignment, r.Err)
		case want[i] != "" && (r.Err != nil || r.Assignment.ServerID != want[i]):
			t.Errorf("AssignMatches: %s: %+v, %v; want %s", ids[i], r.Assignment, r.Err, want[i])
		}
	}
}

// testBatchAfterCrashBetweenSteps: a batch that meets a match an assigner
// placed before dying finishes that placement without a second slot.
func testBatchAfterCrashBetweenSteps(t *testing.T, s *Store) {
	mustRegister(t, s, "gs-1", "eu", 2)
	mustRegister(t, s, "gs-2", "eu", 2)
	m1 := assignable(t, s, "duel.m-1")
	m2 := assignable(t, s, "duel.m-2")
	_, server := placeOnly(t, s, m1) // gs-1, the smaller id
	// m-1 keeps gs-1, m-2 goes where most slots are free: gs-2.
	assignAll(t, s, []string{m1.ID, m2.ID}, server, "gs-2")
	wantServer(t, s, "gs-1", 1, m1.ID)
	wantServer(t, s, "gs-2", 1, m2.ID)
	for _, m := range []contracts.Match{m1, m2} {
		for _, id := range m.TicketIDs {
			wantTicket(t, s, id, contracts.StatusAssigned, 3)
			wantClaim(t, s, "p-"+id, "")
		}
	}
}

// testBatchFailedPlacementFreedFirst: a failed match still holding a
// placement (its FailMatch died before undoing it) gives the slot back
// before the batch places the rest, as AssignMatch one after the other
// would.
func testBatchFailedPlacementFreedFirst(t *testing.T, s *Store) {
	mustRegister(t, s, "gs-1", "eu", 1)
	failed := assignable(t, s, "duel.m-1")
	next := assignable(t, s, "duel.m-2")
	placeOnly(t, s, failed)
	keys := []string{s.matchKey("duel", failed.ID), s.relKey("duel"), s.waitingKey("duel")}
	args := []any{"test", fmtTime(t0), millis(s.retention), failed.ID}
	for _, id := range failed.TicketIDs {
		keys = append(keys, s.ticketKey("duel", id))
		args = append(args, id)
	}
	if _, err := s.run(t.Context(), failScript, keys, args...); err != nil {
		t.Fatal(err)
	}
	r := s.AssignMatches(t.Context(), []string{failed.ID, next.ID}, t0)
	if !errors.Is(r[0].Err, store.ErrConflict) {
		t.Errorf("the failed match: %+v, %v; want ErrConflict", r[0].Assignment, r[0].Err)
	}
	if r[1].Err != nil || r[1].Assignment.ServerID != "gs-1" {
		t.Errorf("the next match: %+v, %v; want gs-1", r[1].Assignment, r[1].Err)
	}
	wantServer(t, s, "gs-1", 1, next.ID)
	for _, id := range failed.TicketIDs {
		wantClaim(t, s, "p-"+id, "")
	}
}

// testBatchStaleServerIndex: index entries of servers purged or moved are
// skipped and dropped, as by AssignMatch.
func testBatchStaleServerIndex(t *testing.T, s *Store) {
	ctx := t.Context()
	for _, id := range []string{"gs-gone", "gs-live", "gs-moved"} {
		mustRegister(t, s, id, "eu", 5)
	}
	mustRegister(t, s, "gs-moved", "us", 10)
	if err := s.client.Del(ctx, s.serverKey("gs-gone")).Err(); err != nil {
		t.Fatal(err)
	}
	m1 := assignable(t, s, "duel.m-1")
	m2 := assignable(t, s, "duel.m-2")
	assignAll(t, s, []string{m1.ID, m2.ID}, "gs-live", "gs-live")
	if ids, err := s.client.SMembers(ctx, s.regionKey("eu")).Result(); err != nil || len(ids) != 1 || ids[0] != "gs-live" {
		t.Errorf("index of region eu = %v, %v; want [gs-live]", ids, err)
	}
}

// testBatchRoundTrips counts what a batch sends: a round trip per step
// (read, index, place, settle, release), however many matches it holds,
// where AssignMatch takes as many per match.
func testBatchRoundTrips(t *testing.T) {
	const matches = 16
	s := privateRedis(t).newStore(t)
	trips := &roundTrips{}
	s.client.(*redis.Client).AddHook(trips)
	mustRegister(t, s, "gs-1", "eu", 3*matches)
	batch := func(prefix string, n int) []string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = assignable(t, s, fmt.Sprintf("duel.%s-%d", prefix, i)).ID
		}
		return ids
	}
	one, many := batch("one", matches), batch("many", matches)
	// A Redis of its own has yet to load the scripts, which takes round
	// trips of its own; a first batch loads them.
	assignAll(t, s, batch("warm", 2), "gs-1", "gs-1")

	trips.n.Store(0)
	for _, id := range one {
		if _, err := s.AssignMatch(t.Context(), id, t0); err != nil {
			t.Fatal(err)
		}
	}
	alone := trips.n.Load()
	trips.n.Store(0)
	for i, r := range s.AssignMatches(t.Context(), many, t0) {
		if r.Err != nil {
			t.Fatalf("AssignMatches: %s: %v", many[i], r.Err)
		}
	}
	together := trips.n.Load()
	t.Logf("%d matches: %d round trips one by one, %d in a batch", matches, alone, together)
	if alone < 4*matches {
		t.Errorf("%d matches one by one took %d round trips; the comparison assumes at least 4 each", matches, alone)
	}
	if together > 5 {
		t.Errorf("a batch of %d matches took %d round trips, want at most 5", matches, together)
	}
}

// testBatchAfterScriptFlush: a batch on a Redis that has forgotten the
// scripts loads them: the placement through the EVAL fallback, the
// settling (run in a pipeline) by loading and running again.
func testBatchAfterScriptFlush(t *testing.T) {
	s := privateRedis(t).newStore(t)
	mustRegister(t, s, "gs-1", "eu", 4)
	m1 := assignable(t, s, "duel.m-1")
	m2 := assignable(t, s, "duel.m-2")
	if err := s.client.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	assignAll(t, s, []string{m1.ID, m2.ID}, "gs-1", "gs-1")
	for _, m := range []contracts.Match{m1, m2} {
		for _, id := range m.TicketIDs {
			wantTicket(t, s, id, contracts.StatusAssigned, 3)
			wantClaim(t, s, "p-"+id, "")
		}
	}
}

// TestAssignMatchesUnreachable: against a Redis that is not there, every
// result of a batch is an error, and none is a verdict on a match it
// never read.
func TestAssignMatchesUnreachable(t *testing.T) {
	ports, err := freeClusterPorts(1) // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	s := New(c, Options{Prefix: "test-outage:"})
	ids := []string{store.NewID("duel"), store.NewID("duel"), store.NewID("squad")}
	results := s.AssignMatches(t.Context(), ids, t0)
	if len(results) != len(ids) {
		t.Fatalf("AssignMatches of %d ids answered %d results", len(ids), len(results))
	}
	for i, r := range results {
		switch err := r.Err; {
		case err == nil:
			t.Errorf("AssignMatches: %s with Redis down: no error", ids[i])
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNoCapacity):
			t.Errorf("AssignMatches: %s with Redis down: %v, a verdict on a record it never read", ids[i], err)
		}
	}
}

package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

var t0 = time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)

// storeTests are the tests of this implementation that run on both the
// single Redis and the cluster.
var storeTests = []struct {
	name string
	fn   func(t *testing.T, b backend)
}{
	{"CandidatesAgainstReference", testCandidatesAgainstReference},
	{"CandidatesEdges", testCandidatesEdges},
	{"AddToPoolAgain", testAddToPoolAgain},
	{"ExpireDueToTheNanosecond", testExpireDueToTheNanosecond},
	{"ExpireDueSkipsNotYetDue", testExpireDueSkipsNotYetDue},
	{"Retention", testRetention},
	{"IDsNameTheirQueue", testIDsNameTheirQueue},
	{"StaleClaimOfMissingTicket", testStaleClaimOfMissingTicket},
	{"StaleClaimOfTerminalTicket", testStaleClaimOfTerminalTicket},
	{"ReleaseStale", testReleaseStale},
	{"RaceOverlappingParties", testRaceOverlappingParties},
	{"CrashBeforeClaims", testCrashBeforeClaims},
	{"CrashBetweenAssignSteps", testCrashBetweenAssignSteps},
	{"PlacementOfFailedMatchUndone", testPlacementOfFailedMatchUndone},
	{"CrashBeforeAssignRelease", testCrashBeforeAssignRelease},
	{"StaleServerIndex", testStaleServerIndex},
	{"CrashBetweenFillSteps", testCrashBetweenFillSteps},
}

// ticket builds a searching ticket in the queue its id names.
func ticket(id string, players ...string) contracts.Ticket {
	q, _ := store.QueueOfID(id)
	ps := make([]contracts.Player, len(players))
	for i, p := range players {
		ps[i] = contracts.Player{ID: p, Skill: 1500}
	}
	return contracts.Ticket{ID: id, Queue: q, Status: contracts.StatusSearching, Version: 1,
		CreatedAt: t0, UpdatedAt: t0, Players: ps}
}

// match builds a match of the tickets in the queue its id names.
func match(id, region string, tks ...contracts.Ticket) contracts.Match {
	q, _ := store.QueueOfID(id)
	m := contracts.Match{ID: id, Queue: q, Region: region, CreatedAt: t0, AssignDeadline: t0.Add(time.Minute)}
	for _, tk := range tks {
		m.TicketIDs = append(m.TicketIDs, tk.ID)
		m.Teams = append(m.Teams, tk.PlayerIDs())
		m.Players = append(m.Players, tk.Players...)
	}
	return m
}

func mustCreate(t *testing.T, s *Store, tk contracts.Ticket, expiresAt time.Time) contracts.Ticket {
	t.Helper()
	if err := s.CreateTicket(t.Context(), tk, expiresAt); err != nil {
		t.Fatalf("CreateTicket(%s): %v", tk.ID, err)
	}
	return tk
}

func mustClaim(t *testing.T, s *Store, m contracts.Match) {
	t.Helper()
	if err := s.ClaimMatch(t.Context(), m, t0); err != nil {
		t.Fatalf("ClaimMatch(%s): %v", m.ID, err)
	}
}

func mustRegister(t *testing.T, s *Store, id, region string, capacity int) {
	t.Helper()
	req := contracts.ServerRequest{Address: id + ":7777", Region: region, Capacity: capacity}
	if _, err := s.RegisterServer(t.Context(), id, req, time.Minute, t0); err != nil {
		t.Fatalf("RegisterServer(%s): %v", id, err)
	}
}

// claimOf reads player's claim; "" if there is none.
func claimOf(t *testing.T, s *Store, player string) string {
	t.Helper()
	v, err := s.client.Get(t.Context(), s.playerKey(player)).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatalf("reading claim of %s: %v", player, err)
	}
	return v
}

func wantClaim(t *testing.T, s *Store, player, ticket string) {
	t.Helper()
	if got := claimOf(t, s, player); got != ticket {
		t.Errorf("claim of player %s names %q, want %q", player, got, ticket)
	}
}

func wantTicket(t *testing.T, s *Store, id string, status contracts.Status, version int64) {
	t.Helper()
	tk, err := s.Ticket(t.Context(), id)
	if err != nil || tk.Status != status || tk.Version != version {
		t.Errorf("ticket %s is %s at version %d (%v), want %s at version %d", id, tk.Status, tk.Version, err, status, version)
	}
}

func wantServer(t *testing.T, s *Store, id string, allocated int, matches ...string) {
	t.Helper()
	srv, err := s.Server(t.Context(), id)
	if err != nil || srv.Allocated != allocated {
		t.Errorf("server %s allocated %d (%v), want %d", id, srv.Allocated, err, allocated)
	}
	a, err := s.Allocations(t.Context(), id)
	if err != nil {
		t.Fatalf("Allocations(%s): %v", id, err)
	}
	var got []string
	for _, al := range a.Allocations {
		got = append(got, al.MatchID)
	}
	if !slices.Equal(got, matches) {
		t.Errorf("server %s hosts %v, want %v", id, got, matches)
	}
}

// testCandidatesAgainstReference compares Candidates with a plain sort of
// the whole pool, on pools with many equal skills, so that the cut at the
// limit often falls inside a run of equal scores on either side.
func testCandidatesAgainstReference(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(7, 11))
	var pool []store.PoolEntry
	for i := range 120 {
		id := fmt.Sprintf("duel.t-%03d", i)
		mustCreate(t, s, ticket(id, "p-"+id), t0.Add(time.Hour))
		e := store.PoolEntry{
			TicketID: id,
			Skill:    1000 + 10*float64(rng.IntN(9)-4), // 960..1040, many ties
			Players:  1,
			// Creation order unrelated to the ids, some times equal.
			CreatedAt: t0.Add(time.Duration(rng.IntN(40)) * time.Millisecond),
		}
		if ok, err := s.AddToPool(ctx, "duel", e); err != nil || !ok {
			t.Fatalf("AddToPool(%s) = %v, %v", id, ok, err)
		}
		pool = append(pool, e)
	}
	reference := func(skill, maxGap float64, limit int) []string {
		var in []store.PoolEntry
		for _, e := range pool {
			if math.Abs(e.Skill-skill) <= maxGap {
				in = append(in, e)
			}
		}
		slices.SortFunc(in, func(a, b store.PoolEntry) int {
			return cmp.Or(cmp.Compare(math.Abs(a.Skill-skill), math.Abs(b.Skill-skill)),
				a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.TicketID, b.TicketID))
		})
		var out []string
		for _, e := range in[:min(limit, len(in))] {
			out = append(out, e.TicketID)
		}
		return out
	}
	for i := range 200 {
		skill := 950 + float64(rng.IntN(101))
		maxGap := float64(rng.IntN(50))
		limit := 1 + rng.IntN(30)
		got, err := s.Candidates(ctx, "duel", skill, maxGap, limit)
		if err != nil {
			t.Fatalf("Candidates: %v", err)
		}
		var gotIDs []string
		for _, e := range got {
			gotIDs = append(gotIDs, e.TicketID)
		}
		if want := reference(skill, maxGap, limit); !slices.Equal(gotIDs, want) {
			t.Fatalf("query %d: Candidates(%v, %v, %d) = %v, want %v", i, skill, maxGap, limit, gotIDs, want)
		}
	}
}

func testCandidatesEdges(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	mustCreate(t, s, ticket("duel.a", "p-a"), t0.Add(time.Hour))
	if ok, err := s.AddToPool(ctx, "duel", store.PoolEntry{TicketID: "duel.a", Skill: 1500, Players: 1, CreatedAt: t0}); err != nil || !ok {
		t.Fatalf("AddToPool = %v, %v", ok, err)
	}
	tests := []struct {
		name   string
		skill  float64
		maxGap float64
		limit  int
		want   int
	}{
		{"infinite gap", 0, math.Inf(1), 10, 1},
		{"zero limit", 1500, 10, 0, 0},
		{"negative gap", 1500, -1, 10, 0},
		{"NaN skill", math.NaN(), 10, 10, 0},
		{"fractional edge", 1499.75, 0.25, 10, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Candidates(ctx, "duel", tc.skill, tc.maxGap, tc.limit)
			if err != nil || len(got) != tc.want {
				t.Errorf("Candidates = %v, %v; want %d entries", got, err, tc.want)
			}
		})
	}
}

// testAddToPoolAgain checks that adding a ticket again with another
// creation time leaves one entry, where it was added last; that a pool of
// another queue refuses it; and that the pool's keys go with its last
// entry.
func testAddToPoolAgain(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	mustCreate(t, s, ticket("duel.a", "p-a"), t0.Add(time.Hour))
	for _, created := range []time.Time{t0, t0.Add(time.Second)} {
		if ok, err := s.AddToPool(ctx, "duel", store.PoolEntry{TicketID: "duel.a", Skill: 1500, Players: 1, CreatedAt: created}); err != nil || !ok {
			t.Fatalf("AddToPool = %v, %v", ok, err)
		}
	}
	if ok, err := s.AddToPool(ctx, "ranked", store.PoolEntry{TicketID: "duel.a", Skill: 1500, Players: 1, CreatedAt: t0}); err == nil || ok {
		t.Errorf("AddToPool to the pool of another queue = %v, %v; want an error", ok, err)
	}
	got, err := s.Candidates(ctx, "duel", 1500, 0, 10)
	if err != nil || len(got) != 1 || !got[0].CreatedAt.Equal(t0.Add(time.Second)) {
		t.Errorf("Candidates = %+v, %v; want the entry added last, once", got, err)
	}
	if _, err := s.CancelTicket(ctx, "duel.a", t0); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	if n, err := s.client.Exists(ctx, s.poolKey("duel"), s.poolEntriesKey("duel")).Result(); err != nil || n != 0 {
		t.Errorf("pool keys left after the last entry went: %d, %v", n, err)
	}
}

// testExpireDueToTheNanosecond checks that the millisecond index does not
// round expiries either way.
func testExpireDueToTheNanosecond(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	exp := t0.Add(1500 * time.Microsecond)
	mustCreate(t, s, ticket("duel.a", "p-a"), exp)
	mustCreate(t, s, ticket("duel.b", "p-b"), exp.Add(time.Nanosecond))
	for _, tc := range []struct {
		now  time.Time
		want []string
	}{
		{exp.Add(-time.Nanosecond), nil},
		{exp, []string{"duel.a"}},
		{exp, nil},
		{exp.Add(time.Nanosecond), []string{"duel.b"}},
	} {
		got, err := s.ExpireDue(ctx, tc.now, 10)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ExpireDue(%v) = %v, %v; want %v", tc.now.Format(time.RFC3339Nano), got, err, tc.want)
		}
	}
}

// testExpireDueSkipsNotYetDue checks that entries due later in the same
// millisecond do not hide due ones behind the limit of one batch.
func testExpireDueSkipsNotYetDue(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	now := t0.Add(500 * time.Microsecond)
	for i := range 150 {
		mustCreate(t, s, ticket(fmt.Sprintf("duel.later-%03d", i), fmt.Sprintf("p-l%d", i)), now.Add(time.Nanosecond))
	}
	mustCreate(t, s, ticket("duel.zz-due", "p-due"), now)
	got, err := s.ExpireDue(ctx, now, 10)
	if err != nil || !slices.Equal(got, []string{"duel.zz-due"}) {
		t.Errorf("ExpireDue = %v, %v; want [duel.zz-due]", got, err)
	}
}

// testRetention checks which records Redis is told to purge, and when.
func testRetention(t *testing.T, b backend) {
	prefix := testenv.Prefix(t)
	b.clean(t, prefix)
	s := New(b.client(t), Options{Prefix: prefix, Retention: 10 * time.Minute, ServerRetention: 20 * time.Minute})
	ctx := t.Context()
	var tks []contracts.Ticket
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		tks = append(tks, mustCreate(t, s, ticket("duel."+id, "p-"+id), t0.Add(time.Hour)))
	}
	if _, err := s.CancelTicket(ctx, "duel.a", t0); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	mustClaim(t, s, match("duel.m-1", "eu", tks[1], tks[2]))
	if err := s.FailMatch(ctx, "duel.m-1", contracts.ReasonNoServerCapacity, t0); err != nil {
		t.Fatalf("FailMatch: %v", err)
	}
	mustRegister(t, s, "gs-1", "eu", 1)
	mustClaim(t, s, match("duel.m-2", "eu", tks[4], tks[5]))
	if _, err := s.AssignMatch(ctx, "duel.m-2", t0); err != nil {
		t.Fatalf("AssignMatch: %v", err)
	}
	tests := []struct {
		key  string
		want time.Duration // 0: kept until something changes
	}{
		{s.ticketKey("duel", "duel.a"), 10 * time.Minute},
		{s.ticketKey("duel", "duel.b"), 10 * time.Minute},
		{s.matchKey("duel", "duel.m-1"), 10 * time.Minute},
		{s.ticketKey("duel", "duel.e"), 10 * time.Minute},
		{s.matchKey("duel", "duel.m-2"), 10 * time.Minute},
		{s.placedKey("duel.m-2"), 10 * time.Minute},
		{s.ticketKey("duel", "duel.d"), 0},
		{s.playerKey("p-d"), 0},
		{s.serverKey("gs-1"), 21 * time.Minute},
		{s.allocKey("gs-1"), 21 * time.Minute},
	}
	for _, tc := range tests {
		ttl, err := s.client.PTTL(ctx, tc.key).Result()
		if err != nil {
			t.Fatalf("PTTL(%s): %v", tc.key, err)
		}
		switch {
		case tc.want == 0 && ttl != -1:
			t.Errorf("%s expires in %v, want no expiry", tc.key, ttl)
		case tc.want != 0 && (ttl > tc.want || ttl < tc.want-time.Minute):
			t.Errorf("%s expires in %v, want about %v", tc.key, ttl, tc.want)
		}
	}
}

// testIDsNameTheirQueue checks that records whose ids do not name their
// queue are refused, and leave nothing behind.
func testIDsNameTheirQueue(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	for _, tk := range []contracts.Ticket{ticket("no-queue", "p-1"), ticket("ranked.x", "p-1")} {
		tk.Queue = "duel"
		if err := s.CreateTicket(ctx, tk, t0.Add(time.Hour)); err == nil {
			t.Errorf("CreateTicket(%s) in queue duel succeeded, want an error", tk.ID)
		}
	}
	if got := claimOf(t, s, "p-1"); got != "" {
		t.Errorf("a refused ticket claimed its player: %s", got)
	}

	a := mustCreate(t, s, ticket("duel.a", "p-a"), t0.Add(time.Hour))
	other := mustCreate(t, s, ticket("ranked.b", "p-b"), t0.Add(time.Hour))
	tests := []struct {
		name string
		m    contracts.Match
	}{
		{"match id of another queue", func() contracts.Match { m := match("ranked.m", "eu", a); m.Queue = "duel"; return m }()},
		{"match id of no queue", func() contracts.Match { m := match("m", "eu", a); m.Queue = "duel"; return m }()},
		{"ticket of another queue", match("duel.m", "eu", a, other)},
		{"ticket of no queue", match("duel.m", "eu", a, ticket("nowhere"))},
	}
	for _, tc := range tests {
		if err := s.ClaimMatch(ctx, tc.m, t0); err == nil || errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: ClaimMatch = %v, want an error that is no conflict", tc.name, err)
		}
	}
	wantTicket(t, s, "duel.a", contracts.StatusSearching, 1)
	wantTicket(t, s, "ranked.b", contracts.StatusSearching, 1)
}

// testStaleClaimOfMissingTicket: a claim naming a ticket that is gone
// (purged, or deleted by a rollback that died before releasing) is taken
// over by the next create.
func testStaleClaimOfMissingTicket(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	mustCreate(t, s, ticket("duel.a", "p-1", "p-2"), t0.Add(time.Hour))
	if err := s.client.Del(ctx, s.ticketKey("duel", "duel.a")).Err(); err != nil {
		t.Fatal(err)
	}
	// A claim naming an id that names no queue was never issued either.
	if err := s.client.Set(ctx, s.playerKey("p-3"), "garbage", 0).Err(); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, ticket("ranked.b", "p-2", "p-1", "p-3"), t0.Add(time.Hour))
	for _, p := range []string{"p-1", "p-2", "p-3"} {
		wantClaim(t, s, p, "ranked.b")
	}
}

// testStaleClaimOfTerminalTicket: a cancel that dies between its status
// change and the release leaves claims naming a cancelled ticket. The next
// create takes them over; a repeat of the cancel releases what is still
// its own and nothing else.
func testStaleClaimOfTerminalTicket(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	mustCreate(t, s, ticket("duel.a", "p-1", "p-2"), t0.Add(time.Hour))
	// The first step of CancelTicket alone.
	keys := append(s.poolKeys("duel"), s.ticketKey("duel", "duel.a"))
	if _, err := s.run(ctx, cancelScript, keys, "duel.a", fmtTime(t0), millis(s.retention)); err != nil {
		t.Fatal(err)
	}
	wantTicket(t, s, "duel.a", contracts.StatusCancelled, 2)
	wantClaim(t, s, "p-1", "duel.a")

	mustCreate(t, s, ticket("duel.b", "p-1"), t0.Add(time.Hour))
	wantClaim(t, s, "p-1", "duel.b")
	wantClaim(t, s, "p-2", "duel.a")
	if _, err := s.CancelTicket(ctx, "duel.a", t0); err != nil {
		t.Fatalf("CancelTicket again: %v", err)
	}
	wantTicket(t, s, "duel.a", contracts.StatusCancelled, 2)
	wantClaim(t, s, "p-1", "duel.b")
	wantClaim(t, s, "p-2", "")
}

// testReleaseStale: a cancel that dies between its status change and the
// release leaves a note in the queue's release log, and ReleaseStale
// finishes it: it frees the claim still naming the cancelled ticket and
// leaves the one a newer ticket took over. Completed operations leave no
// note behind.
func testReleaseStale(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	mustCreate(t, s, ticket("duel.a", "p-1", "p-2"), t0.Add(time.Hour))
	keys := append(s.poolKeys("duel"), s.ticketKey("duel", "duel.a"))
	if _, err := s.run(ctx, cancelScript, keys, "duel.a", fmtTime(t0), millis(s.retention)); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, ticket("duel.b", "p-1"), t0.Add(time.Hour))
	if n, err := s.ReleaseStale(ctx, 100); err != nil || n != 1 {
		t.Errorf("ReleaseStale = %d, %v; want 1 claim released", n, err)
	}
	wantClaim(t, s, "p-1", "duel.b")
	wantClaim(t, s, "p-2", "")
	if n, err := s.ReleaseStale(ctx, 100); err != nil || n != 0 {
		t.Errorf("ReleaseStale again = %d, %v; want 0", n, err)
	}
	wantNoNotes(t, s)

	// Every operation that ends or deletes a ticket forgets its note.
	mustCreate(t, s, ticket("duel.c", "p-3"), t0.Add(time.Hour))
	if _, err := s.CancelTicket(ctx, "duel.c", t0); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, ticket("duel.d", "p-4"), t0.Add(time.Minute))
	if _, err := s.ExpireDue(ctx, t0.Add(time.Minute), 10); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, ticket("duel.e", "p-5"), t0.Add(time.Hour))
	if err := s.DeleteTicket(ctx, "duel.e"); err != nil {
		t.Fatal(err)
	}
	mustRegister(t, s, "gs-1", "eu", 1)
	m := assignable(t, s, "duel.m-1")
	if _, err := s.AssignMatch(ctx, m.ID, t0); err != nil {
		t.Fatal(err)
	}
	f := assignable(t, s, "duel.m-2")
	if err := s.FailMatch(ctx, f.ID, "test", t0); err != nil {
		t.Fatal(err)
	}
	wantNoNotes(t, s)
	for _, p := range []string{"p-3", "p-4", "p-5", "p-duel.m-1-a", "p-duel.m-2-b"} {
		wantClaim(t, s, p, "")
	}
}

func wantNoNotes(t *testing.T, s *Store) {
	t.Helper()
	notes, err := s.client.SMembers(t.Context(), s.relKey("duel")).Result()
	if err != nil || len(notes) != 0 {
		t.Errorf("release log holds %q, %v; want nothing", notes, err)
	}
}

// testRaceOverlappingParties races two creates for one party of two
// players, listed in opposite orders. Players are claimed in the order of
// their ids, so the two meet at the same first claim: exactly one create
// succeeds, never neither (each holding one claim the other needs).
func testRaceOverlappingParties(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	for round := range 20 {
		p1, p2 := fmt.Sprintf("p-%d-1", round), fmt.Sprintf("p-%d-2", round)
		tks := []contracts.Ticket{
			ticket(fmt.Sprintf("duel.a-%d", round), p1, p2),
			ticket(fmt.Sprintf("duel.b-%d", round), p2, p1),
		}
		errs := make([]error, len(tks))
		var wg sync.WaitGroup
		for i, tk := range tks {
			wg.Go(func() { errs[i] = s.CreateTicket(ctx, tk, t0.Add(time.Hour)) })
		}
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil && won >= 0:
				t.Fatalf("round %d: both creates succeeded", round)
			case err == nil:
				won = i
			case !errors.Is(err, store.ErrPlayerBusy):
				t.Fatalf("round %d: CreateTicket(%s): %v, want nil or ErrPlayerBusy", round, tks[i].ID, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: both creates failed: %v", round, errs)
		}
		wantClaim(t, s, p1, tks[won].ID)
		wantClaim(t, s, p2, tks[won].ID)
	}
}

// testCrashBeforeClaims: a create that dies after writing its ticket and
// before claiming leaves a searching ticket that no one announced; the
// reaper expires it, and its players were never held.
func testCrashBeforeClaims(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	tk := ticket("duel.a", "p-1")
	fields, err := ticketFields(&tk, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.client.SAdd(ctx, s.queuesKey(), "duel").Err(); err != nil {
		t.Fatal(err)
	}
	args := append([]any{tk.ID, t0.Add(time.Minute).UnixMilli(), t0.UnixMilli(), "", millis(s.retention), ""}, fields...)
	keys := []string{s.ticketKey("duel", tk.ID), s.expiryKey("duel"), s.newKey("duel")}
	if _, err := s.run(ctx, createScript, keys, args...); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, ticket("duel.b", "p-1"), t0.Add(time.Hour))
	got, err := s.ExpireDue(ctx, t0.Add(time.Minute), 10)
	if err != nil || !slices.Equal(got, []string{"duel.a"}) {
		t.Errorf("ExpireDue = %v, %v; want [duel.a]", got, err)
	}
	wantClaim(t, s, "p-1", "duel.b")
}

// assignable creates two solo tickets, id-a and id-b, and claims them as
// match id in region eu.
func assignable(t *testing.T, s *Store, id string) contracts.Match {
	t.Helper()
	a := mustCreate(t, s, ticket(id+"-a", "p-"+id+"-a"), t0.Add(time.Hour))
	c := mustCreate(t, s, ticket(id+"-b", "p-"+id+"-b"), t0.Add(time.Hour))
	m := match(id, "eu", a, c)
	mustClaim(t, s, m)
	return m
}

// placeOnly runs the first step of AssignMatch alone, as an assigner that
// dies right after it, and answers the assignment (JSON) and server.
func placeOnly(t *testing.T, s *Store, m contracts.Match) (asg, server string) {
	t.Helper()
	head, err := allocationHead(&m)
	if err != nil {
		t.Fatal(err)
	}
	asg, server, err = s.place(t.Context(), m.ID, m.Region, string(head), t0)
	if err != nil {
		t.Fatalf("placing %s: %v", m.ID, err)
	}
	return asg, server
}

// testCrashBetweenAssignSteps: a repeat of AssignMatch after a crash
// between its steps finishes the same placement without a second slot.
func testCrashBetweenAssignSteps(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	mustRegister(t, s, "gs-1", "eu", 2)
	mustRegister(t, s, "gs-2", "eu", 2)
	m := assignable(t, s, "duel.m-1")
	_, server := placeOnly(t, s, m)
	wantServer(t, s, server, 1, m.ID)
	for _, id := range m.TicketIDs {
		wantTicket(t, s, id, contracts.StatusMatched, 2)
	}
	for range 2 {
		a, err := s.AssignMatch(ctx, m.ID, t0.Add(time.Second))
		if err != nil || a.ServerID != server {
			t.Fatalf("AssignMatch = %+v, %v; want server %s", a, err, server)
		}
	}
	wantServer(t, s, "gs-1", 1, m.ID)
	wantServer(t, s, "gs-2", 0)
	for _, id := range m.TicketIDs {
		wantTicket(t, s, id, contracts.StatusAssigned, 3)
		wantClaim(t, s, "p-"+id, "")
	}
}

// testPlacementOfFailedMatchUndone: a match that fails after an assigner
// placed it (and died, or has not settled yet) gives its slot back,
// whether FailMatch runs whole or dies before undoing the placement and a
// later AssignMatch finds the match failed.
func testPlacementOfFailedMatchUndone(t *testing.T, b backend) {
	tests := []struct {
		name string
		fail func(t *testing.T, s *Store, m contracts.Match)
	}{
		{"by FailMatch", func(t *testing.T, s *Store, m contracts.Match) {
			if err := s.FailMatch(t.Context(), m.ID, "test", t0); err != nil {
				t.Fatalf("FailMatch: %v", err)
			}
		}},
		{"by a later AssignMatch", func(t *testing.T, s *Store, m contracts.Match) {
			keys := []string{s.matchKey("duel", m.ID), s.relKey("duel"), s.waitingKey("duel")}
			args := []any{"test", fmtTime(t0), millis(s.retention), m.ID}
			for _, id := range m.TicketIDs {
				keys = append(keys, s.ticketKey("duel", id))
				args = append(args, id)
			}
			if _, err := s.run(t.Context(), failScript, keys, args...); err != nil {
				t.Fatal(err)
			}
			wantServer(t, s, "gs-1", 1, m.ID)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := b.newStore(t)
			mustRegister(t, s, "gs-1", "eu", 2)
			m := assignable(t, s, "duel.m-1")
			placeOnly(t, s, m)
			tc.fail(t, s, m)
			if _, err := s.AssignMatch(t.Context(), m.ID, t0); !errors.Is(err, store.ErrConflict) {
				t.Errorf("AssignMatch of the failed match: %v, want ErrConflict", err)
			}
			wantServer(t, s, "gs-1", 0)
			if n, err := s.client.Exists(t.Context(), s.placedKey(m.ID)).Result(); err != nil || n != 0 {
				t.Errorf("placement record left: %d, %v", n, err)
			}
			for _, id := range m.TicketIDs {
				wantTicket(t, s, id, contracts.StatusFailed, 3)
				// An assigner that died before releasing them left the
				// claims; the message delivered again finishes the job.
				wantClaim(t, s, "p-"+id, "")
			}
		})
	}
}

// testCrashBeforeAssignRelease: an assignment that dies before releasing
// the players leaves claims naming assigned tickets. Those players can
// queue again at once, and a repeat of AssignMatch releases the claims.
func testCrashBeforeAssignRelease(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	mustRegister(t, s, "gs-1", "eu", 2)
	m := assignable(t, s, "duel.m-1")
	m2 := assignable(t, s, "duel.m-2")
	for _, m := range []contracts.Match{m, m2} {
		asg, server := placeOnly(t, s, m)
		keys := []string{s.matchKey("duel", m.ID), s.relKey("duel"), s.waitingKey("duel")}
		args := []any{asg, server, fmtTime(t0), millis(s.retention), m.ID}
		for _, id := range m.TicketIDs {
			keys = append(keys, s.ticketKey("duel", id))
			args = append(args, id)
		}
		if _, err := s.run(ctx, settleScript, keys, args...); err != nil {
			t.Fatal(err)
		}
	}
	wantClaim(t, s, "p-duel.m-1-a", "duel.m-1-a")
	mustCreate(t, s, ticket("duel.again", "p-duel.m-1-a"), t0.Add(time.Hour))
	wantClaim(t, s, "p-duel.m-1-a", "duel.again")

	if _, err := s.AssignMatch(ctx, m2.ID, t0); err != nil {
		t.Fatalf("AssignMatch again: %v", err)
	}
	for _, id := range m2.TicketIDs {
		wantClaim(t, s, "p-"+id, "")
	}
}

// testStaleServerIndex checks what happens when the index names servers
// that were purged or moved to another region.
func testStaleServerIndex(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	for _, id := range []string{"gs-gone", "gs-live", "gs-moved"} {
		mustRegister(t, s, id, "eu", 5)
	}
	mustRegister(t, s, "gs-moved", "us", 10)
	if err := s.client.Del(ctx, s.serverKey("gs-gone")).Err(); err != nil {
		t.Fatal(err)
	}
	m := assignable(t, s, "duel.m-1")
	a, err := s.AssignMatch(ctx, m.ID, t0)
	if err != nil || a.ServerID != "gs-live" {
		t.Fatalf("AssignMatch = %+v, %v; want gs-live", a, err)
	}
	ids, err := s.client.SMembers(ctx, s.regionKey("eu")).Result()
	if slices.Sort(ids); err != nil || !slices.Equal(ids, []string{"gs-live"}) {
		t.Errorf("index of region eu = %v, %v; want [gs-live]", ids, err)
	}
}

func TestTimeKeyOrder(t *testing.T) {
	times := []time.Time{
		time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(0, -1),
		time.Unix(0, 0),
		time.Unix(0, 1),
		t0,
		t0.Add(time.Nanosecond),
		time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for i := 1; i < len(times); i++ {
		a, b := timeKey(times[i-1]), timeKey(times[i])
		if len(a) != 20 || len(b) != 20 || a >= b {
			t.Errorf("timeKey(%v) = %s, timeKey(%v) = %s: not in order", times[i-1], a, times[i], b)
		}
	}
}

// TestKeySlots checks the layout of keys.go: the keys of one queue hash
// to one Redis Cluster slot, different queues to different slots, and
// the registry to one slot of its own.
func TestKeySlots(t *testing.T) {
	// Known values from the Redis Cluster specification.
	if got := crc16([]byte("123456789")); got != 0x31c3 {
		t.Fatalf("crc16 = %#x, want 0x31c3", got)
	}
	if got := keySlot("foo"); got != 12182 {
		t.Fatalf("keySlot(foo) = %d, want 12182", got)
	}
	s := New(nil, Options{})
	queueKeys := func(q string) []string {
		return []string{s.ticketKey(q, q+".t:1"), s.matchKey(q, q+".m"), s.poolKey(q), s.poolEntriesKey(q), s.expiryKey(q)}
	}
	for _, q := range []string{"duel", "ranked-5v5", "ffa.eu", "a", "servers"} {
		if slot := slotOf(t, queueKeys(q)...); slot != keySlot(q) {
			t.Errorf("queue %s is in slot %d, want that of its name, %d", q, slot, keySlot(q))
		}
	}
	if slotOf(t, queueKeys("duel")...) == slotOf(t, queueKeys("ranked")...) {
		t.Errorf("queues duel and ranked share a slot")
	}
	slotOf(t, s.serverKey("a"), s.allocKey("a"), s.serverKey("b"), s.allocKey("b"),
		s.placedKey("duel.m"), s.regionsKey(), s.regionKey("eu"))
	if keySlot(s.playerKey("p-1")) == keySlot(s.playerKey("p-2")) {
		t.Errorf("players p-1 and p-2 share a slot")
	}
}

// slotOf answers the slot of keys, failing t if they are not all in one.
func slotOf(t *testing.T, keys ...string) uint16 {
	t.Helper()
	for _, k := range keys {
		if keySlot(k) != keySlot(keys[0]) {
			t.Errorf("key %s is in slot %d, %s in %d", k, keySlot(k), keys[0], keySlot(keys[0]))
		}
	}
	return keySlot(keys[0])
}

// keySlot is the Redis Cluster slot of key: CRC16 of its hash tag (the
// part between the first '{' and the next '}', if not empty) or of the
// whole key, modulo 16384.
func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16([]byte(key)) % 16384
}

// crc16 is CRC-16/XMODEM, as Redis Cluster uses.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// testQueuesSpread checks on the cluster that the slots computed here are
// the cluster's own, and that queues on different masters each work with
// their records on their own master.
func testQueuesSpread(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	cc, ok := s.client.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("client is a %T, want a cluster client", s.client)
	}
	slots, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	masterOf := func(slot uint16) string {
		for _, r := range slots {
			if int(slot) >= r.Start && int(slot) <= r.End {
				return r.Nodes[0].Addr
			}
		}
		t.Fatalf("no master serves slot %d", slot)
		return ""
	}
	// Queues q0, q1, ... until one sits on each master.
	byMaster := map[string]string{}
	for i := 0; i < 100 && len(byMaster) < clusterMasters; i++ {
		q := fmt.Sprintf("q%d", i)
		if _, ok := byMaster[masterOf(keySlot(q))]; !ok {
			byMaster[masterOf(keySlot(q))] = q
		}
	}
	if len(byMaster) != clusterMasters {
		t.Fatalf("queues found on %d masters, want %d", len(byMaster), clusterMasters)
	}
	mustRegister(t, s, "gs-1", "eu", 10)
	for master, q := range byMaster {
		key := s.ticketKey(q, q+".a")
		slot, err := cc.ClusterKeySlot(ctx, key).Result()
		if err != nil || slot != int64(keySlot(key)) {
			t.Errorf("CLUSTER KEYSLOT %s = %d, %v; want %d", key, slot, err, keySlot(key))
		}
		a := mustCreate(t, s, ticket(q+".a", "p-"+q+"-a"), t0.Add(time.Hour))
		c := mustCreate(t, s, ticket(q+".b", "p-"+q+"-b"), t0.Add(time.Hour))
		mustClaim(t, s, match(q+".m", "eu", a, c))
		if _, err := s.AssignMatch(ctx, q+".m", t0); err != nil {
			t.Errorf("AssignMatch in queue %s: %v", q, err)
		}
		node := redis.NewClient(&redis.Options{Addr: master})
		n, err := node.ClusterCountKeysInSlot(ctx, int(keySlot(q))).Result()
		node.Close()
		if err != nil || n == 0 {
			t.Errorf("master %s holds %d keys in the slot of queue %s (%v), want some", master, n, q, err)
		}
	}
}

func TestParseChange(t *testing.T) {
	tests := []struct {
		payload string
		want    store.Change
		ok      bool
		carried bool
	}{
		{"t:abc:7", store.Change{Kind: store.ChangeTicket, ID: "abc", Version: 7}, true, false},
		{"s:gs-1:12", store.Change{Kind: store.ChangeServer, ID: "gs-1", Version: 12}, true, false},
		{"t:a:b:3", store.Change{Kind: store.ChangeTicket, ID: "a:b", Version: 3}, true, false},
		// The state that follows a space may hold anything, ':' too.
		{"t:a:b:3 id 3 a:bversion 1 3", store.Change{Kind: store.ChangeTicket, ID: "a:b", Version: 3}, true, true},
		{"t:abc:7 ", store.Change{Kind: store.ChangeTicket, ID: "abc", Version: 7}, true, true},
		// A server's change carries nothing.
		{"s:gs-1:12 x 1 y", store.Change{Kind: store.ChangeServer, ID: "gs-1", Version: 12}, true, false},
		{"t::3", store.Change{}, false, false},
		{"t:abc", store.Change{}, false, false},
		{"t:abc:x", store.Change{}, false, false},
		{"t:abc x:1", store.Change{}, false, false},
		{"x:abc:1", store.Change{}, false, false},
		{"", store.Change{}, false, false},
	}
	for _, tc := range tests {
		got, ok := parseChange(tc.payload)
		carried := got.Ticket != nil
		got.Ticket = nil
		if got != tc.want || ok != tc.ok || carried != tc.carried {
			t.Errorf("parseChange(%q) = %+v (carried %v), %v; want %+v (carried %v), %v",
				tc.payload, got, carried, ok, tc.want, tc.carried, tc.ok)
		}
	}
}

// stateOf lays out t's hash fields as the scripts' stateOf does.
func stateOf(t *testing.T, tk contracts.Ticket) string {
	t.Helper()
	fields, err := ticketFields(&tk, t0)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := 0; i < len(fields); i += 2 {
		name := fields[i].(string)
		if name == "pids" || name == "exp" {
			continue
		}
		v := fmt.Sprint(fields[i+1])
		if raw, ok := fields[i+1].([]byte); ok {
			v = string(raw)
		}
		fmt.Fprintf(&b, "%s %d %s", name, len(v), v)
	}
	return b.String()
}

func TestDecodeTicketState(t *testing.T) {
	tk := ticket("duel.a", "p-a")
	tk.Status, tk.Version = contracts.StatusAssigned, 3
	tk.Latencies = map[string]float64{"eu-west": 31}
	tk.Attributes = map[string]string{"mode": "a b 12 c"} // spaces and digits in a value
	tk.Match = &contracts.MatchRef{ID: "duel.m", Region: "eu-west", Teams: [][]string{{"p-a"}, {"p-b"}}}
	tk.Assignment = &contracts.Assignment{ServerID: "gs-1", Address: "10.0.0.7:7777", Region: "eu-west"}
	tk.Reason = "ünïcode reason"
	got, err := decodeTicketState(stateOf(t, tk))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, tk) {
		t.Errorf("decoded\n%+v\nwant\n%+v", got, tk)
	}
	for _, bad := range []string{"id", "id x duel.a", "id 9 duel.a", "id -1 ", "version 1 x"} {
		if _, err := decodeTicketState(bad); err == nil {
			t.Errorf("decodeTicketState(%q) = nil error", bad)
		}
	}
}

// listener runs Listen on s until the test ends and collects its changes.
type listener struct {
	mu      sync.Mutex
	changes []store.Change
	arrived chan struct{}
}

func listenOn(t *testing.T, s *Store) *listener {
	t.Helper()
	l := &listener{arrived: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Listen(ctx, func(c store.Change) {
			l.mu.Lock()
			l.changes = append(l.changes, c)
			l.mu.Unlock()
			select {
			case l.arrived <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Listen returned %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Listen did not return after its context ended")
		}
	})
	l.waitFor(t, func(cs []store.Change) bool { return len(cs) > 0 })
	return l
}

// waitFor waits up to 5s until cond holds for the changes so far.
func (l *listener) waitFor(t *testing.T, cond func([]store.Change) bool) []store.Change {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		l.mu.Lock()
		cs := slices.Clone(l.changes)
		l.mu.Unlock()
		if cond(cs) {
			return cs
		}
		select {
		case <-l.arrived:
		case <-deadline:
			t.Fatalf("condition not met within 5s; changes: %+v", cs)
		}
	}
}

// count counts the changes like c, whatever they carry.
func count(cs []store.Change, c store.Change) int {
	n := 0
	for _, x := range cs {
		x.Ticket = nil
		if x == c {
			n++
		}
	}
	return n
}

var resync = store.Change{Kind: store.ChangeResync}

// TestListenIgnoresMalformed checks that foreign payloads on the channel
// are dropped, and that what follows them still arrives.
func TestListenIgnoresMalformed(t *testing.T) {
	s := newStore(t)
	l := listenOn(t, s)
	for _, p := range []string{"garbage", "t:x", "t:x:y", "t:ok:5"} {
		if err := s.client.Publish(t.Context(), s.channel(), p).Err(); err != nil {
			t.Fatal(err)
		}
	}
	want := store.Change{Kind: store.ChangeTicket, ID: "ok", Version: 5}
	cs := l.waitFor(t, func(cs []store.Change) bool { return count(cs, want) > 0 })
	if len(cs) != 2 || cs[0] != resync {
		t.Errorf("changes = %+v, want a resync then %+v", cs, want)
	}
}

// TestListenResyncsAfterReconnect kills the listener's connection and
// checks that a resync follows and changes flow again.
func TestListenResyncsAfterReconnect(t *testing.T) {
	prefix := testenv.Prefix(t)
	cleanPrefix(t, prefix)
	name := "redisstore-test-" + strings.TrimSuffix(prefix, ".")
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t), ClientName: name})
	t.Cleanup(func() { c.Close() })
	s := New(c, Options{Prefix: prefix, Listener: "l"})
	l := listenOn(t, s)

	admin := newClient(t)
	ctx := t.Context()
	clients, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	killed := 0
	for _, line := range strings.Split(clients, "\n") {
		if !strings.Contains(line, " name="+name+" ") || !strings.Contains(line, "sub=2") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if id, ok := strings.CutPrefix(f, "id="); ok {
				if err := admin.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
					t.Fatalf("CLIENT KILL ID %s: %v", id, err)
				}
				killed++
			}
		}
	}
	if killed != 1 {
		t.Fatalf("found %d subscribed connections named %s, want 1", killed, name)
	}
	l.waitFor(t, func(cs []store.Change) bool { return count(cs, resync) == 2 })

	mustCreate(t, s, ticket("duel.a", "p-a"), t0.Add(time.Hour))
	if _, err := s.WatchTicket(ctx, "duel.a"); err != nil {
		t.Fatalf("WatchTicket: %v", err)
	}
	if _, err := s.CancelTicket(ctx, "duel.a", t0); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	l.waitFor(t, func(cs []store.Change) bool {
		return count(cs, store.Change{Kind: store.ChangeTicket, ID: "duel.a", Version: 2}) == 1
	})
}

// TestListenPingsKeepSubscription checks that the health pings on a quiet
// connection neither end the subscription nor cause resyncs.
func TestListenPingsKeepSubscription(t *testing.T) {
	s := newStore(t)
	s.pingEvery = 20 * time.Millisecond
	l := listenOn(t, s)
	time.Sleep(200 * time.Millisecond) // several ping rounds
	if err := s.client.Publish(t.Context(), s.channel(), "s:gs-1:1").Err(); err != nil {
		t.Fatal(err)
	}
	cs := l.waitFor(t, func(cs []store.Change) bool { return len(cs) >= 2 })
	if want := []store.Change{resync, {Kind: store.ChangeServer, ID: "gs-1", Version: 1}}; !slices.Equal(cs, want) {
		t.Errorf("changes = %+v, want %+v", cs, want)
	}
}

// TestListenUnreachable checks that Listen reports a Redis it cannot reach
// at all instead of retrying forever.
func TestListenUnreachable(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	s := New(c, Options{Prefix: "unused:"})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err := s.Listen(ctx, func(store.Change) { t.Error("fn called without a subscription") })
	if err == nil || ctx.Err() != nil {
		t.Errorf("Listen = %v with ctx %v; want a connection error before the context ends", err, ctx.Err())
	}
}

// testCrashBetweenFillSteps: a process that seats a ticket in a backfill
// (step 1) and dies before adding it to the allocation (step 2) leaves a
// note, and FinishFills adds the party, once, and forgets the note.
func testCrashBetweenFillSteps(t *testing.T, b backend) {
	s := b.newStore(t)
	ctx := t.Context()
	mustRegister(t, s, "gs-1", "eu", 2)
	m := assignable(t, s, "duel.m")
	if _, err := s.AssignMatch(ctx, m.ID, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RequestBackfill(ctx, contracts.Backfill{MatchID: m.ID, ServerID: "gs-1", Queue: "duel", Region: "eu",
		Open: []int{1, 0}, Teams: m.Teams, Skill: 1500, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, ticket("duel.c", "p-c"), t0.Add(time.Hour))
	keys := append(s.poolKeys("duel"), s.backfillKey("duel"), s.ticketKey("duel", "duel.c"), s.fillsKey("duel"))
	ref := `{"id":"duel.m","region":"eu","teams":[["p-duel.m-a","p-c"],["p-duel.m-b"]]}`
	r, err := s.run(ctx, fillScript, keys, m.ID, "duel.c", 0, ref, fmtTime(t0), millis(s.retention))
	if err != nil || code(r) != "ok" {
		t.Fatalf("step 1 of a fill: %v, %v", r, err)
	}
	wantTicket(t, s, "duel.c", contracts.StatusAssigned, 2)
	before, err := s.Allocations(ctx, "gs-1")
	if err != nil || slices.Contains(before.Allocations[0].TicketIDs, "duel.c") {
		t.Fatalf("allocations before the repair = %+v, %v; want the party missing", before, err)
	}
	for _, want := range []int{1, 0} {
		if n, err := s.FinishFills(ctx, 10); err != nil || n != want {
			t.Errorf("FinishFills = %d, %v; want %d", n, err, want)
		}
	}
	after, err := s.Allocations(ctx, "gs-1")
	if err != nil || len(after.Allocations) != 1 {
		t.Fatalf("allocations after the repair = %+v, %v", after, err)
	}
	a := after.Allocations[0]
	if !slices.Equal(a.TicketIDs, []string{"duel.m-a", "duel.m-b", "duel.c"}) || !slices.Contains(a.Teams[0], "p-c") ||
		after.Version != before.Version+1 {
		t.Errorf("allocation after the repair = %+v at version %d; want duel.c in team 0 at version %d", a, after.Version, before.Version+1)
	}
}

package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
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

func ticket(id string, players ...string) contracts.Ticket {
	ps := make([]contracts.Player, len(players))
	for i, p := range players {
		ps[i] = contracts.Player{ID: p, Skill: 1500}
	}
	return contracts.Ticket{ID: id, Queue: "duel", Status: contracts.StatusSearching, Version: 1,
		CreatedAt: t0, UpdatedAt: t0, Players: ps}
}

func mustCreate(t *testing.T, s *Store, tk contracts.Ticket, expiresAt time.Time) {
	t.Helper()
	if err := s.CreateTicket(t.Context(), tk, expiresAt); err != nil {
		t.Fatalf("CreateTicket(%s): %v", tk.ID, err)
	}
}

// TestCandidatesAgainstReference compares Candidates with a plain sort of
// the whole pool, on pools with many equal skills, so that the cut at the
// limit often falls inside a run of equal scores on either side.
func TestCandidatesAgainstReference(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(7, 11))
	var pool []store.PoolEntry
	for i := range 120 {
		id := fmt.Sprintf("t-%03d", i)
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

func TestCandidatesEdges(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	mustCreate(t, s, ticket("a", "p-a"), t0.Add(time.Hour))
	if ok, err := s.AddToPool(ctx, "duel", store.PoolEntry{TicketID: "a", Skill: 1500, Players: 1, CreatedAt: t0}); err != nil || !ok {
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

// TestAddToPoolMoves checks that adding a ticket again with another queue
// or creation time leaves one entry, where it was added last.
func TestAddToPoolMoves(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	mustCreate(t, s, ticket("a", "p-a"), t0.Add(time.Hour))
	adds := []struct {
		queue   string
		created time.Time
	}{{"duel", t0}, {"duel", t0.Add(time.Second)}, {"ranked", t0}}
	for _, a := range adds {
		if ok, err := s.AddToPool(ctx, a.queue, store.PoolEntry{TicketID: "a", Skill: 1500, Players: 1, CreatedAt: a.created}); err != nil || !ok {
			t.Fatalf("AddToPool = %v, %v", ok, err)
		}
	}
	for queue, want := range map[string]int{"duel": 0, "ranked": 1} {
		if got, err := s.Candidates(ctx, queue, 1500, 0, 10); err != nil || len(got) != want {
			t.Errorf("Candidates(%s) = %v, %v; want %d entries", queue, got, err, want)
		}
	}
	if _, err := s.CancelTicket(ctx, "a", t0); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	if n, err := s.client.Exists(ctx, s.poolKey("ranked"), s.poolEntriesKey("ranked")).Result(); err != nil || n != 0 {
		t.Errorf("pool keys left after the last entry went: %d, %v", n, err)
	}
}

// TestExpireDueToTheNanosecond checks that the millisecond index does not
// round expiries either way.
func TestExpireDueToTheNanosecond(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	exp := t0.Add(1500 * time.Microsecond)
	mustCreate(t, s, ticket("a", "p-a"), exp)
	mustCreate(t, s, ticket("b", "p-b"), exp.Add(time.Nanosecond))
	for _, tc := range []struct {
		now  time.Time
		want []string
	}{
		{exp.Add(-time.Nanosecond), nil},
		{exp, []string{"a"}},
		{exp, nil},
		{exp.Add(time.Nanosecond), []string{"b"}},
	} {
		got, err := s.ExpireDue(ctx, tc.now, 10)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ExpireDue(%v) = %v, %v; want %v", tc.now.Format(time.RFC3339Nano), got, err, tc.want)
		}
	}
}

// TestExpireDueSkipsNotYetDue checks that entries due later in the same
// millisecond do not hide due ones behind the limit of one batch.
func TestExpireDueSkipsNotYetDue(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	now := t0.Add(500 * time.Microsecond)
	for i := range 150 {
		mustCreate(t, s, ticket(fmt.Sprintf("later-%03d", i), fmt.Sprintf("p-l%d", i)), now.Add(time.Nanosecond))
	}
	mustCreate(t, s, ticket("zz-due", "p-due"), now)
	got, err := s.ExpireDue(ctx, now, 10)
	if err != nil || !slices.Equal(got, []string{"zz-due"}) {
		t.Errorf("ExpireDue = %v, %v; want [zz-due]", got, err)
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

// TestRetention checks which records Redis is told to purge, and when.
func TestRetention(t *testing.T) {
	prefix := testenv.Prefix(t)
	cleanPrefix(t, prefix)
	c := newClient(t)
	s := New(c, Options{Prefix: prefix, Retention: 10 * time.Minute, ServerRetention: 20 * time.Minute})
	ctx := t.Context()
	for _, id := range []string{"a", "b", "c", "d"} {
		mustCreate(t, s, ticket(id, "p-"+id), t0.Add(time.Hour))
	}
	if _, err := s.CancelTicket(ctx, "a", t0); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	m := contracts.Match{ID: "m-1", Queue: "duel", Region: "eu", Teams: [][]string{{"p-b"}, {"p-c"}}, TicketIDs: []string{"b", "c"}}
	if err := s.ClaimMatch(ctx, m, t0); err != nil {
		t.Fatalf("ClaimMatch: %v", err)
	}
	if err := s.FailMatch(ctx, "m-1", contracts.ReasonNoServerCapacity, t0); err != nil {
		t.Fatalf("FailMatch: %v", err)
	}
	if _, err := s.RegisterServer(ctx, "gs-1", contracts.ServerRequest{Address: "x:1", Region: "eu", Capacity: 1}, time.Minute, t0); err != nil {
		t.Fatalf("RegisterServer: %v", err)
	}
	tests := []struct {
		key  string
		want time.Duration // 0: kept until something changes
	}{
		{s.ticketKey("a"), 10 * time.Minute},
		{s.ticketKey("b"), 10 * time.Minute},
		{s.matchKey("m-1"), 10 * time.Minute},
		{s.ticketKey("d"), 0},
		{s.serverKey("gs-1"), 21 * time.Minute},
	}
	for _, tc := range tests {
		ttl, err := c.PTTL(ctx, tc.key).Result()
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

// TestStaleRecords checks what happens when Redis has purged records that
// others still point at: a player claim whose ticket is gone, a region
// index entry whose server is gone.
func TestStaleRecords(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	mustCreate(t, s, ticket("a", "p-a"), t0.Add(time.Hour))
	if err := s.client.Del(ctx, s.ticketKey("a")).Err(); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, ticket("b", "p-a"), t0.Add(time.Hour))

	for _, id := range []string{"gs-gone", "gs-live"} {
		if _, err := s.RegisterServer(ctx, id, contracts.ServerRequest{Address: id + ":1", Region: "eu", Capacity: 5}, time.Minute, t0); err != nil {
			t.Fatalf("RegisterServer: %v", err)
		}
	}
	if err := s.client.Del(ctx, s.serverKey("gs-gone")).Err(); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, ticket("c", "p-c"), t0.Add(time.Hour))
	m := contracts.Match{ID: "m-1", Queue: "duel", Region: "", TicketIDs: []string{"b", "c"}}
	if err := s.ClaimMatch(ctx, m, t0); err != nil {
		t.Fatalf("ClaimMatch: %v", err)
	}
	a, err := s.AssignMatch(ctx, "m-1", t0)
	if err != nil || a.ServerID != "gs-live" {
		t.Fatalf("AssignMatch = %+v, %v; want gs-live", a, err)
	}
	if ok, err := s.client.SIsMember(ctx, s.prefix+"region:eu", "gs-gone").Result(); err != nil || ok {
		t.Errorf("purged server still indexed: %v, %v", ok, err)
	}
}

// TestPoolKeysShareSlot checks that the keys of one queue's pool hash to
// one Redis Cluster slot, and that a prefix with a hash tag puts every key
// in one slot.
func TestPoolKeysShareSlot(t *testing.T) {
	// Known values from the Redis Cluster specification.
	if got := crc16([]byte("123456789")); got != 0x31c3 {
		t.Fatalf("crc16 = %#x, want 0x31c3", got)
	}
	if got := keySlot("foo"); got != 12182 {
		t.Fatalf("keySlot(foo) = %d, want 12182", got)
	}
	s := New(nil, Options{})
	for _, q := range []string{"duel", "ranked-5v5", "ffa:eu", "a"} {
		pool, entries := s.poolKey(q), s.poolEntriesKey(q)
		if keySlot(pool) != keySlot(entries) || keySlot(pool) != keySlot(q) {
			t.Errorf("queue %s: %s in slot %d, %s in slot %d, want both in slot %d",
				q, pool, keySlot(pool), entries, keySlot(entries), keySlot(q))
		}
	}
	tagged := New(nil, Options{Prefix: "{mm}:"})
	keys := []string{tagged.ticketKey("t"), tagged.playerKey("p"), tagged.poolKey("duel"), tagged.poolEntriesKey("duel"),
		tagged.matchKey("m"), tagged.serverKey("s"), tagged.allocKey("s"), tagged.prefix + "expiry"}
	for _, k := range keys {
		if keySlot(k) != keySlot(keys[0]) {
			t.Errorf("with prefix {mm}: key %s is in slot %d, %s in %d", k, keySlot(k), keys[0], keySlot(keys[0]))
		}
	}
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

func TestParseChange(t *testing.T) {
	tests := []struct {
		payload string
		want    store.Change
		ok      bool
	}{
		{"t:abc:7", store.Change{Kind: store.ChangeTicket, ID: "abc", Version: 7}, true},
		{"s:gs-1:12", store.Change{Kind: store.ChangeServer, ID: "gs-1", Version: 12}, true},
		{"t:a:b:3", store.Change{Kind: store.ChangeTicket, ID: "a:b", Version: 3}, true},
		{"t::3", store.Change{}, false},
		{"t:abc", store.Change{}, false},
		{"t:abc:x", store.Change{}, false},
		{"x:abc:1", store.Change{}, false},
		{"", store.Change{}, false},
	}
	for _, tc := range tests {
		got, ok := parseChange(tc.payload)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseChange(%q) = %+v, %v; want %+v, %v", tc.payload, got, ok, tc.want, tc.ok)
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

func count(cs []store.Change, c store.Change) int {
	n := 0
	for _, x := range cs {
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
	s := New(c, Options{Prefix: prefix})
	l := listenOn(t, s)

	admin := newClient(t)
	ctx := t.Context()
	clients, err := admin.ClientList(ctx).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	killed := 0
	for _, line := range strings.Split(clients, "\n") {
		if !strings.Contains(line, " name="+name+" ") || !strings.Contains(line, "sub=1") {
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

	mustCreate(t, s, ticket("a", "p-a"), t0.Add(time.Hour))
	if _, err := s.CancelTicket(ctx, "a", t0); err != nil {
		t.Fatalf("CancelTicket: %v", err)
	}
	l.waitFor(t, func(cs []store.Change) bool {
		return count(cs, store.Change{Kind: store.ChangeTicket, ID: "a", Version: 2}) == 1
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

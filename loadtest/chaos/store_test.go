package main

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/redisstore"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// startRedis starts a private redis-server as the run does (AOF, fsync
// every second, keyspace notifications), or, with aof false, one that
// keeps nothing across a restart. It dies with the test.
func startRedis(t *testing.T, aof bool) *proc {
	t.Helper()
	testenv.Command(t, "redis-server")
	p, err := newRedis(t.TempDir(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !aof {
		i := slices.Index(p.args, "--appendonly")
		p.args[i+1] = "no"
	}
	if err := p.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.kill() })
	return p
}

func client(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestReaderSeesTheRealStore writes a phase through the real Redis store,
// reads it back by the run's own reading of the key layout, and then
// fabricates the violations the checks must find: a ticket and a player in
// a second match, a server over capacity, a stale claim.
func TestReaderSeesTheRealStore(t *testing.T) {
	ctx := t.Context()
	red := startRedis(t, true)
	rdb := client(t, red.addr)
	s := redisstore.New(rdb, redisstore.Options{Prefix: "mm:"})
	now := time.Now()
	ticket := func(player string) contracts.Ticket {
		tk := contracts.Ticket{ID: store.NewID("duel"), Queue: "duel", Status: contracts.StatusSearching, Version: 1,
			CreatedAt: now, UpdatedAt: now, Players: []contracts.Player{{ID: player, Skill: 1500}}}
		if err := s.CreateTicket(ctx, tk, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		return tk
	}
	match := func(a, b contracts.Ticket) contracts.Match {
		m := contracts.Match{ID: store.NewID("duel"), Queue: "duel", Region: "eu-west",
			Teams: [][]string{{a.Players[0].ID}, {b.Players[0].ID}}, TicketIDs: []string{a.ID, b.ID},
			Players: []contracts.Player{a.Players[0], b.Players[0]}, CreatedAt: now, AssignDeadline: now.Add(10 * time.Second)}
		if err := s.ClaimMatch(ctx, m, now); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if _, err := s.RegisterServer(ctx, "r-gs1", contracts.ServerRequest{Address: "x.invalid:1", Region: "eu-west", Capacity: 1}, time.Minute, now); err != nil {
		t.Fatal(err)
	}
	a, b, c, d, e, f := ticket("r-p1"), ticket("r-p2"), ticket("r-p3"), ticket("r-p4"), ticket("r-p5"), ticket("r-p6")
	other := ticket("q-p1") // another phase's
	m1 := match(a, b)
	if _, err := s.AssignMatch(ctx, m1.ID, now); err != nil {
		t.Fatal(err)
	}
	m2 := match(c, d) // waits: the one server is full
	if _, err := s.CancelTicket(ctx, f.ID, now); err != nil {
		t.Fatal(err)
	}

	rd := &reader{rdb: rdb, keys: keys{prefix: "mm:"}, queue: "duel"}
	st, err := rd.state(ctx, "r-p")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus := map[string]string{a.ID: "assigned", b.ID: "assigned", c.ID: "matched", d.ID: "matched", e.ID: "searching", f.ID: "cancelled"}
	if len(st.Tickets) != len(wantStatus) {
		t.Errorf("read %d tickets, want %d: %+v", len(st.Tickets), len(wantStatus), st.Tickets)
	}
	for id, want := range wantStatus {
		if got := st.Tickets[id]; got.Status != want || len(got.Players) != 1 {
			t.Errorf("ticket %s read as %+v, want %s with one player", id, got, want)
		}
	}
	if _, ok := st.Tickets[other.ID]; ok {
		t.Error("another phase's ticket was read")
	}
	if st.Tickets[a.ID].Match != m1.ID {
		t.Errorf("ticket a's match read as %q, want %s", st.Tickets[a.ID].Match, m1.ID)
	}
	if got := st.Matches[m1.ID]; got.Status != "assigned" || !slices.Equal(got.Tickets, m1.TicketIDs) || !slices.Equal(got.Players, []string{"r-p1", "r-p2"}) {
		t.Errorf("match m1 read as %+v", got)
	}
	if got := st.Matches[m2.ID]; got.Status != "pending" {
		t.Errorf("match m2 read as %+v", got)
	}
	wantClaims := map[string]string{"r-p3": c.ID, "r-p4": d.ID, "r-p5": e.ID}
	if len(st.Claims) != len(wantClaims) {
		t.Errorf("claims read as %v, want %v", st.Claims, wantClaims)
	}
	for p, id := range wantClaims {
		if st.Claims[p] != id {
			t.Errorf("claim of %s read as %q, want %s", p, st.Claims[p], id)
		}
	}
	fd := evaluate(st, rd.keys, nil, false)
	if len(fd.DoublePlayers)+len(fd.DoubleTickets)+len(fd.Stale) != 0 || len(fd.Stuck) != 3 {
		t.Errorf("clean state: %+v; want only c, d and e stuck", fd)
	}
	ss, err := rd.sampleServers(ctx, []string{"r-gs1", "r-gs2"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (serverSample{ID: "r-gs1", Exists: true, Capacity: 1, Allocated: 1, Allocs: 1}); ss[0] != want || ss[0].over() {
		t.Errorf("server sample %+v, want %+v", ss[0], want)
	}
	if ss[1].Exists || ss[1].over() {
		t.Errorf("a server never registered sampled as %+v", ss[1])
	}

	// The violations, fabricated in the layout the store uses.
	body, _ := json.Marshal(contracts.Match{ID: "duel.bogus", Queue: "duel", TicketIDs: []string{a.ID, e.ID},
		Players: []contracts.Player{a.Players[0], e.Players[0]}})
	tids, _ := json.Marshal([]string{a.ID, e.ID})
	must(t, rdb.HSet(ctx, rd.keys.match("duel", "duel.bogus"), "status", "pending", "tickets", tids, "match", body).Err())
	must(t, rdb.HSet(ctx, rd.keys.server("r-gs1"), "allocated", 2).Err())
	must(t, rdb.Set(ctx, rd.keys.claim("r-p6"), f.ID, 0).Err())
	if st, err = rd.state(ctx, "r-p"); err != nil {
		t.Fatal(err)
	}
	fd = evaluate(st, rd.keys, nil, false)
	if len(fd.DoublePlayers) != 1 || len(fd.DoubleTickets) != 1 || len(fd.Stale) != 1 {
		t.Errorf("fabricated violations: %d double players, %d double tickets, %d stale claims; want 1 each\n%+v",
			len(fd.DoublePlayers), len(fd.DoubleTickets), len(fd.Stale), fd)
	}
	if ss, err = rd.sampleServers(ctx, []string{"r-gs1"}); err != nil || !ss[0].over() {
		t.Errorf("a server allocated above capacity sampled as %+v (%v)", ss, err)
	}
	// A second allocation above capacity counts too.
	must(t, rdb.HSet(ctx, rd.keys.server("r-gs1"), "allocated", 1).Err())
	must(t, rdb.HSet(ctx, rd.keys.allocs("r-gs1"), "duel.bogus", "{}").Err())
	if ss, err = rd.sampleServers(ctx, []string{"r-gs1"}); err != nil || !ss[0].over() {
		t.Errorf("a server with allocations above capacity sampled as %+v (%v)", ss, err)
	}
	// refresh sees a ticket end and its claim go.
	if _, err := s.CancelTicket(ctx, e.ID, now); err != nil {
		t.Fatal(err)
	}
	if st, err = rd.refresh(ctx, st, "r-p"); err != nil {
		t.Fatal(err)
	}
	if st.Tickets[e.ID].Status != "cancelled" || st.Claims["r-p5"] != "" {
		t.Errorf("after a cancel: ticket %+v, claim %q", st.Tickets[e.ID], st.Claims["r-p5"])
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRedisKillDurability kills a Redis that keeps nothing across a
// restart: the keys written shortly before the kill are counted within
// durability, older ones not. A Redis with the AOF keeps what it
// acknowledged, so its kill counts nothing.
func TestRedisKillDurability(t *testing.T) {
	for _, aof := range []bool{false, true} {
		ctx := t.Context()
		red := startRedis(t, aof)
		rdb := client(t, red.addr)
		cfg := config{DurabilityWindow: 400 * time.Millisecond, RedisDown: 100 * time.Millisecond}
		in := &injector{cfg: &cfg, st: &stack{redis: red, redisAddr: red.addr}, rdb: rdb,
			wlog: &writeLog{keep: 5 * time.Second}, beat: &beater{}, durable: map[string]bool{}, logf: t.Logf}
		bg, cancel := context.WithCancel(ctx)
		done := make(chan struct{}, 2)
		go func() { in.wlog.follow(bg, red.addr, "mm:"); done <- struct{}{} }()
		go func() { in.beat.run(bg, red.addr); done <- struct{}{} }()
		// Wait until the subscription and the beat are up.
		for i := 0; in.wlog.count() == 0 || in.beat.last.Load() == 0; i++ {
			if i > 200 {
				t.Fatal("no keyspace notification arrived")
			}
			must(t, rdb.Set(ctx, "mm:warmup", i, 0).Err())
			time.Sleep(10 * time.Millisecond)
		}
		must(t, rdb.HSet(ctx, "mm:{duel}:t:old", "status", "searching").Err())
		time.Sleep(cfg.DurabilityWindow + 300*time.Millisecond)
		must(t, rdb.HSet(ctx, "mm:{duel}:t:new", "status", "searching").Err())
		time.Sleep(50 * time.Millisecond)
		var inj injection
		if err := in.killRedis(ctx, &inj); err != nil {
			t.Fatal(err)
		}
		cancel()
		<-done
		<-done
		d := in.takeDurable()
		if aof {
			if inj.Rollback != 0 || len(d) != 0 {
				t.Errorf("AOF on: rollback %v, within durability %v; want nothing lost", inj.Rollback, d)
			}
			if n, _ := rdb.Exists(ctx, "mm:{duel}:t:new").Result(); n != 1 {
				t.Error("AOF on: the last write did not survive the kill")
			}
			continue
		}
		if inj.Rollback != -1 || !d["mm:{duel}:t:new"] || d["mm:{duel}:t:old"] {
			t.Errorf("AOF off: rollback %v, within durability %v; want every beat lost, new in and old out", inj.Rollback, d)
		}
	}
}

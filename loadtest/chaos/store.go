package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The run reads the suite's Redis directly, by the layout of
// internal/store/redisstore (keys.go, codec.go, scripts.go); store_test.go
// writes through the real store and reads it back here, so that a change
// of layout fails a test instead of blinding a check.
type keys struct{ prefix string }

func (k keys) queueTag(q string) string      { return k.prefix + "{" + q + "}" }
func (k keys) ticket(q, id string) string    { return k.queueTag(q) + ":t:" + id }
func (k keys) match(q, id string) string     { return k.queueTag(q) + ":m:" + id }
func (k keys) claim(player string) string    { return k.prefix + "{p:" + player + "}" }
func (k keys) server(id string) string       { return k.prefix + "{servers}:srv:" + id }
func (k keys) allocs(id string) string       { return k.prefix + "{servers}:allocs:" + id }
func (k keys) ticketPattern(q string) string { return k.queueTag(q) + ":t:*" }
func (k keys) matchPattern(q string) string  { return k.queueTag(q) + ":m:*" }

// ticketRec is what the checks need of a ticket hash.
type ticketRec struct {
	ID      string
	Status  string
	Players []string // the pids field
	Match   string   // the id in the match field, if any
}

// matchRec is what the checks need of a match hash.
type matchRec struct {
	ID      string
	Status  string // pending, assigned or failed
	Tickets []string
	Players []string
}

// storeState is the part of the store that belongs to one phase: the
// tickets and matches holding its players, and its players' claims
// (player → ticket id).
type storeState struct {
	Queue   string
	Tickets map[string]ticketRec
	Matches map[string]matchRec
	Claims  map[string]string
	// ClaimTickets holds the status of tickets claims name that are not
	// among Tickets ("" for a ticket that does not exist).
	ClaimTickets map[string]string
}

func terminal(status string) bool {
	switch status {
	case "assigned", "cancelled", "expired", "failed":
		return true
	}
	return false
}

// reader reads the store of the run.
type reader struct {
	rdb   *redis.Client
	keys  keys
	queue string
}

// scan calls fn with each batch of keys matching pattern; bounded.
func (r *reader) scan(ctx context.Context, pattern string, fn func([]string) error) error {
	var cursor uint64
	for range 1_000_000 {
		ks, next, err := r.rdb.Scan(ctx, cursor, pattern, 2000).Result()
		if err != nil {
			return fmt.Errorf("scanning %s: %w", pattern, err)
		}
		if len(ks) > 0 {
			if err := fn(ks); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
	return fmt.Errorf("scanning %s: too many rounds", pattern)
}

// state reads every ticket, match and claim of the players whose ids
// start with playerPrefix.
func (r *reader) state(ctx context.Context, playerPrefix string) (*storeState, error) {
	st := &storeState{Queue: r.queue, Tickets: map[string]ticketRec{}, Matches: map[string]matchRec{},
		Claims: map[string]string{}, ClaimTickets: map[string]string{}}
	err := r.scan(ctx, r.keys.ticketPattern(r.queue), func(ks []string) error {
		recs, err := r.tickets(ctx, ks)
		for _, t := range recs {
			if anyPrefixed(t.Players, playerPrefix) {
				st.Tickets[t.ID] = t
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	err = r.scan(ctx, r.keys.matchPattern(r.queue), func(ks []string) error {
		cmds, err := r.pipeline(ctx, ks, func(p redis.Pipeliner, k string) redis.Cmder {
			return p.HMGet(ctx, k, "status", "tickets", "match")
		})
		if err != nil {
			return err
		}
		for i, c := range cmds {
			m, err := decodeMatch(ks[i], c.(*redis.SliceCmd).Val())
			if err != nil {
				return err
			}
			if m.ID != "" && anyPrefixed(m.Players, playerPrefix) {
				st.Matches[m.ID] = m
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = r.scan(ctx, r.keys.claim(playerPrefix+"*"), func(ks []string) error {
		cmds, err := r.pipeline(ctx, ks, func(p redis.Pipeliner, k string) redis.Cmder { return p.Get(ctx, k) })
		if err != nil {
			return err
		}
		for i, c := range cmds {
			v, err := c.(*redis.StringCmd).Result()
			if errors.Is(err, redis.Nil) {
				continue // released meanwhile
			}
			player := strings.TrimSuffix(strings.TrimPrefix(ks[i], r.keys.prefix+"{p:"), "}")
			st.Claims[player] = v
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return st, r.claimTickets(ctx, st)
}

// claimTickets reads the tickets that claims name outside the phase's.
func (r *reader) claimTickets(ctx context.Context, st *storeState) error {
	var ids []string
	for _, id := range st.Claims {
		if _, ok := st.Tickets[id]; !ok {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	ks := make([]string, len(ids))
	for i, id := range ids {
		ks[i] = r.keys.ticket(queueOfID(id), id)
	}
	cmds, err := r.pipeline(ctx, ks, func(p redis.Pipeliner, k string) redis.Cmder { return p.HGet(ctx, k, "status") })
	if err != nil {
		return err
	}
	for i, c := range cmds {
		st.ClaimTickets[ids[i]] = c.(*redis.StringCmd).Val()
	}
	return nil
}

// refresh rereads the tickets st already holds and the claims of its
// players, which is all that changes once the phase's load has ended.
func (r *reader) refresh(ctx context.Context, st *storeState, playerPrefix string) (*storeState, error) {
	ks := make([]string, 0, len(st.Tickets))
	for id := range st.Tickets {
		ks = append(ks, r.keys.ticket(r.queue, id))
	}
	next := &storeState{Queue: st.Queue, Tickets: map[string]ticketRec{}, Matches: st.Matches,
		Claims: map[string]string{}, ClaimTickets: map[string]string{}}
	recs, err := r.tickets(ctx, ks)
	if err != nil {
		return nil, err
	}
	for _, t := range recs {
		next.Tickets[t.ID] = t
	}
	err = r.scan(ctx, r.keys.claim(playerPrefix+"*"), func(ks []string) error {
		cmds, err := r.pipeline(ctx, ks, func(p redis.Pipeliner, k string) redis.Cmder { return p.Get(ctx, k) })
		if err != nil {
			return err
		}
		for i, c := range cmds {
			if v, err := c.(*redis.StringCmd).Result(); err == nil {
				next.Claims[strings.TrimSuffix(strings.TrimPrefix(ks[i], r.keys.prefix+"{p:"), "}")] = v
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return next, r.claimTickets(ctx, next)
}

// tickets reads the ticket hashes at ks; missing ones are left out.
func (r *reader) tickets(ctx context.Context, ks []string) ([]ticketRec, error) {
	cmds, err := r.pipeline(ctx, ks, func(p redis.Pipeliner, k string) redis.Cmder {
		return p.HMGet(ctx, k, "id", "status", "pids", "match")
	})
	if err != nil {
		return nil, err
	}
	out := make([]ticketRec, 0, len(ks))
	for i, c := range cmds {
		t, ok, err := decodeTicket(c.(*redis.SliceCmd).Val())
		if err != nil {
			return out, fmt.Errorf("%s: %w", ks[i], err)
		}
		if ok {
			out = append(out, t)
		}
	}
	return out, nil
}

// pipeline runs one command per key in batches and answers them in order.
func (r *reader) pipeline(ctx context.Context, ks []string, cmd func(redis.Pipeliner, string) redis.Cmder) ([]redis.Cmder, error) {
	out := make([]redis.Cmder, 0, len(ks))
	for start := 0; start < len(ks); start += 1000 {
		batch := ks[start:min(start+1000, len(ks))]
		p := r.rdb.Pipeline()
		for _, k := range batch {
			out = append(out, cmd(p, k))
		}
		if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
	}
	return out, nil
}

// decodeTicket reads HMGET id status pids match; false for a ticket that
// does not exist (a hash with no status).
func decodeTicket(v []any) (ticketRec, bool, error) {
	str := func(i int) string { s, _ := v[i].(string); return s }
	t := ticketRec{ID: str(0), Status: str(1)}
	if t.Status == "" {
		return t, false, nil
	}
	if p := str(2); p != "" {
		if err := json.Unmarshal([]byte(p), &t.Players); err != nil {
			return t, true, fmt.Errorf("decoding pids: %w", err)
		}
	}
	if m := str(3); m != "" {
		var ref struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(m), &ref); err != nil {
			return t, true, fmt.Errorf("decoding match: %w", err)
		}
		t.Match = ref.ID
	}
	return t, true, nil
}

// decodeMatch reads HMGET status tickets match of the match hash at key.
func decodeMatch(key string, v []any) (matchRec, error) {
	str := func(i int) string { s, _ := v[i].(string); return s }
	m := matchRec{Status: str(0)}
	if m.Status == "" {
		return matchRec{}, nil
	}
	if _, id, ok := strings.Cut(key, "}:m:"); ok {
		m.ID = id
	}
	if t := str(1); t != "" {
		if err := json.Unmarshal([]byte(t), &m.Tickets); err != nil {
			return m, fmt.Errorf("%s: decoding tickets: %w", key, err)
		}
	}
	if b := str(2); b != "" {
		var body struct {
			Players []struct {
				ID string `json:"id"`
			} `json:"players"`
		}
		if err := json.Unmarshal([]byte(b), &body); err != nil {
			return m, fmt.Errorf("%s: decoding match: %w", key, err)
		}
		for _, p := range body.Players {
			m.Players = append(m.Players, p.ID)
		}
	}
	return m, nil
}

func anyPrefixed(ss []string, prefix string) bool {
	for _, s := range ss {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// queueOfID is store.QueueOfID: the queue is what comes before the last dot.
func queueOfID(id string) string {
	if i := strings.LastIndexByte(id, '.'); i > 0 {
		return id[:i]
	}
	return ""
}

// serverSample is one game server's record at one moment.
type serverSample struct {
	ID        string
	Exists    bool
	Capacity  int
	Allocated int // the allocated counter
	Allocs    int // entries of its allocations hash
}

// over reports whether the server holds more matches than its capacity,
// by either count.
func (s serverSample) over() bool {
	return s.Exists && (s.Allocated > s.Capacity || s.Allocs > s.Capacity)
}

// sampleServers reads every server in ids in one MULTI, so that the
// counts agree with each other.
func (r *reader) sampleServers(ctx context.Context, ids []string) ([]serverSample, error) {
	type pair struct {
		rec *redis.SliceCmd
		n   *redis.IntCmd
	}
	cmds := make([]pair, len(ids))
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = pair{p.HMGet(ctx, r.keys.server(id), "capacity", "allocated"), p.HLen(ctx, r.keys.allocs(id))}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]serverSample, len(ids))
	for i, id := range ids {
		v := cmds[i].rec.Val()
		out[i] = serverSample{ID: id, Allocs: int(cmds[i].n.Val())}
		c, ok := v[0].(string)
		if !ok {
			continue
		}
		out[i].Exists = true
		out[i].Capacity, _ = strconv.Atoi(c)
		if a, ok := v[1].(string); ok {
			out[i].Allocated, _ = strconv.Atoi(a)
		}
	}
	return out, nil
}

// sampler samples the phase's game servers until stopped.
type sampler struct {
	mu       sync.Mutex
	samples  int
	errors   int
	over     int // samples in which some server was over capacity
	examples []string
}

func (s *sampler) run(ctx context.Context, r *reader, ids []string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for range 100_000_000 { // bounded; ctx ends it
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		ss, err := r.sampleServers(sctx, ids)
		cancel()
		s.add(ss, err)
	}
}

func (s *sampler) add(ss []serverSample, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errors++
		return
	}
	s.samples++
	over := false
	for _, v := range ss {
		if v.over() {
			over = true
			if len(s.examples) < maxExamples {
				s.examples = append(s.examples, fmt.Sprintf("server %s at %s: allocated %d, %d allocations, capacity %d",
					v.ID, time.Now().Format("15:04:05.000"), v.Allocated, v.Allocs, v.Capacity))
			}
		}
	}
	if over {
		s.over++
	}
}

func (s *sampler) result() (samples, errs, over int, examples []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples, s.errors, s.over, append([]string(nil), s.examples...)
}

// writeLog records, from Redis's keyspace notifications, when each key
// of the suite was written, for the last few seconds: what a Redis kill
// can have lost.
type writeLog struct {
	mu   sync.Mutex
	ev   []keyWrite
	keep time.Duration
	n    int64
}

type keyWrite struct {
	at  time.Time
	key string
}

func (w *writeLog) add(at time.Time, key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	w.ev = append(w.ev, keyWrite{at, key})
	if len(w.ev) > 4096 && at.Sub(w.ev[0].at) > 2*w.keep {
		cut := 0
		for cut < len(w.ev) && at.Sub(w.ev[cut].at) > w.keep {
			cut++
		}
		w.ev = append(w.ev[:0], w.ev[cut:]...)
	}
}

// between lists the writes in [from, to].
func (w *writeLog) between(from, to time.Time) []keyWrite {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []keyWrite
	for _, e := range w.ev {
		if !e.at.Before(from) && !e.at.After(to) {
			out = append(out, e)
		}
	}
	return out
}

func (w *writeLog) count() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// follow subscribes to the keyspace notifications of the suite's keys,
// again after every Redis restart, until ctx ends.
func (w *writeLog) follow(ctx context.Context, addr, prefix string) {
	const channelPrefix = "__keyspace@0__:"
	for range 1_000_000 {
		if ctx.Err() != nil {
			return
		}
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
		ps := c.PSubscribe(ctx, channelPrefix+prefix+"*")
		for ctx.Err() == nil {
			msg, err := ps.ReceiveTimeout(ctx, time.Second)
			if err != nil {
				var ne interface{ Timeout() bool }
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				break
			}
			if m, ok := msg.(*redis.Message); ok {
				w.add(time.Now(), strings.TrimPrefix(m.Channel, channelPrefix))
			}
		}
		ps.Close()
		c.Close()
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// beatKey holds the run's clock, written every beatEvery: what survives of
// it after a Redis restart tells how far back the store went.
const (
	beatKey   = "chaos:beat"
	beatEvery = 10 * time.Millisecond
)

// beater writes the beat and remembers the last one Redis acknowledged.
// Holding hold stops the beat: a Redis kill holds it until the restarted
// Redis has told which beat it kept.
type beater struct {
	hold sync.Mutex
	last atomic.Int64
}

func (b *beater) run(ctx context.Context, addr string) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	defer c.Close()
	t := time.NewTicker(beatEvery)
	defer t.Stop()
	for range 1_000_000_000 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.hold.Lock()
		now := time.Now().UnixNano()
		if c.Set(ctx, beatKey, now, 0).Err() == nil {
			b.last.Store(now)
		}
		b.hold.Unlock()
	}
}

// acked is the last beat Redis acknowledged.
func (b *beater) acked() time.Time { return time.Unix(0, b.last.Load()) }

// lastBeat reads the beat that survived a restart: false if none did.
func lastBeat(ctx context.Context, rdb *redis.Client) (time.Time, bool, error) {
	var err error
	for range 50 {
		var v int64
		v, err = rdb.Get(ctx, beatKey).Int64()
		switch {
		case err == nil:
			return time.Unix(0, v), true, nil
		case errors.Is(err, redis.Nil):
			return time.Time{}, false, nil
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			break
		}
	}
	return time.Time{}, false, fmt.Errorf("reading the beat after the restart: %w", err)
}

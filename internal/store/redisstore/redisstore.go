// Package redisstore implements store.Store on Redis for the distributed
// mode.
//
// Every change is one Lua script, so it is atomic across any number of
// processes sharing the Redis. Records are hashes with one field per value,
// so that scripts change statuses, versions and counters without decoding
// JSON. Scripts take their times from the caller, never from the Redis
// clock; only the purge of finished records (Options.Retention and
// Options.ServerRetention) runs on Redis key expiry.
//
// Every script that raises the version of a ticket or of a server's
// allocations publishes "t:<id>:<version>" or "s:<id>:<version>" on the
// channel <prefix>changes, which Listen turns into store.Change values.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Options configure a Store. Zero values take the defaults.
type Options struct {
	// Prefix starts every key and the change channel; default "mm:". Give
	// it a hash tag, such as "{mm}:", to run on a Redis Cluster: the
	// scripts touch keys of several records at once.
	Prefix string
	// Retention is how long terminal tickets and failed or ended matches
	// are kept; default 1h.
	Retention time.Duration
	// ServerRetention is how long a server's record is kept once it is no
	// longer live (it missed its heartbeats); default 1h.
	ServerRetention time.Duration
}

// Store is a store.Store on Redis. It is safe for concurrent use, and any
// number of Stores in any number of processes may share one Redis and
// prefix.
type Store struct {
	client          redis.UniversalClient
	prefix          string
	retention       time.Duration
	serverRetention time.Duration
	// pingEvery is the pingEvery constant, shortened by tests.
	pingEvery time.Duration
}

var _ store.Store = (*Store)(nil)

// New returns a Store on client. The caller keeps ownership of client and
// closes it after the Store's last use.
func New(client redis.UniversalClient, opts Options) *Store {
	if opts.Prefix == "" {
		opts.Prefix = "mm:"
	}
	if opts.Retention <= 0 {
		opts.Retention = time.Hour
	}
	if opts.ServerRetention <= 0 {
		opts.ServerRetention = time.Hour
	}
	return &Store{
		client:          client,
		prefix:          opts.Prefix,
		retention:       opts.Retention,
		serverRetention: opts.ServerRetention,
		pingEvery:       pingEvery,
	}
}

// Key layout. Ids may hold ':', so every kind of record has its own
// namespace rather than a suffix after an id. A queue name cannot hold '}',
// so the pool keys of a queue share the hash tag {<queue>} and one cluster
// slot.
func (s *Store) ticketKey(id string) string         { return s.prefix + "t:" + id }
func (s *Store) playerKey(id string) string         { return s.prefix + "p:" + id }
func (s *Store) poolKey(queue string) string        { return s.prefix + "pool:{" + queue + "}" }
func (s *Store) poolEntriesKey(queue string) string { return s.poolKey(queue) + ":e" }
func (s *Store) matchKey(id string) string          { return s.prefix + "m:" + id }
func (s *Store) serverKey(id string) string         { return s.prefix + "s:" + id }
func (s *Store) allocKey(serverID string) string    { return s.prefix + "a:" + serverID }
func (s *Store) channel() string                    { return s.prefix + "changes" }

// run runs a script whose reply is a list, as every script here answers.
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) ([]any, error) {
	v, err := sc.Run(ctx, s.client, keys, append([]any{s.prefix}, args...)...).Result()
	if err != nil {
		return nil, err
	}
	r, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("unexpected script reply %T", v)
	}
	return r, nil
}

// code is the status word a script answers first.
func code(r []any) string {
	if len(r) == 0 {
		return ""
	}
	c, _ := r[0].(string)
	return c
}

// millis is d as a PEXPIRE argument, which must be positive.
func millis(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

// CreateTicket implements store.Store.
func (s *Store) CreateTicket(ctx context.Context, t contracts.Ticket, expiresAt time.Time) error {
	fields, err := ticketFields(&t, expiresAt)
	if err != nil {
		return fmt.Errorf("creating ticket %s: %w", t.ID, err)
	}
	keys := make([]string, 0, 1+len(t.Players))
	keys = append(keys, s.ticketKey(t.ID))
	for _, p := range t.Players {
		keys = append(keys, s.playerKey(p.ID))
	}
	args := append([]any{t.ID, expiresAt.UnixMilli()}, fields...)
	r, err := s.run(ctx, createScript, keys, args...)
	if err != nil {
		return fmt.Errorf("creating ticket %s: %w", t.ID, err)
	}
	switch code(r) {
	case "ok":
		return nil
	case "exists":
		st, _ := r[1].(string)
		return fmt.Errorf("creating ticket %s: %w", t.ID, &store.ConflictError{TicketID: t.ID, Status: contracts.Status(st)})
	case "busy":
		i, _ := r[1].(int64)
		owner, _ := r[2].(string)
		if i < 1 || int(i) > len(t.Players) {
			return fmt.Errorf("creating ticket %s: unexpected reply %v", t.ID, r)
		}
		return &store.PlayerBusyError{PlayerID: t.Players[i-1].ID, TicketID: owner}
	}
	return fmt.Errorf("creating ticket %s: unexpected reply %v", t.ID, r)
}

// DeleteTicket implements store.Store.
func (s *Store) DeleteTicket(ctx context.Context, id string) error {
	if _, err := s.run(ctx, deleteScript, []string{s.ticketKey(id)}, id); err != nil {
		return fmt.Errorf("deleting ticket %s: %w", id, err)
	}
	return nil
}

// Ticket implements store.Store.
func (s *Store) Ticket(ctx context.Context, id string) (contracts.Ticket, error) {
	h, err := s.client.HGetAll(ctx, s.ticketKey(id)).Result()
	if err != nil {
		return contracts.Ticket{}, fmt.Errorf("reading ticket %s: %w", id, err)
	}
	if len(h) == 0 {
		return contracts.Ticket{}, fmt.Errorf("reading ticket %s: %w", id, store.ErrNotFound)
	}
	t, err := decodeTicket(h)
	if err != nil {
		return contracts.Ticket{}, fmt.Errorf("reading ticket %s: %w", id, err)
	}
	return t, nil
}

// CancelTicket implements store.Store.
func (s *Store) CancelTicket(ctx context.Context, id string, now time.Time) (contracts.Ticket, error) {
	r, err := s.run(ctx, cancelScript, []string{s.ticketKey(id)}, id, fmtTime(now), millis(s.retention))
	if err != nil {
		return contracts.Ticket{}, fmt.Errorf("cancelling ticket %s: %w", id, err)
	}
	c := code(r)
	if c == "notfound" {
		return contracts.Ticket{}, fmt.Errorf("cancelling ticket %s: %w", id, store.ErrNotFound)
	}
	if len(r) < 2 || (c != "ok" && c != "conflict") {
		return contracts.Ticket{}, fmt.Errorf("cancelling ticket %s: unexpected reply %v", id, r)
	}
	t, err := decodeTicket(hashOf(r[1]))
	if err != nil {
		return contracts.Ticket{}, fmt.Errorf("cancelling ticket %s: %w", id, err)
	}
	if c == "conflict" {
		return t, &store.ConflictError{TicketID: id, Status: t.Status}
	}
	return t, nil
}

// ExpireTicket implements store.Store.
func (s *Store) ExpireTicket(ctx context.Context, id string, now time.Time) (bool, error) {
	n, err := expireScript.Run(ctx, s.client, []string{s.ticketKey(id)},
		s.prefix, id, fmtTime(now), millis(s.retention)).Int()
	if err != nil {
		return false, fmt.Errorf("expiring ticket %s: %w", id, err)
	}
	return n == 1, nil
}

// ExpireDue implements store.Store. Terminal records purge themselves
// through Redis key expiry, so it has no purging of its own to do.
func (s *Store) ExpireDue(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	// The budget bounds the time one call holds Redis when many entries
	// are stale; what is left waits for the next call.
	budget := limit + 1000
	r, err := s.run(ctx, expireDueScript, nil,
		now.UnixMilli(), timeKey(now), fmtTime(now), millis(s.retention), limit, budget)
	if err != nil {
		return nil, fmt.Errorf("expiring due tickets: %w", err)
	}
	ids := make([]string, 0, len(r))
	for _, v := range r {
		if id, ok := v.(string); ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// AddToPool implements store.Store.
func (s *Store) AddToPool(ctx context.Context, queue string, e store.PoolEntry) (bool, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("adding ticket %s to pool %s: %w", e.TicketID, queue, err)
	}
	keys := []string{s.ticketKey(e.TicketID), s.poolKey(queue), s.poolEntriesKey(queue)}
	n, err := addToPoolScript.Run(ctx, s.client, keys,
		s.prefix, queue, poolMember(e), fmtScore(e.Skill), body).Int()
	if err != nil {
		return false, fmt.Errorf("adding ticket %s to pool %s: %w", e.TicketID, queue, err)
	}
	return n == 1, nil
}

// poolMember names e in its pool's sorted set. Members of equal score sort
// by name, so the name starts with the entry's creation time: the oldest
// comes first among equals.
func poolMember(e store.PoolEntry) string { return timeKey(e.CreatedAt) + ":" + e.TicketID }

// Candidates implements store.Store. One read-only script fetches the
// nearest entries on each side of skill; they are merged here.
func (s *Store) Candidates(ctx context.Context, queue string, skill, maxGap float64, limit int) ([]store.PoolEntry, error) {
	if limit <= 0 || !(maxGap >= 0) || math.IsNaN(skill) {
		return nil, nil
	}
	keys := []string{s.poolKey(queue), s.poolEntriesKey(queue)}
	r, err := s.run(ctx, candidatesScript, keys,
		fmtScore(skill-maxGap), fmtScore(skill), fmtScore(skill+maxGap), "("+fmtScore(skill), limit)
	if err != nil {
		return nil, fmt.Errorf("reading candidates of pool %s: %w", queue, err)
	}
	es := make([]store.PoolEntry, 0, len(r))
	for _, v := range r {
		raw, ok := v.(string)
		if !ok {
			continue
		}
		var e store.PoolEntry
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			return nil, fmt.Errorf("reading candidates of pool %s: decoding entry: %w", queue, err)
		}
		if math.Abs(e.Skill-skill) <= maxGap {
			es = append(es, e)
		}
	}
	slices.SortFunc(es, func(a, b store.PoolEntry) int {
		if c := cmpFloat(math.Abs(a.Skill-skill), math.Abs(b.Skill-skill)); c != 0 {
			return c
		}
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.TicketID, b.TicketID)
	})
	if len(es) > limit {
		es = es[:limit]
	}
	return es, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ClaimMatch implements store.Store.
func (s *Store) ClaimMatch(ctx context.Context, m contracts.Match, now time.Time) error {
	seen := make(map[string]bool, len(m.TicketIDs))
	for _, id := range m.TicketIDs {
		if seen[id] {
			return fmt.Errorf("claiming match %s: ticket %s is listed twice: %w", m.ID, id, store.ErrConflict)
		}
		seen[id] = true
	}
	ref, err := json.Marshal(m.Ref())
	if err != nil {
		return fmt.Errorf("claiming match %s: %w", m.ID, err)
	}
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("claiming match %s: %w", m.ID, err)
	}
	head, err := allocationHead(&m)
	if err != nil {
		return fmt.Errorf("claiming match %s: %w", m.ID, err)
	}
	ticketIDs := m.TicketIDs
	if ticketIDs == nil {
		ticketIDs = []string{}
	}
	tids, err := json.Marshal(ticketIDs)
	if err != nil {
		return fmt.Errorf("claiming match %s: %w", m.ID, err)
	}
	keys := make([]string, 0, 1+len(m.TicketIDs))
	keys = append(keys, s.matchKey(m.ID))
	args := make([]any, 0, 7+len(m.TicketIDs))
	args = append(args, m.ID, fmtTime(now), ref, body, head, m.Region, tids)
	for _, id := range m.TicketIDs {
		keys = append(keys, s.ticketKey(id))
		args = append(args, id)
	}
	r, err := s.run(ctx, claimScript, keys, args...)
	if err != nil {
		return fmt.Errorf("claiming match %s: %w", m.ID, err)
	}
	switch code(r) {
	case "ok":
		return nil
	case "conflict":
		id, _ := r[1].(string)
		st, _ := r[2].(string)
		return fmt.Errorf("claiming match %s: %w", m.ID, &store.ConflictError{TicketID: id, Status: contracts.Status(st)})
	}
	return fmt.Errorf("claiming match %s: unexpected reply %v", m.ID, r)
}

// allocationHead is the JSON of the allocation of m without its closing
// brace: AssignMatch appends the allocation time, which only it knows,
// without decoding and re-encoding the rest in Lua.
func allocationHead(m *contracts.Match) ([]byte, error) {
	b, err := json.Marshal(struct {
		MatchID   string             `json:"match_id"`
		Queue     string             `json:"queue"`
		Region    string             `json:"region"`
		Teams     [][]string         `json:"teams"`
		Players   []contracts.Player `json:"players"`
		TicketIDs []string           `json:"ticket_ids"`
	}{m.ID, m.Queue, m.Region, m.Teams, m.Players, m.TicketIDs})
	if err != nil {
		return nil, err
	}
	return b[:len(b)-1], nil
}

// Match implements store.Store.
func (s *Store) Match(ctx context.Context, id string) (contracts.Match, error) {
	raw, err := s.client.HGet(ctx, s.matchKey(id), "match").Result()
	if errors.Is(err, redis.Nil) {
		return contracts.Match{}, fmt.Errorf("reading match %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return contracts.Match{}, fmt.Errorf("reading match %s: %w", id, err)
	}
	var m contracts.Match
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return contracts.Match{}, fmt.Errorf("reading match %s: %w", id, err)
	}
	return m, nil
}

// RegisterServer implements store.Store. The record is purged
// ServerRetention after it stops being live.
func (s *Store) RegisterServer(ctx context.Context, id string, req contracts.ServerRequest, ttl time.Duration, now time.Time) (contracts.Server, error) {
	asg, err := json.Marshal(contracts.Assignment{ServerID: id, Address: req.Address, Region: req.Region})
	if err != nil {
		return contracts.Server{}, fmt.Errorf("registering server %s: %w", id, err)
	}
	exp := now.Add(ttl)
	r, err := s.run(ctx, registerScript, []string{s.serverKey(id), s.allocKey(id)},
		id, req.Region, millis(ttl+s.serverRetention),
		"id", id, "address", req.Address, "region", req.Region, "capacity", req.Capacity,
		"expires_at", fmtTime(exp), "exp", timeKey(exp), "assignment", asg)
	if err != nil {
		return contracts.Server{}, fmt.Errorf("registering server %s: %w", id, err)
	}
	srv, err := decodeServer(hashOf(r))
	if err != nil {
		return contracts.Server{}, fmt.Errorf("registering server %s: %w", id, err)
	}
	return srv, nil
}

// DrainServer implements store.Store.
func (s *Store) DrainServer(ctx context.Context, id string) (contracts.Server, error) {
	r, err := s.run(ctx, drainScript, []string{s.serverKey(id)})
	if err != nil {
		return contracts.Server{}, fmt.Errorf("draining server %s: %w", id, err)
	}
	if len(r) == 0 {
		return contracts.Server{}, fmt.Errorf("draining server %s: %w", id, store.ErrNotFound)
	}
	srv, err := decodeServer(hashOf(r))
	if err != nil {
		return contracts.Server{}, fmt.Errorf("draining server %s: %w", id, err)
	}
	return srv, nil
}

// Server implements store.Store.
func (s *Store) Server(ctx context.Context, id string) (contracts.Server, error) {
	h, err := s.client.HGetAll(ctx, s.serverKey(id)).Result()
	if err != nil {
		return contracts.Server{}, fmt.Errorf("reading server %s: %w", id, err)
	}
	if len(h) == 0 {
		return contracts.Server{}, fmt.Errorf("reading server %s: %w", id, store.ErrNotFound)
	}
	srv, err := decodeServer(h)
	if err != nil {
		return contracts.Server{}, fmt.Errorf("reading server %s: %w", id, err)
	}
	return srv, nil
}

// Allocations implements store.Store. The version and the allocations are
// read in one MULTI so that they agree.
func (s *Store) Allocations(ctx context.Context, serverID string) (contracts.Allocations, error) {
	var (
		version *redis.StringCmd
		allocs  *redis.StringSliceCmd
	)
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		version = p.HGet(ctx, s.serverKey(serverID), "version")
		allocs = p.HVals(ctx, s.allocKey(serverID))
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return contracts.Allocations{}, fmt.Errorf("reading allocations of server %s: %w", serverID, store.ErrNotFound)
	}
	if err != nil {
		return contracts.Allocations{}, fmt.Errorf("reading allocations of server %s: %w", serverID, err)
	}
	v, err := version.Int64()
	if err != nil {
		return contracts.Allocations{}, fmt.Errorf("reading allocations of server %s: version: %w", serverID, err)
	}
	out := contracts.Allocations{ServerID: serverID, Version: v, Allocations: []contracts.Allocation{}}
	for _, raw := range allocs.Val() {
		var a contracts.Allocation
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			return contracts.Allocations{}, fmt.Errorf("reading allocations of server %s: %w", serverID, err)
		}
		out.Allocations = append(out.Allocations, a)
	}
	slices.SortFunc(out.Allocations, func(a, b contracts.Allocation) int {
		if c := a.AllocatedAt.Compare(b.AllocatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.MatchID, b.MatchID)
	})
	return out, nil
}

// AssignMatch implements store.Store. The script looks at every server
// registered in the match's region (every region if it has none), so its
// cost grows with the fleet of a region.
func (s *Store) AssignMatch(ctx context.Context, matchID string, now time.Time) (contracts.Assignment, error) {
	at, err := json.Marshal(now)
	if err != nil {
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: %w", matchID, err)
	}
	r, err := s.run(ctx, assignScript, []string{s.matchKey(matchID)},
		matchID, fmtTime(now), timeKey(now), at, millis(s.retention))
	if err != nil {
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: %w", matchID, err)
	}
	switch code(r) {
	case "ok":
		raw, _ := r[1].(string)
		var a contracts.Assignment
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			return contracts.Assignment{}, fmt.Errorf("assigning match %s: decoding assignment: %w", matchID, err)
		}
		return a, nil
	case "notfound":
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: %w", matchID, store.ErrNotFound)
	case "failed":
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: match failed: %w", matchID, store.ErrConflict)
	case "nocapacity":
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: %w", matchID, store.ErrNoCapacity)
	}
	return contracts.Assignment{}, fmt.Errorf("assigning match %s: unexpected reply %v", matchID, r)
}

// FailMatch implements store.Store.
func (s *Store) FailMatch(ctx context.Context, matchID, reason string, now time.Time) error {
	r, err := s.run(ctx, failScript, []string{s.matchKey(matchID)},
		matchID, reason, fmtTime(now), millis(s.retention))
	if err != nil {
		return fmt.Errorf("failing match %s: %w", matchID, err)
	}
	switch code(r) {
	case "ok":
		return nil
	case "notfound":
		return fmt.Errorf("failing match %s: %w", matchID, store.ErrNotFound)
	case "assigned":
		return fmt.Errorf("failing match %s: match is assigned: %w", matchID, store.ErrConflict)
	}
	return fmt.Errorf("failing match %s: unexpected reply %v", matchID, r)
}

// EndMatch implements store.Store. The match record is kept for Retention
// afterwards.
func (s *Store) EndMatch(ctx context.Context, serverID, matchID string, now time.Time) error {
	keys := []string{s.serverKey(serverID), s.allocKey(serverID), s.matchKey(matchID)}
	r, err := s.run(ctx, endScript, keys, serverID, matchID, millis(s.retention))
	if err != nil {
		return fmt.Errorf("ending match %s on server %s: %w", matchID, serverID, err)
	}
	switch code(r) {
	case "ok":
		return nil
	case "notfound":
		return fmt.Errorf("ending match %s on server %s: %w", matchID, serverID, store.ErrNotFound)
	}
	return fmt.Errorf("ending match %s on server %s: unexpected reply %v", matchID, serverID, r)
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("pinging redis: %w", err)
	}
	return nil
}

// fmtScore renders a sorted-set score exactly, as Redis parses it.
func fmtScore(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// Package redisstore implements store.Store on Redis for the distributed
// mode, on one Redis server or on a Redis Cluster.
//
// Records are hashes with one field per value, so that scripts change
// statuses, versions and counters without decoding JSON. Every Lua script
// touches the keys of one cluster hash slot only (see keys.go for the
// layout): one queue's tickets, pool and matches; one player's claim; or
// the server registry. A change within one of those is one script and
// atomic across any number of processes. The two changes that span them —
// a ticket's claim on its players, and a match's placement on a server —
// are protocols of idempotent steps, safe to repeat after a crash between
// any two of them; players.go and assign.go describe them.
//
// Scripts take their times from the caller, never from the Redis clock;
// only the purge of finished records (Options.Retention and
// Options.ServerRetention) runs on Redis key expiry.
//
// Every script that raises the version of a ticket or of a server's
// allocations publishes "t:<id>:<version> <state>" or "s:<id>:<version>"
// on the channel <prefix>changes, which Listen turns into store.Change
// values. A ticket's state is its hash as a ticket answer shows it, so
// that a front answers a held poll without reading it back (stateOf in
// scripts.go, decodeTicketState in codec.go); a change without it (from an
// earlier version of this package) still parses, and its waiters read.
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
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Options configure a Store. Zero values take the defaults.
type Options struct {
	// Prefix starts every key and the change channel; default "mm:". It
	// should hold no '{' (see keys.go).
	Prefix string
	// Retention is how long terminal tickets and failed or assigned
	// matches are kept; default 1h.
	Retention time.Duration
	// ServerRetention is how long a server's record is kept once it is no
	// longer live (it missed its heartbeats); default 1h.
	ServerRetention time.Duration
	// Listener names this process for the ticket changes routed to it: a
	// front sets it (unique per process), so that the changes of the
	// tickets whose polls it holds reach it, and no one else. Without it
	// Listen hears server changes only, and WatchTicket is Ticket. It must
	// hold no space.
	Listener string
}

// Store is a store.Store on Redis. It is safe for concurrent use, and any
// number of Stores in any number of processes may share one Redis (or one
// cluster) and prefix.
type Store struct {
	client          redis.UniversalClient
	pipe            pipe
	prefix          string
	retention       time.Duration
	serverRetention time.Duration
	listener        string
	// pingEvery is the pingEvery constant, shortened by tests.
	pingEvery time.Duration
	// registered holds when each queue was last added to the queue set
	// that ExpireDue walks (queue name → time.Time).
	registered sync.Map
}

var _ store.Store = (*Store)(nil)

// New returns a Store on client, a *redis.Client for one server or a
// *redis.ClusterClient for a cluster. The caller keeps ownership of client
// and closes it after the Store's last use.
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
		pipe:            pipe{client: client},
		prefix:          opts.Prefix,
		retention:       opts.Retention,
		serverRetention: opts.ServerRetention,
		listener:        opts.Listener,
		pingEvery:       pingEvery,
	}
}

// eval runs a script through the pipe; every script takes the change
// channel first. A script Redis does not have yet (after a restart or a
// SCRIPT FLUSH) is sent whole, which loads it.
func (s *Store) eval(ctx context.Context, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	cmd := s.evalCmd(ctx, sc, keys, args...)
	if err := s.pipe.do(ctx, cmd); redis.HasErrorPrefix(err, "NOSCRIPT") {
		return sc.Eval(ctx, s.client, keys, append([]any{s.channel()}, args...)...)
	}
	return cmd
}

// evalCmd is the EVALSHA command of a script, the change channel first,
// for the pipe to send.
func (s *Store) evalCmd(ctx context.Context, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	cmdArgs := make([]any, 0, 4+len(keys)+len(args))
	cmdArgs = append(cmdArgs, "evalsha", sc.Hash(), len(keys))
	for _, k := range keys {
		cmdArgs = append(cmdArgs, k)
	}
	cmdArgs = append(cmdArgs, s.channel())
	cmdArgs = append(cmdArgs, args...)
	return redis.NewCmd(ctx, cmdArgs...)
}

// run runs a script whose reply is a list.
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) ([]any, error) {
	v, err := s.eval(ctx, sc, keys, args...).Result()
	if err != nil {
		return nil, err
	}
	r, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("unexpected script reply %T", v)
	}
	return r, nil
}

// scriptCall is one run of a script in runEach.
type scriptCall struct {
	keys []string
	args []any
}

// runEach runs sc once per call in one pipeline, which a cluster client
// splits by node, followed by the commands then adds (if not nil), and
// answers the calls' commands. A pipeline cannot fall back from EVALSHA to
// EVAL call by call, so a NOSCRIPT answer loads the script (on every node)
// and runs the pipeline again: every script run this way, and every
// command then adds, must be idempotent.
func (s *Store) runEach(ctx context.Context, sc *redis.Script, calls []scriptCall, then func(redis.Pipeliner)) ([]*redis.Cmd, error) {
	if len(calls) == 0 && then == nil {
		return nil, nil
	}
	cmds := make([]*redis.Cmd, len(calls))
	exec := func() error {
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, c := range calls {
				cmds[i] = sc.EvalSha(ctx, p, c.keys, append([]any{s.channel()}, c.args...)...)
			}
			if then != nil {
				then(p)
			}
			return nil
		})
		return err
	}
	err := exec()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		if err := sc.Load(ctx, s.client).Err(); err != nil {
			return nil, fmt.Errorf("loading script: %w", err)
		}
		err = exec()
	}
	return cmds, err
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

// Ticket implements store.Store.
func (s *Store) Ticket(ctx context.Context, id string) (contracts.Ticket, error) {
	key, ok := s.ticketKeyOf(id)
	if !ok {
		return contracts.Ticket{}, fmt.Errorf("reading ticket %s: %w", id, store.ErrNotFound)
	}
	cmd := redis.NewMapStringStringCmd(ctx, "hgetall", key)
	_ = s.pipe.do(ctx, cmd)
	h, err := cmd.Result()
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

// maxWatchers is how many fronts a ticket's changes are sent to: the
// latest to hold a poll on it. A player polls through one front at a time;
// a few more cover the fronts its retries reach through a load balancer.
const maxWatchers = 4

// WatchTicket implements store.Store: the read adds this Store's listener
// to the ticket's watchers in the same script, so a change after the read
// reaches this process.
func (s *Store) WatchTicket(ctx context.Context, id string) (contracts.Ticket, error) {
	if s.listener == "" {
		return s.Ticket(ctx, id)
	}
	key, ok := s.ticketKeyOf(id)
	if !ok {
		return contracts.Ticket{}, fmt.Errorf("reading ticket %s: %w", id, store.ErrNotFound)
	}
	r, err := s.run(ctx, watchScript, []string{key}, s.listener, maxWatchers)
	if err != nil {
		return contracts.Ticket{}, fmt.Errorf("reading ticket %s: %w", id, err)
	}
	if len(r) == 0 {
		return contracts.Ticket{}, fmt.Errorf("reading ticket %s: %w", id, store.ErrNotFound)
	}
	t, err := decodeTicket(hashOf(r))
	if err != nil {
		return contracts.Ticket{}, fmt.Errorf("reading ticket %s: %w", id, err)
	}
	return t, nil
}

// CancelTicket implements store.Store. The status changes in the queue's
// slot; the players are released after it (see players.go), also when an
// earlier cancel died before it did.
func (s *Store) CancelTicket(ctx context.Context, id string, now time.Time) (contracts.Ticket, error) {
	q, ok := store.QueueOfID(id)
	if !ok {
		return contracts.Ticket{}, fmt.Errorf("cancelling ticket %s: %w", id, store.ErrNotFound)
	}
	keys := append(s.poolKeys(q), s.ticketKey(q, id))
	r, err := s.run(ctx, cancelScript, keys, id, fmtTime(now), millis(s.retention))
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
	h := hashOf(r[1])
	t, err := decodeTicket(h)
	if err != nil {
		return contracts.Ticket{}, fmt.Errorf("cancelling ticket %s: %w", id, err)
	}
	if t.Status.Terminal() {
		if err := s.release(ctx, claimsOf(id, h["pids"])); err != nil {
			return t, fmt.Errorf("cancelling ticket %s: %w", id, err)
		}
	}
	if c == "conflict" {
		return t, &store.ConflictError{TicketID: id, Status: t.Status}
	}
	return t, nil
}

// ExpireTicket implements store.Store. Like CancelTicket, it releases the
// players after the status change.
func (s *Store) ExpireTicket(ctx context.Context, id string, now time.Time) (bool, error) {
	q, ok := store.QueueOfID(id)
	if !ok {
		return false, nil
	}
	keys := append(s.poolKeys(q), s.ticketKey(q, id))
	r, err := s.run(ctx, expireScript, keys, id, fmtTime(now), millis(s.retention))
	if err != nil || len(r) != 2 {
		return false, fmt.Errorf("expiring ticket %s: %w", id, errors.Join(err, unexpected(r)))
	}
	expired := r[0] == int64(1)
	pids, _ := r[1].(string)
	if err := s.release(ctx, claimsOf(id, pids)); err != nil {
		return expired, fmt.Errorf("expiring ticket %s: %w", id, err)
	}
	return expired, nil
}

// unexpected describes a script reply of the wrong shape; nil if r is
// nil, for the error of the call to speak.
func unexpected(r []any) error {
	if r == nil {
		return nil
	}
	return fmt.Errorf("unexpected reply %v", r)
}

// expireBatch is how many index entries ExpireDue hands one script.
const expireBatch = 100

// ExpireDue implements store.Store. It visits each queue that has had
// tickets (the set <p>{meta}:queues) and expires due tickets there, a
// batch per script, then releases their players. Terminal records purge
// themselves through Redis key expiry, so it has no purging of its own to
// do.
func (s *Store) ExpireDue(ctx context.Context, now time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	queues, err := s.client.SMembers(ctx, s.queuesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("expiring due tickets: reading queues: %w", err)
	}
	slices.Sort(queues)
	// The budget bounds the work of one call when many entries are stale
	// or not quite due; what is left waits for the next call.
	budget := limit + 1000
	var (
		ids    []string
		claims []claim
	)
	for _, q := range queues {
		offset := 0
		for len(ids) < limit && budget > 0 {
			batch := min(expireBatch, budget)
			due, err := s.client.ZRangeByScore(ctx, s.expiryKey(q), &redis.ZRangeBy{
				Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Offset: int64(offset), Count: int64(batch),
			}).Result()
			if err != nil {
				return ids, fmt.Errorf("expiring due tickets of queue %s: %w", q, errors.Join(err, s.release(ctx, claims)))
			}
			if len(due) == 0 {
				break
			}
			keys := s.poolKeys(q)
			args := []any{timeKey(now), fmtTime(now), millis(s.retention), limit - len(ids)}
			for _, id := range due {
				keys = append(keys, s.ticketKey(q, id))
				args = append(args, id)
			}
			r, err := s.run(ctx, expireDueScript, keys, args...)
			if err == nil && len(r) < 2 {
				err = unexpected(r)
			}
			if err != nil {
				return ids, fmt.Errorf("expiring due tickets of queue %s: %w", q, errors.Join(err, s.release(ctx, claims)))
			}
			kept, _ := r[0].(int64)
			seen, _ := r[1].(int64)
			for i := 2; i+1 < len(r); i += 2 {
				id, _ := r[i].(string)
				pids, _ := r[i+1].(string)
				ids = append(ids, id)
				claims = append(claims, claimsOf(id, pids)...)
			}
			// Entries not yet due stay at the front of the index: skip
			// them. The others are gone from it.
			offset += int(kept)
			budget -= int(seen)
			if int(seen) < len(due) || len(due) < batch {
				break
			}
		}
		if len(ids) >= limit || budget <= 0 {
			break
		}
	}
	if err := s.release(ctx, claims); err != nil {
		return ids, fmt.Errorf("expiring due tickets: %w", err)
	}
	return ids, nil
}

// Unannounced implements store.Store. Each queue keeps the tickets no
// matcher has taken up in <p>{q}:new, scored by when they were created or
// last returned here; CreateTicket adds a ticket, AddToPool and every
// change out of searching remove it.
func (s *Store) Unannounced(ctx context.Context, before, now time.Time, limit int) ([]contracts.Ticket, error) {
	var out []contracts.Ticket
	err := s.due(ctx, dueIndex{script: unannouncedScript, index: s.newKey, record: s.ticketKey}, before, now, limit,
		func(v any) error {
			t, err := decodeTicket(hashOf(v))
			if err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	if err != nil {
		return out, fmt.Errorf("finding unannounced tickets: %w", err)
	}
	return out, nil
}

// dueIndex is a per-queue sorted set of records due at a time in ms: its
// key, the key of a record it names, and the script that takes the due
// records from it (see unannouncedScript).
type dueIndex struct {
	script *redis.Script
	index  func(queue string) string
	record func(queue, id string) string
}

// due visits every queue's index ix for up to limit records due at or
// before before, has the script mark them due again at now, and hands
// each reply to add.
func (s *Store) due(ctx context.Context, ix dueIndex, before, now time.Time, limit int, add func(any) error) error {
	queues, err := s.client.SMembers(ctx, s.queuesKey()).Result()
	if err != nil {
		return fmt.Errorf("reading queues: %w", err)
	}
	slices.Sort(queues)
	for _, q := range queues {
		if limit <= 0 {
			break
		}
		ids, err := s.client.ZRangeByScore(ctx, ix.index(q), &redis.ZRangeBy{
			Min: "-inf", Max: strconv.FormatInt(before.UnixMilli(), 10), Count: int64(min(limit, expireBatch)),
		}).Result()
		if err != nil {
			return fmt.Errorf("queue %s: %w", q, err)
		}
		if len(ids) == 0 {
			continue
		}
		keys := []string{ix.index(q)}
		args := []any{before.UnixMilli(), now.UnixMilli()}
		for _, id := range ids {
			keys = append(keys, ix.record(q, id))
			args = append(args, id)
		}
		r, err := s.run(ctx, ix.script, keys, args...)
		if err != nil {
			return fmt.Errorf("queue %s: %w", q, err)
		}
		for _, v := range r {
			if err := add(v); err != nil {
				return fmt.Errorf("queue %s: %w", q, err)
			}
		}
		limit -= len(r)
	}
	return nil
}

// AddToPool implements store.Store. queue must be the ticket's own.
func (s *Store) AddToPool(ctx context.Context, queue string, e store.PoolEntry) (bool, error) {
	q, ok := store.QueueOfID(e.TicketID)
	if !ok {
		return false, nil // never issued, so not searching
	}
	if q != queue {
		return false, fmt.Errorf("adding ticket %s to pool %s: the ticket is of queue %s", e.TicketID, queue, q)
	}
	body, err := json.Marshal(e)
	if err != nil {
		return false, fmt.Errorf("adding ticket %s to pool %s: %w", e.TicketID, queue, err)
	}
	keys := []string{s.poolKey(q), s.poolEntriesKey(q), s.ticketKey(q, e.TicketID), s.newKey(q)}
	n, err := s.eval(ctx, addToPoolScript, keys, poolMember(e), fmtScore(e.Skill), body, e.TicketID).Int()
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

// ClaimMatch implements store.Store. The match and every ticket in it must
// be of m.Queue, so that the claim is one script on the queue's slot.
func (s *Store) ClaimMatch(ctx context.Context, m contracts.Match, now time.Time) error {
	if q, ok := store.QueueOfID(m.ID); !ok || q != m.Queue {
		return fmt.Errorf("claiming match %s: its id does not name its queue %q", m.ID, m.Queue)
	}
	seen := make(map[string]bool, len(m.TicketIDs))
	for _, id := range m.TicketIDs {
		if seen[id] {
			return fmt.Errorf("claiming match %s: ticket %s is listed twice: %w", m.ID, id, store.ErrConflict)
		}
		seen[id] = true
		if q, ok := store.QueueOfID(id); !ok || q != m.Queue {
			return fmt.Errorf("claiming match %s: ticket %s is not of queue %s", m.ID, id, m.Queue)
		}
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
	var acceptance []byte
	if !m.AcceptDeadline.IsZero() {
		if acceptance, err = json.Marshal(contracts.Acceptance{Deadline: m.AcceptDeadline}); err != nil {
			return fmt.Errorf("claiming match %s: %w", m.ID, err)
		}
	}
	keys := append(s.poolKeys(m.Queue), s.matchKey(m.Queue, m.ID), s.waitingKey(m.Queue), s.acceptingKey(m.Queue))
	args := []any{fmtTime(now), ref, body, head, m.Region, tids, m.ID, m.AssignDeadline.UnixMilli(),
		acceptance, m.AcceptDeadline.UnixMilli(), fmtTime(m.AcceptDeadline), now.UnixMilli()}
	for _, id := range m.TicketIDs {
		keys = append(keys, s.ticketKey(m.Queue, id))
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

// OverdueMatches implements store.Store. Each queue keeps its matches
// waiting for a server in <p>{q}:waiting, scored by their assignment
// deadline (or by when they were last returned here); ClaimMatch adds a
// match, assigning or failing it removes it.
func (s *Store) OverdueMatches(ctx context.Context, before, now time.Time, limit int) ([]contracts.Match, error) {
	var out []contracts.Match
	err := s.due(ctx, dueIndex{script: overdueScript, index: s.waitingKey, record: s.matchKey}, before, now, limit,
		func(v any) error {
			body, _ := v.(string)
			var m contracts.Match
			if err := json.Unmarshal([]byte(body), &m); err != nil {
				return fmt.Errorf("decoding a match: %w", err)
			}
			out = append(out, m)
			return nil
		})
	if err != nil {
		return out, fmt.Errorf("finding overdue matches: %w", err)
	}
	return out, nil
}

// Match implements store.Store.
func (s *Store) Match(ctx context.Context, id string) (contracts.Match, error) {
	q, ok := store.QueueOfID(id)
	if !ok {
		return contracts.Match{}, fmt.Errorf("reading match %s: %w", id, store.ErrNotFound)
	}
	raw, err := s.client.HGet(ctx, s.matchKey(q, id), "match").Result()
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
	keys := []string{s.serverKey(id), s.allocKey(id), s.regionKey(req.Region), s.regionsKey()}
	r, err := s.run(ctx, registerScript, keys,
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

// Regions implements store.Store. The set gains a region with the first
// registration in it and keeps it: it is as bounded as the deployment's
// regions are.
func (s *Store) Regions(ctx context.Context) ([]string, error) {
	regions, err := s.client.SMembers(ctx, s.regionsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("reading regions: %w", err)
	}
	return regions, nil
}

// Stats implements store.Store. It reads every queue's indexes and every
// server record, in two pipelines: a scrape's worth of reads, which the
// caller should not repeat more often than its gauges are read.
func (s *Store) Stats(ctx context.Context, now time.Time) (store.Stats, error) {
	st := store.Stats{Queues: map[string]store.QueueStats{}, Regions: map[string]store.RegionStats{}}
	queues, err := s.client.SMembers(ctx, s.queuesKey()).Result()
	if err != nil {
		return st, fmt.Errorf("counting: reading queues: %w", err)
	}
	regions, err := s.Regions(ctx)
	if err != nil {
		return st, fmt.Errorf("counting: %w", err)
	}
	pipe := s.client.Pipeline()
	counts := make([][3]*redis.IntCmd, len(queues))
	for i, q := range queues {
		counts[i] = [3]*redis.IntCmd{pipe.ZCard(ctx, s.expiryKey(q)), pipe.ZCard(ctx, s.poolKey(q)), pipe.ZCard(ctx, s.waitingKey(q))}
	}
	members := make([]*redis.StringSliceCmd, len(regions))
	for i, r := range regions {
		members[i] = pipe.SMembers(ctx, s.regionKey(r))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return st, fmt.Errorf("counting: %w", err)
	}
	for i, q := range queues {
		st.Queues[q] = store.QueueStats{Searching: int(counts[i][0].Val()), Pooled: int(counts[i][1].Val()), WaitingForServer: int(counts[i][2].Val())}
	}
	pipe = s.client.Pipeline()
	var servers []*redis.MapStringStringCmd
	for i := range regions {
		for _, id := range members[i].Val() {
			servers = append(servers, pipe.HGetAll(ctx, s.serverKey(id)))
		}
	}
	if len(servers) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return st, fmt.Errorf("counting servers: %w", err)
		}
	}
	for _, r := range regions {
		st.Regions[r] = store.RegionStats{}
	}
	for _, c := range servers {
		if len(c.Val()) == 0 {
			continue // purged since the index was read
		}
		srv, err := decodeServer(c.Val())
		if err != nil {
			return st, fmt.Errorf("counting servers: %w", err)
		}
		st.Regions[srv.Region] = st.Regions[srv.Region].Add(srv, now)
	}
	return st, nil
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
// read in one MULTI, on the registry's one slot, so that they agree.
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

// EndMatch implements store.Store. It changes the registry only; the match
// record, assigned, purges itself Retention after its assignment.
func (s *Store) EndMatch(ctx context.Context, serverID, matchID string, now time.Time) error {
	// The backfill request goes first, so that no fill comes after the
	// end (backfill.go); only the match's own server may withdraw it.
	if q, ok := store.QueueOfID(matchID); ok {
		if _, err := s.run(ctx, withdrawScript, []string{s.backfillKey(q)}, matchID, serverID); err != nil {
			return fmt.Errorf("ending match %s on server %s: withdrawing its backfill: %w", matchID, serverID, err)
		}
	}
	keys := []string{s.serverKey(serverID), s.allocKey(serverID)}
	r, err := s.run(ctx, endScript, keys, serverID, matchID)
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

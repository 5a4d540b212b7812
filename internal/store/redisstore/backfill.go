package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Backfill. A queue's open requests live in one hash on its slot,
// <p>{q}:bf, three fields per match: "<match>" the request as JSON (its
// open seats aside), "<match>:o" the open seats per team ("1,0") and
// "<match>:a" the assignment of its server. A fill changes two slots, so
// it takes two steps, like AssignMatch:
//
//  1. on the queue's slot (fillScript): the ticket, if searching, becomes
//     assigned to the server, leaves the pool, and the team's seats go
//     down; a note of the fill goes in <p>{q}:fills in the same step;
//  2. on the registry's slot (appendScript): the match's allocation gains
//     the party, compare-and-set against the allocation read, and the
//     server's version goes up. The note is then forgotten.
//
// A process that dies between the steps leaves the note, and FinishFills
// (the reaper) makes step 2 for it; step 2 is idempotent (a party already
// in the allocation is not added again). Between the steps the ticket
// shows its server while the allocation does not show the party yet.
// EndMatch withdraws the request before it ends the match, and a request
// made as the match ends is withdrawn again when its match is found gone;
// a fill that slips in between assigns its ticket to a match that has
// just ended, as an assignment made just before a match ends does.

// fillNote is a fill owed to an allocation.
type fillNote struct {
	Server string `json:"server"`
	Match  string `json:"match"`
	Ticket string `json:"ticket"`
	Team   int    `json:"team"`
}

// RequestBackfill implements store.Store.
func (s *Store) RequestBackfill(ctx context.Context, b contracts.Backfill) (contracts.Backfill, error) {
	q, ok := store.QueueOfID(b.MatchID)
	if !ok || q != b.Queue {
		return contracts.Backfill{}, fmt.Errorf("requesting backfill of match %s: %w", b.MatchID, store.ErrNotFound)
	}
	hosted := func() (string, error) {
		var asg *redis.StringCmd
		var has *redis.BoolCmd
		_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			has = p.HExists(ctx, s.allocKey(b.ServerID), b.MatchID)
			asg = p.HGet(ctx, s.serverKey(b.ServerID), "assignment")
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return "", err
		}
		if !has.Val() || asg.Val() == "" {
			return "", fmt.Errorf("match %s is not hosted by server %s: %w", b.MatchID, b.ServerID, store.ErrNotFound)
		}
		return asg.Val(), nil
	}
	asg, err := hosted()
	if err != nil {
		return contracts.Backfill{}, fmt.Errorf("requesting backfill: %w", err)
	}
	key := s.backfillKey(q)
	fields := []string{b.MatchID, b.MatchID + ":o", b.MatchID + ":a"}
	if b.Seats() == 0 {
		if err := s.client.HDel(ctx, key, fields...).Err(); err != nil {
			return contracts.Backfill{}, fmt.Errorf("withdrawing backfill of match %s: %w", b.MatchID, err)
		}
		return b, nil
	}
	if raw, err := s.client.HGet(ctx, key, b.MatchID).Result(); err == nil {
		var old contracts.Backfill
		if json.Unmarshal([]byte(raw), &old) == nil {
			b.CreatedAt = old.CreatedAt
		}
	}
	static := b
	static.Open = nil
	body, err := json.Marshal(static)
	if err != nil {
		return contracts.Backfill{}, fmt.Errorf("requesting backfill of match %s: %w", b.MatchID, err)
	}
	if err := s.client.HSet(ctx, key, fields[0], body, fields[1], openList(b.Open), fields[2], asg).Err(); err != nil {
		return contracts.Backfill{}, fmt.Errorf("requesting backfill of match %s: %w", b.MatchID, err)
	}
	if _, err := hosted(); err != nil {
		// The match ended meanwhile (EndMatch withdrew the request
		// before this one was written).
		return contracts.Backfill{}, errors.Join(fmt.Errorf("requesting backfill: %w", err), s.client.HDel(ctx, key, fields...).Err())
	}
	return b, nil
}

func openList(open []int) string {
	parts := make([]string, len(open))
	for i, n := range open {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ",")
}

// Backfills implements store.Store: one HGETALL, through the pipeline, as
// every matcher batch makes it.
func (s *Store) Backfills(ctx context.Context, queue string) ([]contracts.Backfill, error) {
	cmd := redis.NewMapStringStringCmd(ctx, "hgetall", s.backfillKey(queue))
	_ = s.pipe.do(ctx, cmd)
	h, err := cmd.Result()
	if err != nil {
		return nil, fmt.Errorf("reading the backfills of queue %s: %w", queue, err)
	}
	var out []contracts.Backfill
	for field, raw := range h {
		if strings.HasSuffix(field, ":o") || strings.HasSuffix(field, ":a") {
			continue
		}
		var b contracts.Backfill
		if err := json.Unmarshal([]byte(raw), &b); err != nil {
			return nil, fmt.Errorf("reading the backfills of queue %s: %w", queue, err)
		}
		open, ok := h[field+":o"]
		if !ok {
			continue
		}
		for p := range strings.SplitSeq(open, ",") {
			n, err := strconv.Atoi(p)
			if err != nil {
				return nil, fmt.Errorf("reading the backfills of queue %s: open seats %q", queue, open)
			}
			b.Open = append(b.Open, n)
		}
		out = append(out, b)
	}
	slices.SortFunc(out, store.OldestBackfillFirst)
	return out, nil
}

// FillBackfill implements store.Store by the two steps above.
func (s *Store) FillBackfill(ctx context.Context, matchID, ticketID string, team int, ref contracts.MatchRef, now time.Time) (contracts.Assignment, error) {
	q, ok := store.QueueOfID(matchID)
	if tq, tok := store.QueueOfID(ticketID); !ok || !tok || tq != q {
		return contracts.Assignment{}, fmt.Errorf("filling backfill of match %s with ticket %s: %w", matchID, ticketID, store.ErrNoCapacity)
	}
	// A server that has stopped heartbeating gets nobody: its players
	// would be sent to a server that is gone. (It may stop between this
	// read and the fill, as it may just after any assignment.)
	if live, err := s.backfillServerLive(ctx, q, matchID, now); err != nil || !live {
		if err == nil {
			err = fmt.Errorf("its server is not live: %w", store.ErrNoCapacity)
		}
		return contracts.Assignment{}, fmt.Errorf("filling backfill of match %s: %w", matchID, err)
	}
	refJSON, err := json.Marshal(ref)
	if err != nil {
		return contracts.Assignment{}, fmt.Errorf("filling backfill of match %s: %w", matchID, err)
	}
	keys := append(s.poolKeys(q), s.backfillKey(q), s.ticketKey(q, ticketID), s.fillsKey(q))
	r, err := s.run(ctx, fillScript, keys, matchID, ticketID, team, refJSON, fmtTime(now), millis(s.retention))
	if err != nil {
		return contracts.Assignment{}, fmt.Errorf("filling backfill of match %s: %w", matchID, err)
	}
	switch code(r) {
	case "ok":
	case "conflict":
		st, _ := r[1].(string)
		return contracts.Assignment{}, fmt.Errorf("filling backfill of match %s: %w", matchID, &store.ConflictError{TicketID: ticketID, Status: contracts.Status(st)})
	case "gone":
		return contracts.Assignment{}, fmt.Errorf("filling backfill of match %s: too few seats open in team %d: %w", matchID, team, store.ErrNoCapacity)
	default:
		return contracts.Assignment{}, fmt.Errorf("filling backfill of match %s: unexpected reply %v", matchID, r)
	}
	if len(r) != 4 {
		return contracts.Assignment{}, fmt.Errorf("filling backfill of match %s: unexpected reply %v", matchID, r)
	}
	raw, _ := r[1].(string)
	pids, _ := r[2].(string)
	note, _ := r[3].(string)
	var a contracts.Assignment
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		return contracts.Assignment{}, fmt.Errorf("filling backfill of match %s: decoding the assignment: %w", matchID, err)
	}
	err = errors.Join(s.release(ctx, claimsOf(ticketID, pids)), s.applyFill(ctx, q, note))
	if err != nil {
		return a, fmt.Errorf("filling backfill of match %s: %w", matchID, err)
	}
	return a, nil
}

// backfillServerLive reports whether the server of match matchID's
// backfill request is live at now; false too when the request is gone.
func (s *Store) backfillServerLive(ctx context.Context, queue, matchID string, now time.Time) (bool, error) {
	raw, err := s.client.HGet(ctx, s.backfillKey(queue), matchID).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var b contracts.Backfill
	if err := json.Unmarshal([]byte(raw), &b); err != nil {
		return false, fmt.Errorf("decoding the backfill request: %w", err)
	}
	exp, err := s.client.HGet(ctx, s.serverKey(b.ServerID), "exp").Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return timeKey(now) < exp, nil
}

// applyFill is step 2 for the note of a fill of queue, which it then
// forgets. A note whose allocation kept changing under it is kept, for
// FinishFills to try again.
func (s *Store) applyFill(ctx context.Context, queue, raw string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	if err := s.addFill(ctx, raw); err != nil {
		return err
	}
	return s.client.SRem(ctx, s.fillsKey(queue), raw).Err()
}

// addFill adds the party of fill note raw to its match's allocation,
// compare-and-set against the allocation read; nothing is left to add
// once the party is in it, or its ticket or its match is gone.
func (s *Store) addFill(ctx context.Context, raw string) error {
	var n fillNote
	if err := json.Unmarshal([]byte(raw), &n); err != nil {
		return fmt.Errorf("decoding a fill note: %w", err)
	}
	t, err := s.Ticket(ctx, n.Ticket)
	if errors.Is(err, store.ErrNotFound) {
		return nil // purged
	}
	if err != nil {
		return fmt.Errorf("reading the ticket of a fill: %w", err)
	}
	for range maxIndexReads {
		old, err := s.client.HGet(ctx, s.allocKey(n.Server), n.Match).Result()
		if errors.Is(err, redis.Nil) {
			return nil // the match has ended
		}
		if err != nil {
			return fmt.Errorf("reading the allocation of match %s: %w", n.Match, err)
		}
		var a contracts.Allocation
		if err := json.Unmarshal([]byte(old), &a); err != nil {
			return fmt.Errorf("decoding the allocation of match %s: %w", n.Match, err)
		}
		if slices.Contains(a.TicketIDs, n.Ticket) {
			return nil
		}
		for len(a.Teams) <= n.Team {
			a.Teams = append(a.Teams, []string{})
		}
		a.Teams[n.Team] = append(a.Teams[n.Team], t.PlayerIDs()...)
		a.Players = append(a.Players, t.Players...)
		a.TicketIDs = append(a.TicketIDs, n.Ticket)
		body, err := json.Marshal(a)
		if err != nil {
			return err
		}
		r, err := s.run(ctx, appendScript, []string{s.serverKey(n.Server), s.allocKey(n.Server)}, n.Server, n.Match, old, body)
		if err != nil {
			return fmt.Errorf("adding a party to the allocation of match %s: %w", n.Match, err)
		}
		if code(r) == "ok" {
			return nil
		}
		// The allocation changed since it was read: read it again.
	}
	return fmt.Errorf("adding a party to the allocation of match %s: the allocation keeps changing", n.Match)
}

// FinishFills implements store.Store.
func (s *Store) FinishFills(ctx context.Context, limit int) (int, error) {
	queues, err := s.client.SMembers(ctx, s.queuesKey()).Result()
	if err != nil {
		return 0, fmt.Errorf("finishing fills: reading queues: %w", err)
	}
	done := 0
	for _, q := range queues {
		if done >= limit {
			break
		}
		notes, err := s.client.SRandMemberN(ctx, s.fillsKey(q), int64(limit-done)).Result()
		if err != nil {
			return done, fmt.Errorf("finishing fills of queue %s: %w", q, err)
		}
		for _, n := range notes {
			if err := s.applyFill(ctx, q, n); err != nil {
				return done, fmt.Errorf("finishing fills of queue %s: %w", q, err)
			}
			done++
		}
	}
	return done, nil
}

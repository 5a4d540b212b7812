package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Placing a match.
//
// A match and its tickets live on their queue's slot, the servers on the
// registry's; AssignMatch changes both, in two idempotent steps:
//
//  1. place (registry slot, allocateScript): if the match has a placement
//     record <p>{servers}:placed:<match id>, answer it; otherwise choose
//     the server by the documented rule, raise its allocated count and
//     version, store the allocation (with the match's players, read from
//     the match beforehand) and the placement record, and publish the
//     server's change. ErrNoCapacity if no server qualifies.
//  2. settle (queue slot, settleScript): a pending match becomes assigned,
//     with every ticket (version+1, published); an assigned match keeps the
//     assignment it has. A failed match is refused, and the placement of
//     step 1 is undone (unallocateScript frees the slot and deletes the
//     record) before AssignMatch answers ErrConflict.
//
// Then the tickets' players are released (players.go).
//
// Why it is safe: step 1 runs at most once per match, however many
// assigners retry, because the placement record answers every later try;
// so a repeat after a crash between the steps finishes the same placement
// and never takes a second slot. A match is failed only while pending
// (FailMatch refuses an assigned one), and whoever sees it failed undoes
// its placement: FailMatch itself after failing it, AssignMatch in step 2
// or, for a placement left by a crash, the next AssignMatch, which reads
// the match failed before step 1. So no slot stays taken by a failed
// match while anyone still handles its message.
//
// What is weaker than one atomic step: between the steps the server shows
// the allocation while the tickets still show matched; and if the match
// fails at that moment, the allocation appears and then disappears again
// (with a version change each time).

// maxIndexReads bounds how often step 1 reads the server index again
// because it changed under it, and how often an undo follows a placement
// record that moved.
const maxIndexReads = 10

// AssignMatch implements store.Store by the protocol above. Step 1 looks at
// every server registered in the match's region (every region if it has
// none), so its cost grows with the fleet of a region.
func (s *Store) AssignMatch(ctx context.Context, matchID string, now time.Time) (contracts.Assignment, error) {
	q, ok := store.QueueOfID(matchID)
	if !ok {
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: %w", matchID, store.ErrNotFound)
	}
	hm := redis.NewSliceCmd(ctx, "hmget", s.matchKey(q, matchID), "status", "region", "tickets", "alloc_head")
	_ = s.pipe.do(ctx, hm)
	f, err := hm.Result()
	if err != nil {
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: %w", matchID, err)
	}
	status, _ := f[0].(string)
	region, _ := f[1].(string)
	head, _ := f[3].(string)
	var tickets []string
	if raw, ok := f[2].(string); ok {
		if err := json.Unmarshal([]byte(raw), &tickets); err != nil {
			return contracts.Assignment{}, fmt.Errorf("assigning match %s: decoding its tickets: %w", matchID, err)
		}
	}

	var asg, server string
	switch status {
	case "":
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: %w", matchID, store.ErrNotFound)
	case "failed":
		return contracts.Assignment{}, s.refuseFailed(ctx, matchID, now)
	case "pending":
		asg, server, err = s.place(ctx, matchID, region, head, now)
		if err != nil {
			return contracts.Assignment{}, fmt.Errorf("assigning match %s: %w", matchID, err)
		}
	}

	keys := []string{s.matchKey(q, matchID), s.relKey(q), s.waitingKey(q)}
	args := []any{asg, server, fmtTime(now), millis(s.retention), matchID}
	for _, id := range tickets {
		keys = append(keys, s.ticketKey(q, id))
		args = append(args, id)
	}
	r, err := s.run(ctx, settleScript, keys, args...)
	if err != nil {
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: %w", matchID, err)
	}
	switch code(r) {
	case "ok":
	case "failed":
		return contracts.Assignment{}, s.refuseFailed(ctx, matchID, now)
	case "notfound":
		return contracts.Assignment{}, errors.Join(
			fmt.Errorf("assigning match %s: %w", matchID, store.ErrNotFound), s.unplace(ctx, matchID))
	default:
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: unexpected reply %v", matchID, r)
	}
	raw, _ := r[1].(string)
	var a contracts.Assignment
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: decoding assignment: %w", matchID, err)
	}
	if err := s.release(ctx, claimsOfPairs(r[2:])); err != nil {
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: %w", matchID, err)
	}
	return a, nil
}

// refuseFailed answers the conflict AssignMatch reports for failed match
// id, after finishing what failing it involves: FailMatch again undoes any
// placement and releases the tickets' players. An assigner that died
// between failing a match and releasing its players leaves them claimed,
// and its message, delivered again, comes here first.
func (s *Store) refuseFailed(ctx context.Context, id string, now time.Time) error {
	err := fmt.Errorf("assigning match %s: match failed: %w", id, store.ErrConflict)
	if ferr := s.FailMatch(ctx, id, "", now); ferr != nil && !errors.Is(ferr, store.ErrConflict) {
		return errors.Join(err, fmt.Errorf("assigning match %s: %w", id, ferr))
	}
	return err
}

// serverIndex is the part of the registry's index that step 1 searches,
// as read before it runs. It is sent to the script as JSON, which checks
// it is still current.
type serverIndex struct {
	Regions []string   `json:"regions"`
	Servers [][]string `json:"servers"`
}

// place is step 1: it answers the assignment (JSON) and server of the
// match's placement, made now or before.
func (s *Store) place(ctx context.Context, matchID, region, head string, now time.Time) (asg, server string, err error) {
	at, err := json.Marshal(now)
	if err != nil {
		return "", "", err
	}
	anyRegion := "0"
	if region == "" {
		anyRegion = "1"
	}
	for range maxIndexReads {
		idx, err := s.readIndex(ctx, region)
		if err != nil {
			return "", "", err
		}
		body, err := json.Marshal(idx)
		if err != nil {
			return "", "", err
		}
		keys := []string{s.placedKey(matchID), s.regionsKey()}
		for _, r := range idx.Regions {
			keys = append(keys, s.regionKey(r))
		}
		for _, ids := range idx.Servers {
			for _, id := range ids {
				keys = append(keys, s.serverKey(id), s.allocKey(id))
			}
		}
		r, err := s.run(ctx, allocateScript, keys,
			matchID, timeKey(now), at, head, millis(s.retention), anyRegion, body)
		if err != nil {
			return "", "", fmt.Errorf("placing on a server: %w", err)
		}
		switch code(r) {
		case "ok":
			asg, _ := r[1].(string)
			server, _ := r[2].(string)
			return asg, server, nil
		case "nocapacity":
			return "", "", store.ErrNoCapacity
		case "retry":
			continue
		}
		return "", "", fmt.Errorf("placing on a server: unexpected reply %v", r)
	}
	return "", "", errors.New("placing on a server: the server index keeps changing")
}

// readIndex reads the regions step 1 searches and their servers.
func (s *Store) readIndex(ctx context.Context, region string) (serverIndex, error) {
	idx := serverIndex{Regions: []string{region}}
	if region == "" {
		regions, err := s.client.SMembers(ctx, s.regionsKey()).Result()
		if err != nil {
			return idx, fmt.Errorf("reading regions: %w", err)
		}
		slices.Sort(regions)
		idx.Regions = regions
	}
	cmds := make([]*redis.StringSliceCmd, len(idx.Regions))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range idx.Regions {
			cmds[i] = p.SMembers(ctx, s.regionKey(r))
		}
		return nil
	})
	if err != nil {
		return idx, fmt.Errorf("reading servers: %w", err)
	}
	idx.Servers = make([][]string, len(cmds))
	for i, c := range cmds {
		// Never nil: the script reads JSON null as something else.
		idx.Servers[i] = append([]string{}, c.Val()...)
	}
	return idx, nil
}

// unplace undoes step 1 for match id, if it was placed: the server gets
// its slot back and the placement record goes.
func (s *Store) unplace(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	for range maxIndexReads {
		server, err := s.client.HGet(ctx, s.placedKey(id), "server").Result()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("undoing placement: %w", err)
		}
		keys := []string{s.placedKey(id), s.serverKey(server), s.allocKey(server)}
		n, err := s.eval(ctx, unallocateScript, keys, id, server).Int()
		if err != nil {
			return fmt.Errorf("undoing placement on server %s: %w", server, err)
		}
		if n >= 0 {
			return nil
		}
	}
	return errors.New("undoing placement: the placement keeps changing")
}

// FailMatch implements store.Store. The match and its tickets fail in the
// queue's slot; then the players are released, and any placement an
// assigner made for the match (and died before settling, or is about to
// settle and will find the match failed) is undone. A repeat does both
// again, which finishes what a crash left.
func (s *Store) FailMatch(ctx context.Context, matchID, reason string, now time.Time) error {
	q, ok := store.QueueOfID(matchID)
	if !ok {
		return fmt.Errorf("failing match %s: %w", matchID, store.ErrNotFound)
	}
	raw, err := s.client.HGet(ctx, s.matchKey(q, matchID), "tickets").Result()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("failing match %s: %w", matchID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("failing match %s: %w", matchID, err)
	}
	var tickets []string
	if err := json.Unmarshal([]byte(raw), &tickets); err != nil {
		return fmt.Errorf("failing match %s: decoding its tickets: %w", matchID, err)
	}
	keys := []string{s.matchKey(q, matchID), s.relKey(q), s.waitingKey(q)}
	args := []any{reason, fmtTime(now), millis(s.retention), matchID}
	for _, id := range tickets {
		keys = append(keys, s.ticketKey(q, id))
		args = append(args, id)
	}
	r, err := s.run(ctx, failScript, keys, args...)
	if err != nil {
		return fmt.Errorf("failing match %s: %w", matchID, err)
	}
	switch code(r) {
	case "ok":
	case "notfound":
		return fmt.Errorf("failing match %s: %w", matchID, store.ErrNotFound)
	case "assigned":
		return fmt.Errorf("failing match %s: match is assigned: %w", matchID, store.ErrConflict)
	default:
		return fmt.Errorf("failing match %s: unexpected reply %v", matchID, r)
	}
	if err := errors.Join(s.release(ctx, claimsOfPairs(r[1:])), s.unplace(ctx, matchID)); err != nil {
		return fmt.Errorf("failing match %s: %w", matchID, err)
	}
	return nil
}

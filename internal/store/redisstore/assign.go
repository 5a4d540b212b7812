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
	hm := s.matchHeadCmd(ctx, q, matchID)
	_ = s.pipe.do(ctx, hm)
	status, region, head, tickets, err := decodeMatchHead(hm)
	if err != nil {
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: %w", matchID, err)
	}

	var asg, server string
	switch status {
	case "":
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: %w", matchID, store.ErrNotFound)
	case "failed":
		return contracts.Assignment{}, s.refuseFailed(ctx, matchID, now)
	case "accepting", "dissolved":
		return contracts.Assignment{}, fmt.Errorf("assigning match %s: not accepted: %w", matchID, store.ErrConflict)
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

// matchHeadCmd reads what placing match id needs of it.
func (s *Store) matchHeadCmd(ctx context.Context, queue, id string) *redis.SliceCmd {
	return redis.NewSliceCmd(ctx, "hmget", s.matchKey(queue, id), "status", "region", "tickets", "alloc_head")
}

// decodeMatchHead answers the reply of matchHeadCmd; status "" means the
// match does not exist.
func decodeMatchHead(hm *redis.SliceCmd) (status, region, head string, tickets []string, err error) {
	f, err := hm.Result()
	if err != nil {
		return "", "", "", nil, err
	}
	status, _ = f[0].(string)
	region, _ = f[1].(string)
	head, _ = f[3].(string)
	if raw, ok := f[2].(string); ok {
		if err := json.Unmarshal([]byte(raw), &tickets); err != nil {
			return "", "", "", nil, fmt.Errorf("decoding its tickets: %w", err)
		}
	}
	return status, region, head, tickets, nil
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
	if region == "" {
		idx, err := s.readIndexOf(ctx, nil, true)
		return idx.serverIndex, err
	}
	idx, err := s.readIndexOf(ctx, []string{region}, false)
	return idx.serverIndex, err
}

// readIndexOf reads the servers of the named regions and, if anyRegion,
// the index of regions and the servers of every region in it. Regions
// answers them all, sorted.
func (s *Store) readIndexOf(ctx context.Context, named []string, anyRegion bool) (batchIndex, error) {
	// Never nil: the script reads JSON null as something else.
	idx := batchIndex{All: []string{}, Any: []int{}}
	if anyRegion {
		regions, err := s.client.SMembers(ctx, s.regionsKey()).Result()
		if err != nil {
			return idx, fmt.Errorf("reading regions: %w", err)
		}
		idx.All = append(idx.All, regions...)
		slices.Sort(idx.All)
	}
	regions := append(append([]string{}, idx.All...), named...)
	slices.Sort(regions)
	idx.Regions = slices.Compact(regions)
	for i, r := range idx.Regions {
		if _, found := slices.BinarySearch(idx.All, r); found {
			idx.Any = append(idx.Any, i+1)
		}
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
	case "notaccepted":
		return fmt.Errorf("failing match %s: match is not accepted: %w", matchID, store.ErrConflict)
	default:
		return fmt.Errorf("failing match %s: unexpected reply %v", matchID, r)
	}
	if err := errors.Join(s.release(ctx, claimsOfPairs(r[1:])), s.unplace(ctx, matchID)); err != nil {
		return fmt.Errorf("failing match %s: %w", matchID, err)
	}
	return nil
}

// Placing many matches (AssignMatches).
//
// A batch goes through the steps of AssignMatch together, each step one
// round trip for the whole batch:
//
//  0. read every match (one pipeline of HMGETs, over every queue slot);
//     refuse those found failed first, so that the slots a crash left
//     them holding are free for the rest of the batch;
//  1. read the server index of every region the batch needs (one
//     pipeline; two if a match takes any region), then place every
//     pending match with one placeManyScript on the registry slot. It
//     checks the index as allocateScript does, reads each server once and
//     places the matches in the batch's order, each by the documented
//     rule against the slots the ones before it took: the same choices as
//     AssignMatch called for one after the other;
//  2. settle, one settleManyScript per queue slot, all in one pipeline;
//  3. release every ticket's players (one pipeline over the player slots).
//
// What bounds a batch: a script may only touch keys of one slot, and the
// registry is one slot ({servers}), so step 1 is one script for the whole
// batch, up to placeBatch matches. While it runs, the registry's shard
// does nothing else (heartbeats, long-polls' reads), and it costs a read
// per indexed server of the batch's regions plus, per match, a look at
// those servers; placeBatch keeps it short however many messages the
// assigner hands over at once. Step 2 is one script per queue, since each
// queue is a slot; the players' claims are a slot each, so step 3 is one
// script per player, pipelined as every release is.
//
// The protocol, and why each step is safe to repeat, are those of
// AssignMatch.

// placeBatch bounds the matches one placeManyScript places.
const placeBatch = 128

// batchIndex is the server index placeManyScript searches, as read before
// it runs.
type batchIndex struct {
	serverIndex
	// All is the index of regions, read if a match of the batch takes any
	// region (else empty, and not checked), and Any the numbers (from 1)
	// of those regions in Regions.
	All []string `json:"all"`
	Any []int    `json:"any"`
}

// batchMatch is one distinct match of an AssignMatches batch on its way
// through the steps.
type batchMatch struct {
	id, queue, status string
	region, head      string
	tickets           []string
	// asg (JSON) and server are its placement, for settling; empty for a
	// match assigned before, which keeps the assignment it has.
	asg, server string
	claims      []claim
	a           contracts.Assignment
	err         error
	// refuse: found failed when settled; gone: found deleted then. Either
	// is finished after the batch, as AssignMatch finishes it.
	refuse, gone bool
}

// live reports whether m is still on its way through the steps.
func (m *batchMatch) live() bool { return m.err == nil && !m.refuse }

// fail sets m's outcome to err, in the words of AssignMatch.
func (m *batchMatch) fail(err error) {
	m.err = fmt.Errorf("assigning match %s: %w", m.id, err)
}

// AssignMatches implements store.Store by the steps above. A batch of one
// is AssignMatch.
func (s *Store) AssignMatches(ctx context.Context, ids []string, now time.Time) []store.AssignResult {
	out := make([]store.AssignResult, len(ids))
	if len(ids) == 1 {
		out[0].Assignment, out[0].Err = s.AssignMatch(ctx, ids[0], now)
		return out
	}
	ms, of := distinctMatches(ids)
	s.readMatches(ctx, ms)
	s.refuseRead(ctx, ms, now)
	s.placeAll(ctx, ms, now)
	s.settleAll(ctx, ms, now)
	s.releaseAll(ctx, ms)
	s.finishRefused(ctx, ms, now)
	for i := range ids {
		if m := ms[of[i]]; m.err != nil {
			out[i].Err = m.err
		} else {
			out[i].Assignment = m.a
		}
	}
	return out
}

// distinctMatches answers the distinct matches of ids, in order of first
// appearance, and for each id the index of its match: a repeat of an id
// answers what its first appearance does, as a repeat of AssignMatch
// right after it would.
func distinctMatches(ids []string) ([]*batchMatch, []int) {
	var ms []*batchMatch
	of := make([]int, len(ids))
	at := make(map[string]int, len(ids))
	for i, id := range ids {
		j, seen := at[id]
		if !seen {
			j = len(ms)
			at[id] = j
			m := &batchMatch{id: id}
			var ok bool
			if m.queue, ok = store.QueueOfID(id); !ok {
				m.fail(store.ErrNotFound)
			}
			ms = append(ms, m)
		}
		of[i] = j
	}
	return ms, of
}

// readMatches is step 0: it reads every match in one pipeline.
func (s *Store) readMatches(ctx context.Context, ms []*batchMatch) {
	cmds := make([]redis.Cmder, 0, len(ms))
	reads := make([]*redis.SliceCmd, len(ms))
	for i, m := range ms {
		if m.live() {
			reads[i] = s.matchHeadCmd(ctx, m.queue, m.id)
			cmds = append(cmds, reads[i])
		}
	}
	if len(cmds) == 0 {
		return
	}
	_ = s.pipe.do(ctx, cmds...) // each command holds its own error
	for i, m := range ms {
		if reads[i] == nil {
			continue
		}
		var err error
		m.status, m.region, m.head, m.tickets, err = decodeMatchHead(reads[i])
		switch {
		case err != nil:
			m.fail(err)
		case m.status == "":
			m.fail(store.ErrNotFound)
		case m.status == "accepting" || m.status == "dissolved":
			m.fail(fmt.Errorf("not accepted: %w", store.ErrConflict))
		}
	}
}

// refuseRead refuses the matches step 0 found failed, before any
// placement, so that what undoing theirs frees counts for the batch.
func (s *Store) refuseRead(ctx context.Context, ms []*batchMatch, now time.Time) {
	for _, m := range ms {
		if m.live() && m.status == "failed" {
			m.err = s.refuseFailed(ctx, m.id, now)
		}
	}
}

// placeAll is step 1 for every pending match, placeBatch at a time.
func (s *Store) placeAll(ctx context.Context, ms []*batchMatch, now time.Time) {
	var pending []*batchMatch
	for _, m := range ms {
		if m.live() && m.status == "pending" {
			pending = append(pending, m)
		}
	}
	for chunk := range slices.Chunk(pending, placeBatch) {
		s.placeMany(ctx, chunk, now)
	}
}

// placeMany places the pending matches ms with one placeManyScript, read
// again with the index while the index changes under it.
func (s *Store) placeMany(ctx context.Context, ms []*batchMatch, now time.Time) {
	at, err := json.Marshal(now)
	if err != nil {
		failAll(ms, err)
		return
	}
	named, anyRegion := regionsOf(ms)
	for range maxIndexReads {
		idx, err := s.readIndexOf(ctx, named, anyRegion)
		if err != nil {
			failAll(ms, err)
			return
		}
		keys, args, err := s.placeManyCall(ms, &idx, anyRegion)
		if err != nil {
			failAll(ms, err)
			return
		}
		args = append([]any{timeKey(now), at, millis(s.retention)}, args...)
		r, err := s.run(ctx, placeManyScript, keys, args...)
		if err != nil {
			failAll(ms, fmt.Errorf("placing on a server: %w", err))
			return
		}
		switch code(r) {
		case "retry":
			continue
		case "ok":
			recordPlacements(ms, r[1:])
			return
		}
		failAll(ms, fmt.Errorf("placing on a server: unexpected reply %v", r))
		return
	}
	failAll(ms, errors.New("placing on a server: the server index keeps changing"))
}

// regionsOf answers the regions that matches ms name, and whether one of
// them takes any region.
func regionsOf(ms []*batchMatch) (named []string, anyRegion bool) {
	for _, m := range ms {
		if m.region == "" {
			anyRegion = true
		} else {
			named = append(named, m.region)
		}
	}
	return named, anyRegion
}

// placeManyCall answers the keys and the arguments after the first three
// of placeManyScript for matches ms against idx.
func (s *Store) placeManyCall(ms []*batchMatch, idx *batchIndex, anyRegion bool) ([]string, []any, error) {
	body, err := json.Marshal(idx)
	if err != nil {
		return nil, nil, err
	}
	check := "0"
	if anyRegion {
		check = "1"
	}
	keys := []string{s.regionsKey()}
	for _, r := range idx.Regions {
		keys = append(keys, s.regionKey(r))
	}
	for _, ids := range idx.Servers {
		for _, id := range ids {
			keys = append(keys, s.serverKey(id), s.allocKey(id))
		}
	}
	args := []any{check, body}
	for _, m := range ms {
		n := 0 // any region
		if m.region != "" {
			i, _ := slices.BinarySearch(idx.Regions, m.region)
			n = i + 1
		}
		keys = append(keys, s.placedKey(m.id))
		args = append(args, m.id, m.head, n)
	}
	return keys, args, nil
}

// recordPlacements records what placeManyScript answered for each of ms: a status
// word, the assignment (JSON) and the server.
func recordPlacements(ms []*batchMatch, r []any) {
	for i, m := range ms {
		if 3*i+2 >= len(r) {
			m.fail(fmt.Errorf("placing on a server: short reply %v", r))
			continue
		}
		word, _ := r[3*i].(string)
		switch word {
		case "ok":
			m.asg, _ = r[3*i+1].(string)
			m.server, _ = r[3*i+2].(string)
		case "nocapacity":
			m.fail(store.ErrNoCapacity)
		default:
			m.fail(fmt.Errorf("placing on a server: unexpected reply %v", r[3*i:3*i+3]))
		}
	}
}

func failAll(ms []*batchMatch, err error) {
	for _, m := range ms {
		m.fail(err)
	}
}

// settleAll is step 2: one settleManyScript per queue, all in one
// pipeline.
func (s *Store) settleAll(ctx context.Context, ms []*batchMatch, now time.Time) {
	var queues []string
	byQueue := map[string][]*batchMatch{}
	for _, m := range ms {
		if !m.live() {
			continue
		}
		if _, ok := byQueue[m.queue]; !ok {
			queues = append(queues, m.queue)
		}
		byQueue[m.queue] = append(byQueue[m.queue], m)
	}
	if len(queues) == 0 {
		return
	}
	calls := make([]scriptCall, len(queues))
	for i, q := range queues {
		calls[i] = s.settleManyCall(q, byQueue[q], now)
	}
	cmds, err := s.runEach(ctx, settleManyScript, calls, nil)
	for i, q := range queues {
		var cmd *redis.Cmd
		if i < len(cmds) {
			cmd = cmds[i]
		}
		recordSettles(byQueue[q], cmd, err)
	}
}

// settleManyCall is the settleManyScript call for matches ms of queue q.
func (s *Store) settleManyCall(q string, ms []*batchMatch, now time.Time) scriptCall {
	c := scriptCall{
		keys: []string{s.relKey(q), s.waitingKey(q)},
		args: []any{fmtTime(now), millis(s.retention)},
	}
	for _, m := range ms {
		c.keys = append(c.keys, s.matchKey(q, m.id))
		c.args = append(c.args, m.id, m.asg, m.server, len(m.tickets))
		for _, id := range m.tickets {
			c.keys = append(c.keys, s.ticketKey(q, id))
			c.args = append(c.args, id)
		}
	}
	return c
}

// recordSettles records the reply of one settleManyScript for its
// matches ms: one list per match, as settleScript answers. pipeErr is the
// error of the pipeline that carried it.
func recordSettles(ms []*batchMatch, cmd *redis.Cmd, pipeErr error) {
	replies, err := scriptReply(cmd, pipeErr)
	for i, m := range ms {
		switch {
		case err != nil:
			m.fail(err)
		case i >= len(replies):
			m.fail(fmt.Errorf("settling: short reply %v", replies))
		default:
			r, _ := replies[i].([]any)
			m.settle(r)
		}
	}
}

// scriptReply answers the list a script run of runEach replied. A command
// left with neither reply nor error (the pipeline got no connection at
// all), or never made, takes the pipeline's error.
func scriptReply(cmd *redis.Cmd, pipeErr error) ([]any, error) {
	if cmd == nil {
		return nil, pipeErr
	}
	v, err := cmd.Result()
	if err != nil {
		return nil, err
	}
	if v == nil && pipeErr != nil {
		return nil, pipeErr
	}
	r, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("unexpected script reply %T", v)
	}
	return r, nil
}

// settle records one match's answer of settleManyScript.
func (m *batchMatch) settle(r []any) {
	switch code(r) {
	case "ok":
	case "failed":
		m.refuse = true
		return
	case "notfound":
		m.gone = true
		m.fail(store.ErrNotFound)
		return
	default:
		m.fail(fmt.Errorf("settling: unexpected reply %v", r))
		return
	}
	raw, _ := r[1].(string)
	if err := json.Unmarshal([]byte(raw), &m.a); err != nil {
		m.fail(fmt.Errorf("decoding assignment: %w", err))
		return
	}
	m.claims = claimsOfPairs(r[2:])
}

// releaseAll is step 3: the players of every settled match, at once. A
// release that fails fails every match it was for, whose repeat finishes
// it.
func (s *Store) releaseAll(ctx context.Context, ms []*batchMatch) {
	var claims []claim
	for _, m := range ms {
		if m.live() {
			claims = append(claims, m.claims...)
		}
	}
	err := s.release(ctx, claims)
	if err == nil {
		return
	}
	for _, m := range ms {
		if m.live() && len(m.claims) > 0 {
			m.fail(err)
		}
	}
}

// finishRefused answers the matches found failed in step 2, or gone: as
// AssignMatch does, it finishes what failing them involves, or undoes a
// placement left without a match.
func (s *Store) finishRefused(ctx context.Context, ms []*batchMatch, now time.Time) {
	for _, m := range ms {
		switch {
		case m.refuse:
			m.err = s.refuseFailed(ctx, m.id, now)
		case m.gone:
			m.err = errors.Join(m.err, s.unplace(ctx, m.id))
		}
	}
}

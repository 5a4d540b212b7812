package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Player claims.
//
// A player's claim <p>{p:<player>} holds the id of their live ticket
// (docs/design.md, invariant 2). Claims live on the players' own slots, apart from the
// tickets, so a ticket and its claims never change in one script. Instead
// every step below keeps one rule true, whatever order other callers'
// steps interleave in and wherever a process dies:
//
//	A claim names a ticket that is live, or one that is missing or
//	terminal. In the second case the claim is stale and anyone may take
//	it over.
//
// CreateTicket
//
//  1. writes the ticket in its queue's slot, with its expiry index entry,
//     before it claims anything. A claim therefore never names a ticket
//     that was not written yet, which is what makes "missing ticket ⇒
//     stale claim" safe; and a ticket left behind by a crash in a later
//     step is searching with an expiry, so the reaper ends it.
//  2. claims each player in turn, in the order of their ids so that two
//     creates for overlapping parties meet at the same first player and do
//     not claim one half each: a script sets the claim if it is free (or
//     already this ticket's) and otherwise answers its owner.
//  3. reads an owner's ticket, on its own slot. If it is missing or
//     terminal the claim is stale, left by a crash between a terminal
//     change and its release (or by a rollback); step 2 runs again,
//     allowed to replace exactly that owner (compare-and-set), so a claim
//     that moved on meanwhile is read again rather than overwritten. If the
//     owner is live, CreateTicket rolls back as DeleteTicket does and
//     answers *PlayerBusyError.
//
// Release, after a ticket turns terminal (cancel, expiry, assignment,
// failure) or is deleted: the status change comes first, in the queue's
// slot; then each claim that still names the ticket is deleted
// (compare-and-delete, one pipeline). A process that dies in between
// leaves stale claims, which the next CreateTicket of those players takes
// over in step 3, and which a repeat of the operation releases.
//
// Claims have no expiry: one must not vanish while its ticket lives. A
// stale claim of a player who never returns stays until they do.

// maxClaimTries bounds how often one claim is tried again after finding a
// stale owner; each try means another caller moved the claim meanwhile.
const maxClaimTries = 10

// finishTimeout bounds the steps a call takes to finish a protocol it has
// started (release, rollback) once its caller has stopped waiting: leaving
// them half done is safe, but finishing them is better.
const finishTimeout = 5 * time.Second

// CreateTicket implements store.Store by the protocol above.
func (s *Store) CreateTicket(ctx context.Context, t contracts.Ticket, expiresAt time.Time) error {
	return s.CreateTicketOnce(ctx, t, expiresAt, store.Idempotency{})
}

// CreateTicketOnce implements store.Store. Step 1 checks and sets the
// idempotency key too; the key lives for the retention from the creation.
func (s *Store) CreateTicketOnce(ctx context.Context, t contracts.Ticket, expiresAt time.Time, idem store.Idempotency) error {
	q, ok := store.QueueOfID(t.ID)
	if !ok || q != t.Queue {
		return fmt.Errorf("creating ticket %s: its id does not name its queue %q", t.ID, t.Queue)
	}
	fields, err := ticketFields(&t, expiresAt)
	if err != nil {
		return fmt.Errorf("creating ticket %s: %w", t.ID, err)
	}
	// ExpireDue finds the queue through this set, so it goes first. It
	// writes nothing of the ticket, so its failure is a clean refusal.
	if err := s.registerQueue(ctx, q); err != nil {
		return fmt.Errorf("creating ticket %s: %w: %w", t.ID, store.ErrUnreachable, err)
	}

	players := t.PlayerIDs()
	slices.Sort(players)
	players = slices.Compact(players)

	// Step 1, and on one server the first claim of step 2 in the same
	// round trip: a pipeline runs in order there, so the claim still
	// comes after the ticket.
	keys := []string{s.ticketKey(q, t.ID), s.expiryKey(q), s.newKey(q)}
	args := []any{t.ID, expiresAt.UnixMilli(), t.CreatedAt.UnixMilli(), "", millis(s.retention), ""}
	if idem.Key != "" {
		keys = append(keys, s.idemKey(q, idem.Key))
		args[3] = t.ID + " " + idem.Fingerprint
	}
	args = append(args, fields...)
	r, claimed, err := s.createAndClaim(ctx, keys, args, t.ID, players[0])
	if err != nil {
		// Even a failed dial does not prove that step 1 never ran: go-redis
		// retries a pipeline whose connection broke, and answers the
		// last try's error, so a first try that wrote the ticket and lost
		// its reply, then a dial to the Redis that died meanwhile, ends
		// in the dial's error (make chaos found such creates answered
		// unavailable whose tickets existed). So it is not ErrUnreachable:
		// the caller must find out whether the ticket is there.
		return fmt.Errorf("creating ticket %s: %w", t.ID, err)
	}
	if code(r) == "replay" {
		if r, err = s.replay(ctx, r, keys, args, idem); err != nil {
			return fmt.Errorf("creating ticket %s: %w", t.ID, err)
		}
	}
	switch code(r) {
	case "ok":
	case "exists":
		st, _ := r[1].(string)
		return fmt.Errorf("creating ticket %s: %w", t.ID, &store.ConflictError{TicketID: t.ID, Status: contracts.Status(st)})
	default:
		return fmt.Errorf("creating ticket %s: unexpected reply %v", t.ID, r)
	}

	// Steps 2 and 3.
	for i, pid := range players {
		if i == 0 && claimed {
			continue
		}
		owner, err := s.claimPlayer(ctx, pid, t.ID)
		if err == nil && owner == "" {
			continue
		}
		var busy error = &store.PlayerBusyError{PlayerID: pid, TicketID: owner}
		if err != nil {
			busy = fmt.Errorf("creating ticket %s: %w", t.ID, err)
		}
		if rerr := s.rollback(ctx, t.ID); rerr != nil {
			// Not a *PlayerBusyError: the ticket may still be stored.
			return fmt.Errorf("creating ticket %s: rolling back after %v: %w", t.ID, busy, rerr)
		}
		return busy
	}
	return nil
}

// replay answers a create whose idempotency key another ticket holds
// (reply r): a *ReplayError naming that ticket if it exists. A ticket
// that is gone was deleted (its create rolled back) or purged, so its key
// is free: step 1 runs again, allowed to take the key from exactly that
// ticket, and its reply is returned.
func (s *Store) replay(ctx context.Context, r []any, keys []string, args []any, idem store.Idempotency) ([]any, error) {
	for range maxClaimTries {
		owner, _ := r[1].(string)
		fingerprint, _ := r[2].(string)
		key, ok := s.ticketKeyOf(owner)
		if !ok {
			return nil, fmt.Errorf("idempotency key held by unknown ticket %q", owner)
		}
		exists, err := s.client.Exists(ctx, key).Result()
		if err != nil {
			return nil, fmt.Errorf("reading ticket %s of the idempotency key: %w", owner, err)
		}
		if exists == 1 {
			return nil, &store.ReplayError{TicketID: owner, Mismatch: fingerprint != idem.Fingerprint}
		}
		args[5] = owner
		if r, err = s.run(ctx, createScript, keys, args...); err != nil || code(r) != "replay" {
			return r, err
		}
	}
	return nil, errors.New("the idempotency key keeps changing hands")
}

// createAndClaim runs step 1 of CreateTicket and answers its reply. On a
// single server it sends the first player's claim in the same pipeline,
// and reports whether that claim is now the ticket's; otherwise, or when
// the claim found an owner (which step 3 must look at), claimed is false
// and step 2 claims that player as usual.
//
// If step 1 failed, the claim may name a ticket that was never written,
// which anyone may take over, so it is not kept: it is released if it is
// still the ticket's and, if Redis only lacked the script, step 1 runs
// again on its own.
func (s *Store) createAndClaim(ctx context.Context, keys []string, args []any, id, player string) (r []any, claimed bool, err error) {
	if _, single := s.client.(*redis.Client); !single {
		r, err := s.run(ctx, createScript, keys, args...)
		return r, false, err
	}
	create := s.evalCmd(ctx, createScript, keys, args...)
	first := s.evalCmd(ctx, claimPlayerScript, []string{s.playerKey(player)}, id, "")
	_ = s.pipe.do(ctx, create, first)
	res, err := create.Result()
	if err != nil {
		if owner, cerr := first.Text(); cerr == nil && owner == "" {
			if rerr := s.release(ctx, []claim{{player: player, ticket: id}}); rerr != nil {
				return nil, false, errors.Join(err, rerr)
			}
		}
		if !redis.HasErrorPrefix(err, "NOSCRIPT") {
			return nil, false, err
		}
		r, err := s.run(ctx, createScript, keys, args...)
		return r, false, err
	}
	r, _ = res.([]any)
	// After "exists" the claim names an existing ticket, as the rule
	// wants; CreateTicket answers the conflict and leaves it. After
	// "replay" it names a ticket that was not written, and is let go.
	owner, err := first.Text()
	took := err == nil && owner == ""
	if code(r) == "replay" && took {
		if err := s.release(ctx, []claim{{player: player, ticket: id}}); err != nil {
			return nil, false, err
		}
	}
	return r, code(r) == "ok" && took, nil
}

// reregisterEvery bounds how long a process trusts that its queue is still
// in the queue set: the set has no expiry, so only a flush or an operator
// removes it, and then the next registration within this time restores it.
const reregisterEvery = time.Minute

// registerQueue adds q to the queue set that ExpireDue walks. The set
// rarely changes, so a process writes it once a minute per queue rather than
// spend a round trip on every create.
func (s *Store) registerQueue(ctx context.Context, q string) error {
	if at, ok := s.registered.Load(q); ok && time.Since(at.(time.Time)) < reregisterEvery {
		return nil
	}
	if err := s.client.SAdd(ctx, s.queuesKey(), q).Err(); err != nil {
		return fmt.Errorf("registering queue %s: %w", q, err)
	}
	s.registered.Store(q, time.Now())
	return nil
}

// claimPlayer claims player for ticket, taking over stale claims; it
// answers the owner if a live ticket holds the claim.
func (s *Store) claimPlayer(ctx context.Context, player, ticket string) (owner string, err error) {
	dead := ""
	for range maxClaimTries {
		owner, err := s.eval(ctx, claimPlayerScript, []string{s.playerKey(player)}, ticket, dead).Text()
		if err != nil {
			return "", fmt.Errorf("claiming player %s: %w", player, err)
		}
		if owner == "" {
			return "", nil
		}
		live, err := s.ticketLive(ctx, owner)
		if err != nil {
			return "", fmt.Errorf("claiming player %s: %w", player, err)
		}
		if live {
			return owner, nil
		}
		dead = owner
	}
	return "", fmt.Errorf("claiming player %s: the claim keeps changing hands", player)
}

// ticketLive reports whether ticket id exists and is not terminal.
func (s *Store) ticketLive(ctx context.Context, id string) (bool, error) {
	key, ok := s.ticketKeyOf(id)
	if !ok {
		return false, nil
	}
	cmd := redis.NewStringCmd(ctx, "hget", key, "status")
	_ = s.pipe.do(ctx, cmd)
	st, err := cmd.Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading ticket %s: %w", id, err)
	}
	return !contracts.Status(st).Terminal(), nil
}

// rollback undoes a CreateTicket that lost a player to a live ticket. It
// finishes even if ctx has ended: the caller is told the create failed.
func (s *Store) rollback(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	return s.DeleteTicket(ctx, id)
}

// DeleteTicket implements store.Store. The ticket goes first, then its
// claims: a crash in between leaves claims naming a missing ticket, which
// are stale.
func (s *Store) DeleteTicket(ctx context.Context, id string) error {
	q, ok := store.QueueOfID(id)
	if !ok {
		return nil // never issued
	}
	keys := append(s.poolKeys(q), s.ticketKey(q, id))
	r, err := s.run(ctx, deleteScript, keys, id)
	if err == nil && len(r) != 2 {
		err = unexpected(r)
	}
	if err != nil {
		return fmt.Errorf("deleting ticket %s: %w", id, err)
	}
	if verdict, _ := r[0].(string); verdict == "conflict" {
		status, _ := r[1].(string)
		return fmt.Errorf("deleting ticket %s: %w", id, &store.ConflictError{TicketID: id, Status: contracts.Status(status)})
	}
	pids, _ := r[1].(string)
	if err := s.release(ctx, claimsOf(id, pids)); err != nil {
		return fmt.Errorf("deleting ticket %s: %w", id, err)
	}
	return nil
}

// claim is a player's claim held by a ticket. owed is the note of the
// ticket in its queue's release log ("<id> <pids>"), if it has one.
type claim struct{ player, ticket, owed string }

// claimsOf lists the claims of ticket id, whose player ids are pids as
// stored in its hash (a JSON list); none if pids is empty or unreadable.
func claimsOf(id, pids string) []claim {
	var players []string
	if pids == "" || json.Unmarshal([]byte(pids), &players) != nil {
		return nil
	}
	out := make([]claim, len(players))
	for i, p := range players {
		out[i] = claim{player: p, ticket: id, owed: id + " " + pids}
	}
	return out
}

// claimsOfPairs lists the claims of the tickets in a script reply of
// alternating ticket ids and player-id lists.
func claimsOfPairs(r []any) []claim {
	var out []claim
	for i := 0; i+1 < len(r); i += 2 {
		id, _ := r[i].(string)
		pids, _ := r[i+1].(string)
		out = append(out, claimsOf(id, pids)...)
	}
	return out
}

// release deletes the claims that still name their ticket, then the
// tickets' notes in the release log. It finishes even if ctx has ended,
// since the change that called for it is made.
func (s *Store) release(ctx context.Context, claims []claim) error {
	_, err := s.releaseCounting(ctx, claims)
	return err
}

// releaseCounting is release, answering how many claims it deleted.
func (s *Store) releaseCounting(ctx context.Context, claims []claim) (int, error) {
	if len(claims) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	calls := make([]scriptCall, 0, len(claims))
	notes := map[string][]any{}
	for i, c := range claims {
		if c.player != "" {
			calls = append(calls, scriptCall{keys: []string{s.playerKey(c.player)}, args: []any{c.ticket}})
		}
		if q, ok := store.QueueOfID(c.ticket); ok && c.owed != "" && (i == 0 || claims[i-1].owed != c.owed) {
			notes[q] = append(notes[q], c.owed)
		}
	}
	forget := func(p redis.Pipeliner) {
		for q, owed := range notes {
			p.SRem(ctx, s.relKey(q), owed...)
		}
	}
	// One server runs a pipeline in the order sent, so the notes can go
	// in the pipeline that releases; a cluster runs each node's part on
	// its own, so there they go only once the claims are gone.
	_, single := s.client.(*redis.Client)
	var then func(redis.Pipeliner)
	if single {
		then = forget
	}
	cmds, err := s.runEach(ctx, releasePlayerScript, calls, then)
	if err != nil {
		return 0, fmt.Errorf("releasing players: %w", err)
	}
	if !single && len(notes) > 0 {
		if _, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error { forget(p); return nil }); err != nil {
			return 0, fmt.Errorf("releasing players: forgetting the release log: %w", err)
		}
	}
	n := 0
	for _, c := range cmds {
		if v, _ := c.Int(); v == 1 {
			n++
		}
	}
	return n, nil
}

// releaseBatch bounds the notes one ReleaseStale call reads per queue.
const releaseBatch = 500

// ReleaseStale implements store.Store. The release log of each queue holds
// the notes of tickets whose players are owed a release: a script that
// ends or deletes a ticket adds the note, the caller forgets it once it
// has released them. A note still there belongs to a caller that died in
// between, or to one releasing right now; releasing again is harmless in
// both cases, since a claim goes only while it still names a ticket that
// can never be live again.
func (s *Store) ReleaseStale(ctx context.Context, limit int) (int, error) {
	queues, err := s.client.SMembers(ctx, s.queuesKey()).Result()
	if err != nil {
		return 0, fmt.Errorf("releasing stale claims: reading queues: %w", err)
	}
	slices.Sort(queues)
	released := 0
	for _, q := range queues {
		if limit <= 0 {
			break
		}
		notes, err := s.client.SRandMemberN(ctx, s.relKey(q), int64(min(limit, releaseBatch))).Result()
		if err != nil {
			return released, fmt.Errorf("releasing stale claims of queue %s: %w", q, err)
		}
		limit -= len(notes)
		var claims []claim
		for _, note := range notes {
			id, pids, _ := strings.Cut(note, " ")
			cs := claimsOf(id, pids)
			if len(cs) == 0 {
				// Unreadable: nothing to release, and kept it would be read
				// again on every call.
				cs = []claim{{ticket: id, owed: note}}
			}
			claims = append(claims, cs...)
		}
		n, err := s.releaseCounting(ctx, claims)
		released += n
		if err != nil {
			return released, fmt.Errorf("releasing stale claims of queue %s: %w", q, err)
		}
	}
	return released, nil
}

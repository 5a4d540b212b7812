package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Acceptance. A match that asks for it is stored 'accepting' and indexed
// in <p>{q}:accepting by its deadline; its tickets are
// pending_acceptance. Every change to it is one script on the queue's
// slot (answerScript, dissolveScript), given the match's tickets, which
// the caller reads first and the script checks; the players of the
// tickets a script cancels are released after it, as every release is
// (players.go).

// maxAnswerReads bounds how often an answer reads the match again because
// it changed under it.
const maxAnswerReads = 5

// AnswerMatch implements store.Store.
func (s *Store) AnswerMatch(ctx context.Context, id string, accept bool, now time.Time) (store.Answer, error) {
	for range maxAnswerReads {
		a, done, err := s.answer(ctx, id, accept, now)
		if done || err != nil {
			return a, err
		}
	}
	return store.Answer{}, fmt.Errorf("answering for ticket %s: the match keeps changing", id)
}

// answer makes one try of AnswerMatch; done is false when the script found
// the ticket or its match changed since they were read.
func (s *Store) answer(ctx context.Context, id string, accept bool, now time.Time) (a store.Answer, done bool, err error) {
	t, err := s.Ticket(ctx, id)
	if err != nil {
		return store.Answer{}, true, fmt.Errorf("answering for ticket %s: %w", id, err)
	}
	conflict := func() (store.Answer, bool, error) {
		return store.Answer{Ticket: t}, true, fmt.Errorf("answering for ticket %s: %w", id,
			&store.ConflictError{TicketID: id, Status: t.Status})
	}
	switch {
	case !accept && t.Status == contracts.StatusCancelled && t.Reason == contracts.ReasonDeclined:
		return store.Answer{Ticket: t}, true, nil
	case accept && t.Match != nil && (t.Status == contracts.StatusMatched || t.Status == contracts.StatusAssigned):
		return s.answeredBefore(ctx, t)
	case t.Status != contracts.StatusPendingAcceptance || t.Match == nil:
		return conflict()
	}
	m, tickets, err := s.matchTickets(ctx, t.Queue, t.Match.ID)
	if err != nil {
		return store.Answer{}, true, fmt.Errorf("answering for ticket %s: %w", id, err)
	}
	accepted, err := json.Marshal(contracts.Acceptance{Deadline: m.AcceptDeadline, Accepted: true})
	if err != nil {
		return store.Answer{}, true, fmt.Errorf("answering for ticket %s: %w", id, err)
	}
	answer := "0"
	if accept {
		answer = "1"
	}
	keys, args := s.acceptanceCall(m, tickets, now)
	args = append(args, id, answer, accepted)
	for _, tid := range m.TicketIDs {
		args = append(args, tid)
	}
	r, err := s.run(ctx, answerScript, keys, args...)
	if err != nil {
		return store.Answer{}, true, fmt.Errorf("answering for ticket %s: %w", id, err)
	}
	switch code(r) {
	case "stale":
		return store.Answer{}, false, nil
	case "accepted":
	case "ready":
		a.Ready = &m
	case "declined":
		if len(r) != 3 {
			return store.Answer{}, true, fmt.Errorf("answering for ticket %s: unexpected reply %v", id, r)
		}
		if a.Requeued, err = s.requeued(ctx, r[1], r[2]); err != nil {
			return store.Answer{}, true, fmt.Errorf("answering for ticket %s: %w", id, err)
		}
	default:
		return store.Answer{}, true, fmt.Errorf("answering for ticket %s: unexpected reply %v", id, r)
	}
	if a.Ticket, err = s.Ticket(ctx, id); err != nil {
		return a, true, fmt.Errorf("answering for ticket %s: %w", id, err)
	}
	return a, true, nil
}

// answeredBefore answers an acceptance by ticket t, which has gone on
// from pending_acceptance: nothing changes, and while its match waits for
// a server the answer carries the match again.
func (s *Store) answeredBefore(ctx context.Context, t contracts.Ticket) (store.Answer, bool, error) {
	raw, err := s.client.HMGet(ctx, s.matchKey(t.Queue, t.Match.ID), "status", "match", "accept_by").Result()
	if err != nil {
		return store.Answer{}, true, fmt.Errorf("answering for ticket %s: %w", t.ID, err)
	}
	if by, _ := raw[2].(string); by == "" {
		// The match never asked: the ticket was not offered one.
		return store.Answer{Ticket: t}, true, fmt.Errorf("answering for ticket %s: %w", t.ID,
			&store.ConflictError{TicketID: t.ID, Status: t.Status})
	}
	a := store.Answer{Ticket: t}
	if st, _ := raw[0].(string); st == "pending" {
		body, _ := raw[1].(string)
		var m contracts.Match
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			return store.Answer{}, true, fmt.Errorf("answering for ticket %s: decoding its match: %w", t.ID, err)
		}
		a.Ready = &m
	}
	return a, true, nil
}

// matchTickets reads match id of queue and its ticket list as stored.
func (s *Store) matchTickets(ctx context.Context, queue, id string) (contracts.Match, string, error) {
	raw, err := s.client.HMGet(ctx, s.matchKey(queue, id), "match", "tickets").Result()
	if err != nil {
		return contracts.Match{}, "", fmt.Errorf("reading match %s: %w", id, err)
	}
	body, _ := raw[0].(string)
	tickets, _ := raw[1].(string)
	if body == "" {
		return contracts.Match{}, "", fmt.Errorf("reading match %s: %w", id, store.ErrNotFound)
	}
	var m contracts.Match
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		return contracts.Match{}, "", fmt.Errorf("decoding match %s: %w", id, err)
	}
	return m, tickets, nil
}

// acceptanceCall lays out the keys and first arguments of the acceptance
// scripts for match m, whose ticket list reads tickets.
func (s *Store) acceptanceCall(m contracts.Match, tickets string, now time.Time) ([]string, []any) {
	keys := append(s.poolKeys(m.Queue), s.matchKey(m.Queue, m.ID), s.waitingKey(m.Queue), s.acceptingKey(m.Queue))
	for _, tid := range m.TicketIDs {
		keys = append(keys, s.ticketKey(m.Queue, tid))
	}
	return keys, []any{fmtTime(now), now.UnixMilli(), millis(s.retention), m.ID, tickets}
}

// requeued releases the players of the tickets a dissolve cancelled
// (pairs: id, players) and reads the tickets it sent back to searching
// (ids).
func (s *Store) requeued(ctx context.Context, ids, pairs any) ([]contracts.Ticket, error) {
	p, _ := pairs.([]any)
	if err := s.release(ctx, claimsOfPairs(p)); err != nil {
		return nil, err
	}
	l, _ := ids.([]any)
	out := make([]contracts.Ticket, 0, len(l))
	for _, v := range l {
		id, _ := v.(string)
		t, err := s.Ticket(ctx, id)
		if err != nil {
			return out, err
		}
		out = append(out, t)
	}
	return out, nil
}

// ExpireAcceptances implements store.Store: it visits each queue's index
// of accepting matches for those due, and dissolves each with its own
// script.
func (s *Store) ExpireAcceptances(ctx context.Context, now time.Time, limit int) ([]contracts.Ticket, []string, error) {
	queues, err := s.client.SMembers(ctx, s.queuesKey()).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("expiring acceptances: reading queues: %w", err)
	}
	var (
		requeued []contracts.Ticket
		timedOut []string
	)
	for _, q := range queues {
		if limit <= 0 {
			break
		}
		due, err := s.client.ZRangeByScore(ctx, s.acceptingKey(q), &redis.ZRangeBy{
			Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(limit),
		}).Result()
		if err != nil {
			return requeued, timedOut, fmt.Errorf("expiring acceptances of queue %s: %w", q, err)
		}
		for _, id := range due {
			limit--
			r, c, err := s.dissolveDue(ctx, q, id, now)
			if err != nil {
				return requeued, timedOut, fmt.Errorf("expiring acceptances of queue %s: %w", q, err)
			}
			requeued, timedOut = append(requeued, r...), append(timedOut, c...)
		}
	}
	return requeued, timedOut, nil
}

// dissolveDue times out the acceptance of match id of queue.
func (s *Store) dissolveDue(ctx context.Context, queue, id string, now time.Time) ([]contracts.Ticket, []string, error) {
	m, tickets, err := s.matchTickets(ctx, queue, id)
	if errors.Is(err, store.ErrNotFound) {
		// Purged: only its index entry is left.
		return nil, nil, s.client.ZRem(ctx, s.acceptingKey(queue), id).Err()
	}
	if err != nil {
		return nil, nil, err
	}
	keys, args := s.acceptanceCall(m, tickets, now)
	args = append(args, now.UnixMilli())
	for _, tid := range m.TicketIDs {
		args = append(args, tid)
	}
	r, err := s.run(ctx, dissolveScript, keys, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("dissolving match %s: %w", id, err)
	}
	switch code(r) {
	case "stale", "early":
		return nil, nil, nil
	case "dissolved":
	default:
		return nil, nil, fmt.Errorf("dissolving match %s: unexpected reply %v", id, r)
	}
	if len(r) != 3 {
		return nil, nil, fmt.Errorf("dissolving match %s: unexpected reply %v", id, r)
	}
	var cancelled []string
	pairs, _ := r[2].([]any)
	for i := 0; i < len(pairs); i += 2 {
		tid, _ := pairs[i].(string)
		cancelled = append(cancelled, tid)
	}
	requeued, err := s.requeued(ctx, r[1], r[2])
	if err != nil {
		return requeued, cancelled, fmt.Errorf("dissolving match %s: %w", id, err)
	}
	return requeued, cancelled, nil
}

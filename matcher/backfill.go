package matcher

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Backfill: a running match whose server asked for players
// (POST /v1/servers/{id}/matches/{match_id}/backfill) is filled before
// any new match is formed. Each batch reads its queue's open requests
// once; every ticket of the batch, the longest-waiting first, takes a seat
// in the oldest request it fits by the queue's rules, and only the
// tickets left over go on to look for a match. A ticket in the pool meets
// a request when its retry message next comes round, within RetryDelay.

// backfill seats what it can of the round's tickets in the queue's open
// backfill requests.
func (r *round) backfill(ctx context.Context) {
	reqs, err := r.m.cfg.Store.Backfills(ctx, r.q.Name)
	if err != nil {
		// The tickets look for new matches instead; the requests wait
		// for the next batch.
		r.m.cfg.Log.Debug("reading backfill requests", "queue", r.q.Name, "err", err)
		return
	}
	for _, s := range r.live {
		if len(reqs) == 0 {
			return
		}
		if s.settled {
			continue
		}
		for i := range reqs {
			if team, ok := seat(r.q, &reqs[i], s.entry, r.now); ok && r.fill(ctx, s, &reqs[i], team) {
				break
			}
		}
		reqs = slices.DeleteFunc(reqs, func(b contracts.Backfill) bool { return b.Seats() == 0 })
	}
}

// fill seats s in team of b, and reports whether s is done with (seated,
// found gone from searching, or failed).
func (r *round) fill(ctx context.Context, s *searcher, b *contracts.Backfill, team int) bool {
	ref := contracts.MatchRef{ID: b.MatchID, Region: b.Region, Teams: make([][]string, len(b.Teams))}
	for i, t := range b.Teams {
		ref.Teams[i] = slices.Clone(t)
	}
	for _, p := range s.entry.Party {
		ref.Teams[team] = append(ref.Teams[team], p.ID)
	}
	_, err := r.m.cfg.Store.FillBackfill(ctx, b.MatchID, s.ticket.ID, team, ref, r.now)
	var conflict *store.ConflictError
	switch {
	case err == nil:
		b.Open[team] -= s.entry.Players
		b.Teams = ref.Teams
		s.settled = true
		r.m.cfg.Metrics.Assignments.WithLabelValues(r.q.Name, "backfilled").Inc()
		r.m.cfg.Metrics.TicketsFinished.WithLabelValues(r.q.Name, string(contracts.StatusAssigned)).Inc()
		r.m.cfg.Metrics.WaitSeconds.WithLabelValues(r.q.Name).Observe(r.now.Sub(s.entry.CreatedAt).Seconds())
		return true
	case errors.Is(err, store.ErrNoCapacity):
		// Filled or withdrawn meanwhile: no seat of this team is left to
		// anyone of this batch.
		b.Open[team] = 0
		return false
	case errors.As(err, &conflict) && conflict.TicketID == s.ticket.ID:
		s.settled = true // cancelled, or matched by another matcher
		return true
	}
	r.failed(s, fmt.Errorf("filling the backfill of match %s: %w", b.MatchID, err))
	return true
}

// seat answers the team of b that ticket e may fill under q's rules at
// now: one with seats for the whole party, the one with the most; a skill
// gap within the window of the longer wait of the two (the ticket's, or
// the request's since it was made); the request's region taken by the
// ticket's latencies.
func seat(q *queues.Queue, b *contracts.Backfill, e store.PoolEntry, now time.Time) (int, bool) {
	waited := now.Sub(e.CreatedAt)
	if math.Abs(e.Skill-b.Skill) > q.Skill.At(max(waited, now.Sub(b.CreatedAt))) {
		return 0, false
	}
	if b.Region != "" && !q.TakesRegion(e.Latencies, b.Region, waited) {
		return 0, false
	}
	team := -1
	for t, open := range b.Open {
		if open >= e.Players && (team < 0 || open > b.Open[team]) {
			team = t
		}
	}
	return team, team >= 0
}

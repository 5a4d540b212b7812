package matcher

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/store"
)

// ReaperStore is what the reaper needs of the shared state.
type ReaperStore interface {
	ExpireDue(ctx context.Context, now time.Time, limit int) ([]string, error)
	Unannounced(ctx context.Context, before, now time.Time, limit int) ([]contracts.Ticket, error)
	ReleaseStale(ctx context.Context, limit int) (int, error)
	OverdueMatches(ctx context.Context, before, now time.Time, limit int) ([]contracts.Match, error)
	ExpireAcceptances(ctx context.Context, now time.Time, limit int) ([]contracts.Ticket, []string, error)
	FinishFills(ctx context.Context, limit int) (int, error)
}

// Reaper repairs, every Interval, what processes that died mid-step left
// behind. Every replica may run one; each repair is safe to race.
//
//   - A front that died between storing a ticket and publishing it leaves
//     a searching ticket that no matcher will ever see: once no matcher
//     has taken it up for OrphanAfter, the reaper publishes it again. A
//     ticket whose message is only slow is then announced twice, which
//     costs a second message and matches nobody twice.
//   - A ticket whose search outlived its queue's max wait without any
//     message left to expire it (the same orphan, never republished, or
//     lost otherwise) is expired Grace after its max wait; normally its own
//     retry message expires it first.
//   - A process that died between ending a ticket and releasing its
//     players leaves their claims naming the ended ticket: the reaper
//     releases them.
//   - A match still waiting for a server Grace after its assignment
//     deadline has lost the message that was to place or fail it (a Redis
//     that lost its last second of writes in a crash forgets that it was
//     placed, while the assigner has acknowledged the message): the reaper
//     sends it to the assigners again, which place it or fail it.
//   - A process that died between seating a ticket in a backfill and
//     adding it to the server's allocation leaves the allocation short of
//     the party: the reaper adds it (FinishFills).
//
// It also keeps a promise of its own: a match that asked its players to
// accept and was not accepted by its deadline falls through (the tickets
// that did not accept end cancelled, accept_timeout) and the reaper
// announces the tickets that go back to searching.
type Reaper struct {
	Store       ReaperStore
	Publisher   Publisher
	Interval    time.Duration
	Grace       time.Duration
	OrphanAfter time.Duration
	Metrics     *metrics.Metrics
	Log         *slog.Logger
	Now         func() time.Time
}

// reapBatch bounds one sweep; a backlog drains over successive sweeps.
const reapBatch = 500

// Run sweeps every Interval until ctx ends.
func (r *Reaper) Run(ctx context.Context) error {
	tick := time.NewTicker(r.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		r.sweep(ctx)
	}
}

// sweep makes one round of every repair, each on its own: a failing one
// does not hold up the others.
func (r *Reaper) sweep(ctx context.Context) {
	now := r.Now()
	warn := func(doing string, err error) {
		if ctx.Err() == nil {
			r.Log.Warn(doing, "err", err)
		}
	}
	if n, err := r.republish(ctx, now); err != nil {
		warn("announcing orphaned tickets again", err)
	} else if n > 0 {
		r.Metrics.Repairs.WithLabelValues("republished").Add(float64(n))
		r.Log.Info("announced orphaned tickets again", "count", n)
	}
	ids, err := r.Store.ExpireDue(ctx, now.Add(-r.Grace), reapBatch)
	if err != nil {
		warn("reaping expired tickets", err)
	} else if len(ids) > 0 {
		for _, id := range ids {
			q, _ := store.QueueOfID(id)
			r.Metrics.TicketsFinished.WithLabelValues(q, string(contracts.StatusExpired)).Inc()
		}
		r.Log.Info("expired orphaned tickets", "count", len(ids))
	}
	if n, err := r.timeOutAcceptances(ctx, now); err != nil {
		warn("timing out acceptances", err)
	} else if n > 0 {
		r.Log.Info("timed out the acceptance of matches", "tickets", n)
	}
	if n, err := r.resend(ctx, now); err != nil {
		warn("sending overdue matches again", err)
	} else if n > 0 {
		r.Metrics.Repairs.WithLabelValues("match_resent").Add(float64(n))
		r.Log.Info("sent overdue matches to the assigners again", "count", n)
	}
	if n, err := r.Store.FinishFills(ctx, reapBatch); err != nil {
		warn("finishing backfill fills", err)
	} else if n > 0 {
		// Some may be fills under way, not left behind: finishing one
		// twice is harmless, so the count is an upper bound.
		r.Metrics.Repairs.WithLabelValues("backfill_fill").Add(float64(n))
	}
	n, err := r.Store.ReleaseStale(ctx, reapBatch)
	if err != nil {
		warn("releasing stale player claims", err)
	} else if n > 0 {
		// Some may be releases that were under way, not left behind:
		// releasing twice is harmless, so the count is an upper bound.
		r.Metrics.Repairs.WithLabelValues("stale_claim").Add(float64(n))
		r.Log.Debug("released stale player claims", "count", n)
	}
}

// resend sends the matches overdue by Grace to the assigners again, and
// reports how many.
func (r *Reaper) resend(ctx context.Context, now time.Time) (int, error) {
	if r.Publisher == nil {
		return 0, nil
	}
	overdue, err := r.Store.OverdueMatches(ctx, now.Add(-r.Grace), now, reapBatch)
	if err != nil || len(overdue) == 0 {
		return 0, err
	}
	bodies := make([][]byte, len(overdue))
	for i, m := range overdue {
		if bodies[i], err = contracts.EncodeMatchMessage(m, 0); err != nil {
			return 0, err
		}
	}
	if err := r.Publisher.Publish(ctx, contracts.MatchQueue, bodies...); err != nil {
		return 0, fmt.Errorf("publishing %d matches: %w", len(bodies), err)
	}
	return len(overdue), nil
}

// timeOutAcceptances dissolves the matches whose acceptance deadline has
// passed, announces the tickets that search again, and reports how many
// tickets it cancelled. Should the announcement fail, they are announced
// again as orphans (republish), as the dissolve left them unannounced.
func (r *Reaper) timeOutAcceptances(ctx context.Context, now time.Time) (int, error) {
	requeued, timedOut, err := r.Store.ExpireAcceptances(ctx, now, reapBatch)
	for _, id := range timedOut {
		q, _ := store.QueueOfID(id)
		r.Metrics.TicketsFinished.WithLabelValues(q, string(contracts.StatusCancelled)).Inc()
		r.Metrics.Acceptance.WithLabelValues(q, "timed_out").Inc()
	}
	for _, t := range requeued {
		r.Metrics.Acceptance.WithLabelValues(t.Queue, "requeued").Inc()
	}
	if err != nil {
		return len(timedOut), err
	}
	if r.Publisher != nil {
		if err := Announce(ctx, r.Publisher, requeued); err != nil {
			return len(timedOut), err
		}
	}
	return len(timedOut), nil
}

// Announce publishes tickets to the matchers, those of each queue in as
// few messages as they fit: the tickets that a match falling through sent
// back to searching.
func Announce(ctx context.Context, p Publisher, tickets []contracts.Ticket) error {
	byQueue := map[string][]contracts.TicketTry{}
	for _, t := range tickets {
		byQueue[t.Queue] = append(byQueue[t.Queue], contracts.TicketTry{Ticket: t})
	}
	for q, tries := range byQueue {
		bodies, err := encodeTickets(tries)
		if err != nil {
			return err
		}
		if err := p.Publish(ctx, contracts.TicketQueue(q), bodies...); err != nil {
			return fmt.Errorf("publishing %d tickets of queue %s: %w", len(tries), q, err)
		}
	}
	return nil
}

// republish announces again the tickets no matcher has taken up for
// OrphanAfter, and reports how many.
func (r *Reaper) republish(ctx context.Context, now time.Time) (int, error) {
	if r.OrphanAfter <= 0 || r.Publisher == nil {
		return 0, nil
	}
	orphans, err := r.Store.Unannounced(ctx, now.Add(-r.OrphanAfter), now, reapBatch)
	if err != nil {
		return 0, err
	}
	// Unannounced has marked them returned: one that fails to go out here
	// is returned again an interval later.
	if err := Announce(ctx, r.Publisher, orphans); err != nil {
		return 0, err
	}
	return len(orphans), nil
}

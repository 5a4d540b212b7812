package matcher

import (
	"context"
	"log/slog"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/metrics"
)

// Reaper expires tickets whose search outlived their queue's max wait
// without any message left to do it: a front that died between storing a
// ticket and publishing it leaves such a ticket. Normally a ticket's own
// retry message expires it first; the reaper waits Grace longer so that it
// only picks up what that path missed. Every replica may run one.
type Reaper struct {
	Store interface {
		ExpireDue(ctx context.Context, now time.Time, limit int) ([]string, error)
	}
	Interval time.Duration
	Grace    time.Duration
	Metrics  *metrics.Metrics
	Log      *slog.Logger
	Now      func() time.Time
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
		ids, err := r.Store.ExpireDue(ctx, r.Now().Add(-r.Grace), reapBatch)
		if err != nil {
			if ctx.Err() == nil {
				r.Log.Warn("reaping expired tickets", "err", err)
			}
			continue
		}
		if len(ids) > 0 {
			r.Metrics.TicketsFinished.WithLabelValues("", string(contracts.StatusExpired)).Add(float64(len(ids)))
			r.Log.Info("expired orphaned tickets", "count", len(ids))
		}
	}
}

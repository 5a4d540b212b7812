package matcher

import (
	"math"
	"time"

	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

// partySkill is the skill a party is matched by: the mean of its members.
func partySkill(skills []float64) float64 {
	if len(skills) == 0 {
		return 0
	}
	var sum float64
	for _, s := range skills {
		sum += s
	}
	return sum / float64(len(skills))
}

// acceptableGap is the widest skill gap two tickets accept between them. The
// ticket that has waited longer has the wider window, and it decides: the
// longest-waiting ticket has priority, so a newcomer may be paired with it
// at a gap the newcomer alone would not yet accept.
func acceptableGap(q *queues.Queue, a, b time.Time, now time.Time) float64 {
	oldest := a
	if b.Before(a) {
		oldest = b
	}
	return q.Skill.At(now.Sub(oldest))
}

// sharedRegion picks the region where a match of these tickets is played:
// a region every ticket that states latencies lists, under the queue's
// latency limit when it has one, with the lowest worst latency; ties go to
// the region name first in order so the choice is deterministic. Tickets
// without latencies accept any region. It reports false when no region
// suits everyone, and "" when no ticket states latencies (any region).
func sharedRegion(q *queues.Queue, latencies ...map[string]float64) (string, bool) {
	var (
		best      string
		bestWorst = math.Inf(1)
		anyStated bool
	)
	for _, l := range latencies {
		if len(l) == 0 {
			continue
		}
		anyStated = true
		for region := range l {
			worst, ok := worstLatency(q, region, latencies)
			if !ok {
				continue
			}
			if worst < bestWorst || (worst == bestWorst && region < best) {
				best, bestWorst = region, worst
			}
		}
	}
	if !anyStated {
		return "", true
	}
	return best, best != ""
}

func worstLatency(q *queues.Queue, region string, latencies []map[string]float64) (float64, bool) {
	worst := 0.0
	for _, l := range latencies {
		if len(l) == 0 {
			continue
		}
		ms, ok := l[region]
		if !ok || (q.MaxLatencyMS > 0 && ms > q.MaxLatencyMS) {
			return 0, false
		}
		worst = max(worst, ms)
	}
	return worst, true
}

// bestOpponent chooses, among the pool candidates, the one a ticket should
// be matched with: compatible in region, inside the accepted skill gap, and
// of the nearest skill; equal gaps go to the one that has waited longer.
func bestOpponent(q *queues.Queue, self store.PoolEntry, cands []store.PoolEntry, exclude map[string]bool, now time.Time) (store.PoolEntry, string, bool) {
	var (
		best       store.PoolEntry
		bestRegion string
		bestGap    = math.Inf(1)
		found      bool
	)
	for _, c := range cands {
		if c.TicketID == self.TicketID || exclude[c.TicketID] {
			continue
		}
		gap := math.Abs(c.Skill - self.Skill)
		if gap > acceptableGap(q, self.CreatedAt, c.CreatedAt, now) {
			continue
		}
		region, ok := sharedRegion(q, self.Latencies, c.Latencies)
		if !ok {
			continue
		}
		if gap < bestGap || (gap == bestGap && c.CreatedAt.Before(best.CreatedAt)) {
			best, bestRegion, bestGap, found = c, region, gap, true
		}
	}
	return best, bestRegion, found
}

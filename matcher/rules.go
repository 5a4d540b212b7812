package matcher

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

// The matching rules, free of any I/O so that the simulator and the tests
// run them as the matcher does.
//
// A match is a set of tickets that
//   - holds exactly the queue's players (or, in a free-for-all, between its
//     minimum and maximum once the oldest ticket has waited the fill wait),
//   - has a skill spread (highest minus lowest party skill) within the
//     skill window of its longest-waiting ticket, so the ticket that has
//     waited longest decides how wide the search may go,
//   - shares a region that every ticket stating latencies reaches under its
//     own latency limit (which widens with its own wait), and
//   - can be split into the queue's teams without splitting a party.

// selection is a candidate match under construction.
type selection struct {
	entries []store.PoolEntry
	players int
	lo, hi  float64   // party skill range
	oldest  time.Time // creation of the longest-waiting ticket
}

func (s *selection) with(e store.PoolEntry) selection {
	n := selection{
		entries: append(slices.Clip(s.entries), e),
		players: s.players + e.Players,
		lo:      math.Min(s.lo, e.Skill),
		hi:      math.Max(s.hi, e.Skill),
		oldest:  s.oldest,
	}
	if e.CreatedAt.Before(n.oldest) {
		n.oldest = e.CreatedAt
	}
	return n
}

// findMatch chooses a match for anchor among the pool candidates: it takes
// candidates nearest in skill first (equal distances: longest waiting
// first) while each keeps every rule above, until the match is full. It
// returns the tickets, the region ("" when no ticket states latencies) and
// the teams as indexes into the returned entries.
func findMatch(q *queues.Queue, anchor store.PoolEntry, cands []store.PoolEntry, exclude map[string]bool, now time.Time) ([]store.PoolEntry, string, [][]int, bool) {
	ordered := make([]store.PoolEntry, 0, len(cands))
	for _, c := range cands {
		if c.TicketID != anchor.TicketID && !exclude[c.TicketID] && c.Players <= q.TeamSize {
			ordered = append(ordered, c)
		}
	}
	slices.SortStableFunc(ordered, func(a, b store.PoolEntry) int {
		if c := cmp.Compare(math.Abs(a.Skill-anchor.Skill), math.Abs(b.Skill-anchor.Skill)); c != 0 {
			return c
		}
		return a.CreatedAt.Compare(b.CreatedAt)
	})
	full := q.PlayersPerMatch()
	sel := selection{entries: []store.PoolEntry{anchor}, players: anchor.Players, lo: anchor.Skill, hi: anchor.Skill, oldest: anchor.CreatedAt}
	for _, c := range ordered {
		if sel.players == full {
			break
		}
		if sel.players+c.Players > full {
			continue
		}
		next := sel.with(c)
		if next.hi-next.lo > q.Skill.At(now.Sub(next.oldest)) {
			continue
		}
		if _, ok := sharedRegion(q, next.entries, now); !ok {
			continue
		}
		if _, ok := formTeams(q, next.entries, false); !ok {
			continue
		}
		sel = next
	}
	if !complete(q, &sel, now) {
		return nil, "", nil, false
	}
	region, _ := sharedRegion(q, sel.entries, now)
	teams, _ := formTeams(q, sel.entries, true)
	return sel.entries, region, teams, true
}

// complete reports whether sel may start as a match.
func complete(q *queues.Queue, sel *selection, now time.Time) bool {
	if sel.players == q.PlayersPerMatch() {
		return true
	}
	// Only a free-for-all (teams of one) may start short of full.
	return q.TeamSize == 1 && sel.players >= q.MinTeamsPerMatch() && now.Sub(sel.oldest) >= q.FillWait
}

// sharedRegion picks the region where a match of these tickets is played:
// one that every ticket stating latencies lists under its latency limit,
// with the lowest worst latency; ties go to the region name first in order.
// Tickets without latencies accept any region. It reports false when no
// region suits everyone, and "" (any region) when no ticket states latencies.
func sharedRegion(q *queues.Queue, entries []store.PoolEntry, now time.Time) (string, bool) {
	var (
		best      string
		bestWorst = math.Inf(1)
		anyStated bool
	)
	for _, e := range entries {
		if len(e.Latencies) == 0 {
			continue
		}
		anyStated = true
		for region := range e.Latencies {
			worst, ok := worstLatency(q, region, entries, now)
			if ok && (worst < bestWorst || (worst == bestWorst && region < best)) {
				best, bestWorst = region, worst
			}
		}
		break // every acceptable region is among the first stater's
	}
	if !anyStated {
		return "", true
	}
	return best, best != ""
}

func worstLatency(q *queues.Queue, region string, entries []store.PoolEntry, now time.Time) (float64, bool) {
	worst := 0.0
	for _, e := range entries {
		if len(e.Latencies) == 0 {
			continue
		}
		ms, ok := e.Latencies[region]
		if !ok || ms > q.LatencyLimit(now.Sub(e.CreatedAt)) {
			return 0, false
		}
		worst = max(worst, ms)
	}
	return worst, true
}

// teamSearchBudget bounds the exact team search; past it the best split
// found so far stands (the greedy first descent always finds one if any
// exists in the explored part).
const teamSearchBudget = 20_000

// formTeams splits the entries (parties) into the queue's teams without
// splitting a party and with no team over TeamSize, minimising the gap
// between the strongest and the weakest team's skill total. A free-for-all
// puts every ticket on its own team. It reports false if no split fits.
// Teams are returned as indexes into entries. With balance false it stops at
// the first split that fits: a feasibility check.
func formTeams(q *queues.Queue, entries []store.PoolEntry, balance bool) ([][]int, bool) {
	if q.TeamSize == 1 {
		teams := make([][]int, len(entries))
		for i := range entries {
			teams[i] = []int{i}
		}
		return teams, true
	}
	// Largest parties first: they constrain the split most, and placing
	// them early prunes the search soonest.
	order := make([]int, len(entries))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		if c := cmp.Compare(entries[b].Players, entries[a].Players); c != 0 {
			return c
		}
		return cmp.Compare(entries[b].Skill, entries[a].Skill)
	})
	var (
		size     = make([]int, q.Teams)
		total    = make([]float64, q.Teams)
		assign   = make([]int, len(entries))
		best     []int
		bestGap  = math.Inf(1)
		budget   = teamSearchBudget
		teamsize = q.TeamSize
	)
	var place func(k int)
	place = func(k int) {
		if budget--; budget < 0 || bestGap == 0 || (!balance && best != nil) {
			return
		}
		if k == len(order) {
			lo, hi := slices.Min(total), slices.Max(total)
			if hi-lo < bestGap {
				bestGap = hi - lo
				best = slices.Clone(assign)
			}
			return
		}
		i := order[k]
		e := &entries[i]
		// Fill the weakest team first, so the first descent is the
		// greedy balance and later ones improve on it.
		tried := make([]int, 0, q.Teams)
		for range q.Teams {
			t := -1
			for j := range q.Teams {
				if size[j]+e.Players <= teamsize && !slices.Contains(tried, j) && (t < 0 || total[j] < total[t]) {
					t = j
				}
			}
			if t < 0 {
				break
			}
			tried = append(tried, t)
			// Empty teams are interchangeable: trying one is enough.
			if size[t] == 0 && slices.ContainsFunc(tried[:len(tried)-1], func(j int) bool { return size[j] == 0 }) {
				continue
			}
			size[t] += e.Players
			total[t] += e.Skill * float64(e.Players)
			assign[i] = t
			place(k + 1)
			size[t] -= e.Players
			total[t] -= e.Skill * float64(e.Players)
		}
	}
	place(0)
	if best == nil {
		return nil, false
	}
	teams := make([][]int, q.Teams)
	for i, t := range best {
		teams[t] = append(teams[t], i)
	}
	return teams, true
}

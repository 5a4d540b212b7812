package matcher

import (
	"cmp"
	"math"
	"math/bits"
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
//     own latency limit (which widens with its own wait) and, until it has
//     waited the queue's region wait, is its best region, and
//   - can be split into the queue's teams without splitting a party, with
//     team means (players' own skills) no further apart than the queue's
//     balance window of its longest-waiting ticket allows.
//
// Among the matches that keep these rules, a team queue prefers one whose
// teams are fair (balancedAlternative).

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
// first) while each keeps every rule above, until the match is full. In a
// team queue whose nearest match cannot be split into fair teams it also
// tries a few other selections within reach (see balancedAlternative). It
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
	start := selection{entries: []store.PoolEntry{anchor}, players: anchor.Players, lo: anchor.Skill, hi: anchor.Skill, oldest: anchor.CreatedAt}
	sel := fill(q, start, ordered, nil, now)
	if !complete(q, &sel, now) {
		return nil, "", nil, false
	}
	var teams [][]int
	if q.TeamSize > 1 {
		// The split that scored the chosen selection is its teams.
		var ok bool
		if sel, teams, ok = balancedAlternative(q, start, sel, ordered, now); !ok {
			return nil, "", nil, false
		}
	} else {
		teams, _ = formTeams(q, sel.entries, true)
	}
	region, _ := sharedRegion(q, sel.entries, now)
	return sel.entries, region, teams, true
}

// fill adds the candidates of ordered to sel in order, each one that
// keeps every rule, until the match is full; skip leaves candidates out.
func fill(q *queues.Queue, sel selection, ordered []store.PoolEntry, skip func(i int) bool, now time.Time) selection {
	full := q.PlayersPerMatch()
	for i := range ordered {
		if sel.players == full {
			break
		}
		if skip != nil && skip(i) {
			continue
		}
		if next, ok := admit(q, &sel, ordered[i], now); ok {
			sel = next
		}
	}
	return sel
}

// admit returns sel with c added if the result keeps every rule a
// selection must keep before it is full.
func admit(q *queues.Queue, sel *selection, c store.PoolEntry, now time.Time) (selection, bool) {
	if sel.players+c.Players > q.PlayersPerMatch() {
		return selection{}, false
	}
	next := sel.with(c)
	if next.hi-next.lo > q.Skill.At(now.Sub(next.oldest)) {
		return selection{}, false
	}
	if _, ok := sharedRegion(q, next.entries, now); !ok {
		return selection{}, false
	}
	if _, ok := formTeams(q, next.entries, false); !ok {
		return selection{}, false
	}
	return next, true
}

// fairGap is the widest gap between two teams' mean player skill at which
// a match counts as fair: Elo's expected score 1/(1+10^(−gap/400)) is then
// within 50 ± 3 % (400 × log10(0.53/0.47) ≈ 20.87).
const fairGap = 20.87

// maxForced bounds how many team-sized parties balancedAlternative tries
// to build a match around, so that a crowd of them costs no more than a
// few extra passes over the candidates.
const maxForced = 8

// balance is how well a full selection splits into teams.
type balance struct {
	fair   bool
	gap    float64 // between the strongest and weakest team's mean skill
	spread float64
	teams  [][]int // the split, as formTeams answers it
}

// better reports whether a is a better match than b: a fair split first,
// then, among fair ones, the narrower spread; among unfair ones, the
// smaller gap.
func (a balance) better(b balance) bool {
	if a.fair != b.fair {
		return a.fair
	}
	if a.fair && a.spread != b.spread {
		return a.spread < b.spread
	}
	return a.gap < b.gap
}

func balanceOf(q *queues.Queue, sel *selection) balance {
	teams, ok := formTeams(q, sel.entries, true)
	if !ok {
		return balance{gap: math.Inf(1)}
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, team := range teams {
		total, players := 0.0, 0
		for _, i := range team {
			total += strength(&sel.entries[i])
			players += sel.entries[i].Players
		}
		mean := total / float64(max(players, 1))
		lo, hi = min(lo, mean), max(hi, mean)
	}
	gap := hi - lo
	return balance{fair: gap <= fairGap, gap: gap, spread: sel.hi - sel.lo, teams: teams}
}

// balancedAlternative is selection that balances while it chooses. The
// nearest selection (greedy) stands if its teams are fair. Otherwise the
// parties, not the split, are what is wrong: typically a five-stack taken
// as one of the nearest candidates, against players gathered around the
// anchor's skill rather than the stack's; and nearest in matching skill is
// not nearest in the players' own skill a team's strength is counted in,
// since the party rule rates a mixed party above its mean. So it also
// tries other nearest-first fills, each keeping every rule: by the
// players' mean skill instead of the matching skill; each of those two
// without each of its tickets in turn (the stack left out, players around
// the anchor remain) and without any team-sized party; and, for each
// team-sized party within reach, the match built around it first, filled
// by nearness to its players' mean (a stack meets a stack, or players of
// its strength). The best by balance.better among those that keep the
// queue's balance rule wins; none, and there is no match yet. The cost is
// bounded: at most 2·(len(greedy)+1) + maxForced fills of the candidates.
func balancedAlternative(q *queues.Queue, start, greedy selection, ordered []store.PoolEntry, now time.Time) (selection, [][]int, bool) {
	var (
		best      selection
		bestScore balance
		found     bool
	)
	consider := func(sel selection) {
		if !complete(q, &sel, now) {
			return
		}
		score := balanceOf(q, &sel)
		if score.gap > q.BalanceLimit(now.Sub(sel.oldest)) {
			return // against the balance rule
		}
		if !found || score.better(bestScore) {
			best, bestScore, found = sel, score, true
		}
	}
	if consider(greedy); found && bestScore.fair {
		return greedy, bestScore.teams, true
	}
	anchor := start.entries[0]
	byMean := byMeanNear(ordered, meanSkill(&anchor))
	for k, order := range [][]store.PoolEntry{ordered, byMean} {
		first := greedy
		if k > 0 {
			first = fill(q, start, order, nil, now)
			consider(first)
		}
		for _, left := range first.entries[1:] {
			consider(fill(q, start, order, func(i int) bool { return order[i].TicketID == left.TicketID }, now))
		}
		if start.players < q.TeamSize {
			consider(fill(q, start, order, func(i int) bool { return order[i].Players == q.TeamSize }, now))
		}
	}
	forced := 0
	for _, c := range ordered {
		if c.Players != q.TeamSize || forced == maxForced {
			continue
		}
		forced++
		with, ok := admit(q, &start, c, now)
		if !ok {
			continue
		}
		around := byMeanNear(ordered, meanSkill(&c))
		consider(fill(q, with, around, func(i int) bool { return around[i].TicketID == c.TicketID }, now))
	}
	return best, bestScore.teams, found
}

// meanSkill is a party's mean player skill.
func meanSkill(e *store.PoolEntry) float64 { return strength(e) / float64(max(e.Players, 1)) }

// byMeanNear orders the candidates by how near their players' mean skill
// is to target, equal distances to the longest waiting.
func byMeanNear(cands []store.PoolEntry, target float64) []store.PoolEntry {
	out := slices.Clone(cands)
	slices.SortStableFunc(out, func(a, b store.PoolEntry) int {
		if c := cmp.Compare(math.Abs(meanSkill(&a)-target), math.Abs(meanSkill(&b)-target)); c != 0 {
			return c
		}
		return a.CreatedAt.Compare(b.CreatedAt)
	})
	return out
}

// strength is a party's total skill for balancing teams: its players' own
// skills, which is what a team's expected score is computed from. The
// party rule's penalty (party_spread) decides whom a party may meet, not
// how strong its team is counted.
func strength(e *store.PoolEntry) float64 {
	if len(e.Party) != e.Players {
		return e.Skill * float64(e.Players)
	}
	total := 0.0
	for _, p := range e.Party {
		total += p.Skill
	}
	return total
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
		held      []float64 // per entry: the best latency it is held to, or +Inf
	)
	for _, e := range entries {
		if len(e.Latencies) == 0 {
			continue
		}
		anyStated = true
		if q.RegionWait > 0 {
			held = make([]float64, len(entries))
			for i := range entries {
				held[i] = math.Inf(1)
				if now.Sub(entries[i].CreatedAt) < q.RegionWait {
					held[i] = queues.BestLatency(entries[i].Latencies)
				}
			}
		}
		for region := range e.Latencies {
			worst, ok := worstLatency(q, region, entries, held, now)
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

// worstLatency is the highest latency of the entries to region, and false
// if one of them does not accept it: over its latency limit, or, held
// (when held is not nil) to a best latency of held[i], above that.
func worstLatency(q *queues.Queue, region string, entries []store.PoolEntry, held []float64, now time.Time) (float64, bool) {
	worst := 0.0
	for i, e := range entries {
		if len(e.Latencies) == 0 {
			continue
		}
		ms, ok := e.Latencies[region]
		if !ok || ms > q.LatencyLimit(now.Sub(e.CreatedAt)) {
			return 0, false
		}
		// Region is a preference for the first RegionWait: only the
		// ticket's best region (or one as good) will do.
		if held != nil && ms > held[i] {
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

// maxEnumerated is the most parties that two teams are split among by
// trying every split (2^(n−1) of them, one step each); more go through the
// budgeted search.
const maxEnumerated = 16

// formTeams splits the entries (parties) into the queue's teams without
// splitting a party and with no team over TeamSize, minimising the gap
// between the strongest and the weakest team's total strength (players'
// own skills). A free-for-all puts every ticket on its own team. It
// reports false if no split fits. Teams are returned as indexes into
// entries. With balance false it stops at the first split that fits: a
// feasibility check.
func formTeams(q *queues.Queue, entries []store.PoolEntry, balance bool) ([][]int, bool) {
	if q.TeamSize == 1 {
		teams := make([][]int, len(entries))
		for i := range entries {
			teams[i] = []int{i}
		}
		return teams, true
	}
	if q.Teams == 2 && len(entries) <= maxEnumerated {
		return splitInTwo(q, entries, balance)
	}
	return searchTeams(q, entries, balance)
}

// searchTeams is formTeams's budgeted search, for any number of teams.
func searchTeams(q *queues.Queue, entries []store.PoolEntry, balance bool) ([][]int, bool) {
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
		tried    = make([][]int, len(entries)) // per depth, reused
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
		power := strength(e)
		// Fill the weakest team first, so the first descent is the
		// greedy balance and later ones improve on it.
		tried[k] = tried[k][:0]
		for range q.Teams {
			t := -1
			for j := range q.Teams {
				if size[j]+e.Players <= teamsize && !slices.Contains(tried[k], j) && (t < 0 || total[j] < total[t]) {
					t = j
				}
			}
			if t < 0 {
				break
			}
			tried[k] = append(tried[k], t)
			// Empty teams are interchangeable: trying one is enough.
			if size[t] == 0 && slices.ContainsFunc(tried[k][:len(tried[k])-1], func(j int) bool { return size[j] == 0 }) {
				continue
			}
			size[t] += e.Players
			total[t] += power
			assign[i] = t
			place(k + 1)
			size[t] -= e.Players
			total[t] -= power
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

// splitInTwo is formTeams for two teams of few parties: it walks every
// split with the first party on team 0 in Gray-code order, so that each
// step moves one party and costs O(1), and keeps the first of the most
// balanced among those with no team over TeamSize. Exact, where the
// budgeted search may stop short.
func splitInTwo(q *queues.Queue, entries []store.PoolEntry, balance bool) ([][]int, bool) {
	n := len(entries)
	if n == 0 {
		return nil, false
	}
	var (
		whole   float64
		powers  = make([]float64, n)
		size    = entries[0].Players // team 0's players
		total   float64              // team 0's strength
		best    = -1
		bestGap = math.Inf(1)
	)
	players := 0
	for i := range entries {
		powers[i] = strength(&entries[i])
		whole += powers[i]
		players += entries[i].Players
	}
	total = powers[0]
	// Gray code g(k) = k ^ k>>1 over the other n−1 parties; bit b of g
	// puts party b+1 on team 0.
	for k := 0; k < 1<<(n-1); k++ {
		if k > 0 {
			b := bits.TrailingZeros(uint(k))
			p := b + 1
			if (k^k>>1)&(1<<b) != 0 {
				size += entries[p].Players
				total += powers[p]
			} else {
				size -= entries[p].Players
				total -= powers[p]
			}
		}
		if size > q.TeamSize || players-size > q.TeamSize {
			continue
		}
		if gap := math.Abs(2*total - whole); gap < bestGap {
			best, bestGap = k^k>>1, gap
			if !balance || gap == 0 {
				break
			}
		}
	}
	if best < 0 {
		return nil, false
	}
	teams := make([][]int, 2)
	teams[0] = append(teams[0], 0)
	for i := 1; i < n; i++ {
		t := 1
		if best&(1<<(i-1)) != 0 {
			t = 0
		}
		teams[t] = append(teams[t], i)
	}
	return teams, true
}

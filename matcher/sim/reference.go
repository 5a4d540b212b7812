package sim

import (
	"cmp"
	"container/heap"
	"errors"
	"math"
	"slices"
	"time"
)

// The arrival-aware reference. The offline optimum of MinSpreadSum sorts
// the whole run's players by skill, so it pairs players who were never
// waiting at the same time and shrinks with the run's length. This one
// only lets tickets meet that were searching at one moment: each ticket
// searches over an interval of virtual time, and a match may hold a set
// of tickets only if their intervals share a moment (for intervals, a
// moment all share exists when every two overlap).

// searcher is one ticket as the reference sees it.
type searcher struct {
	from, to time.Duration // searching from arrival to the end of its search
	skill    float64       // the party's matching skill
	players  int
}

func (a *searcher) meets(b *searcher) bool { return a.from <= b.to && b.from <= a.to }

// arc is an edge of the assignment graph: left node to right node to.
type arc struct {
	to   int32
	cost float64
}

// PairGap is the result of minPairGap.
type PairGap struct {
	// Value is half the cheapest assignment (see minPairGap): the
	// optimum when Exact, a lower bound on it otherwise.
	Value float64
	Exact bool
	// OddCycles counts the odd cycles of the assignment, each a part
	// the pairing could not be read from; Exact is OddCycles == 0.
	OddCycles int
	// Pairs is a pairing of cost Value when Exact.
	Pairs [][2]int
}

// errNoPairing: some ticket has nobody to meet.
var errNoPairing = errors.New("the tickets cannot all be paired with tickets they meet")

// minPairGap finds the least total skill gap |skill_i − skill_j| over the
// ways to pair up all of ts (an even number) such that each pair meets.
//
// How, and why it is exact: give every ticket a left and a right copy and
// join left i to right j, at cost |skill_i − skill_j|, when i and j meet.
// Any pairing is an assignment of twice its cost (i to its partner and
// back), so half the cheapest assignment is a lower bound. The cheapest
// assignment is a permutation of the tickets; its 2-cycles are pairs, and
// an even cycle of length ≥ 4 alternates two pairings of its tickets whose
// costs add up to the cycle's, so the cheaper of the two costs at most half
// of it. With no odd cycle this gives a pairing of exactly half the
// assignment, which no pairing beats: the optimum. An odd cycle cannot be
// paired within itself; then the half assignment is only a lower bound
// (the linear relaxation of matching without its odd-set constraints),
// and Exact is false. The assignment is solved by successive shortest
// paths with potentials (Dijkstra from one free ticket at a time, stopping
// at the first free right copy), which stays local on these graphs.
func minPairGap(ts []searcher, adj [][]arc) (PairGap, error) {
	n := len(ts)
	if n%2 != 0 {
		return PairGap{}, errors.New("an odd number of tickets cannot be paired")
	}
	if n == 0 {
		return PairGap{Exact: true}, nil
	}
	matchL, err := assign(adj)
	if err != nil {
		return PairGap{}, err
	}
	var g PairGap
	total := 0.0
	seen := make([]bool, n)
	var cycle []int
	for start := range n {
		if seen[start] {
			continue
		}
		cycle = cycle[:0]
		for i := start; !seen[i]; i = matchL[i] {
			seen[i] = true
			cycle = append(cycle, i)
		}
		cost := func(k int) float64 { // edge from cycle[k] to the next
			return math.Abs(ts[cycle[k]].skill - ts[cycle[(k+1)%len(cycle)]].skill)
		}
		sum := 0.0
		for k := range cycle {
			sum += cost(k)
		}
		total += sum
		switch {
		case len(cycle)%2 == 1:
			g.OddCycles++
		case len(cycle) == 2:
			g.Pairs = append(g.Pairs, [2]int{cycle[0], cycle[1]})
		default:
			even := 0.0 // pairs (0,1), (2,3), ...
			for k := 0; k < len(cycle); k += 2 {
				even += cost(k)
			}
			first := 0
			if even > sum-even {
				first = 1
			}
			for k := first; k < len(cycle); k += 2 {
				g.Pairs = append(g.Pairs, [2]int{cycle[k], cycle[(k+1)%len(cycle)]})
			}
		}
	}
	g.Value = total / 2
	g.Exact = g.OddCycles == 0
	if !g.Exact {
		g.Pairs = nil
	} else {
		// The pairing read off costs at most Value and at least the
		// optimum ≥ Value: report its own cost, which rounding alone
		// can move.
		v := 0.0
		for _, p := range g.Pairs {
			v += math.Abs(ts[p[0]].skill - ts[p[1]].skill)
		}
		g.Value = v
	}
	return g, nil
}

// assign solves the assignment problem on adj (left i may take right j at
// cost c for every arc i→j) and returns the right node of each left node.
// Costs must not be negative.
func assign(adj [][]arc) ([]int, error) {
	n := len(adj)
	u := make([]float64, n) // left potentials
	v := make([]float64, n) // right potentials
	matchL := make([]int, n)
	matchR := make([]int, n)
	for i := range n {
		matchL[i], matchR[i] = -1, -1
	}
	// Row reduction, and a first matching on the tight arcs: most
	// tickets are taken by their cheapest partner and never searched for.
	for i, arcs := range adj {
		if len(arcs) == 0 {
			return nil, errNoPairing
		}
		best := 0
		for k, a := range arcs {
			if a.cost < arcs[best].cost {
				best = k
			}
		}
		u[i] = arcs[best].cost
		for _, a := range arcs {
			if a.cost == u[i] && matchR[a.to] < 0 {
				matchL[i], matchR[a.to] = int(a.to), i
				break
			}
		}
	}
	var (
		dist    = make([]float64, n)
		prev    = make([]int, n) // left node a right node was reached from
		settled = make([]bool, n)
		reached []int
		done    []int
		h       distHeap
	)
	for i := range n {
		dist[i] = math.Inf(1)
	}
	for root := range n {
		if matchL[root] >= 0 {
			continue
		}
		h = h[:0]
		relax := func(i int, d float64) {
			for _, a := range adj[i] {
				j := int(a.to)
				if settled[j] {
					continue
				}
				// Reduced costs are never negative but for rounding.
				nd := d + max(0, a.cost-u[i]-v[j])
				if nd < dist[j] {
					if math.IsInf(dist[j], 1) {
						reached = append(reached, j)
					}
					dist[j], prev[j] = nd, i
					heap.Push(&h, distItem{nd, j})
				}
			}
		}
		relax(root, 0)
		sink, D := -1, 0.0
		for h.Len() > 0 {
			it := heap.Pop(&h).(distItem)
			j := it.node
			if settled[j] || it.d > dist[j] {
				continue
			}
			settled[j] = true
			done = append(done, j)
			if matchR[j] < 0 {
				sink, D = j, it.d
				break
			}
			relax(matchR[j], it.d)
		}
		if sink < 0 {
			return nil, errNoPairing
		}
		// Move the potentials so that every arc of the shortest paths
		// found is tight and none turns negative (see the comment of
		// minPairGap for where this comes from).
		for _, j := range done {
			delta := D - dist[j]
			v[j] -= delta
			if i := matchR[j]; i >= 0 {
				u[i] += delta
			}
		}
		u[root] += D
		for j := sink; ; {
			i := prev[j]
			next := matchL[i]
			matchL[i], matchR[j] = j, i
			if i == root {
				break
			}
			j = next
		}
		for _, j := range reached {
			dist[j], settled[j] = math.Inf(1), false
		}
		reached, done = reached[:0], done[:0]
	}
	return matchL, nil
}

type distItem struct {
	d    float64
	node int
}

type distHeap []distItem

func (h distHeap) Len() int           { return len(h) }
func (h distHeap) Less(i, j int) bool { return h[i].d < h[j].d }
func (h distHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *distHeap) Push(x any)        { *h = append(*h, x.(distItem)) }
func (h *distHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// meetingArcs joins every two tickets of ts that meet, both ways.
func meetingArcs(ts []searcher) [][]arc {
	order := make([]int, len(ts))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(ts[a].from, ts[b].from) })
	adj := make([][]arc, len(ts))
	for x, i := range order {
		// Later arrivals meet i while they arrive before its search ends.
		for _, j := range order[x+1:] {
			if ts[j].from > ts[i].to {
				break
			}
			c := math.Abs(ts[i].skill - ts[j].skill)
			adj[i] = append(adj[i], arc{int32(j), c})
			adj[j] = append(adj[j], arc{int32(i), c})
		}
	}
	return adj
}

// groupGapBound bounds from below the total spread (highest minus lowest
// skill in a group) of any split of ts into exactly groups groups of
// minSize to maxSize players, each of tickets that meet at one moment.
// A ticket's players count as copies of its skill, and a ticket is never
// split.
//
// Why it holds: let d_i be the least spread of any such group containing
// ticket i (computed below, over relaxed groups of minSize copies that need
// not respect parties, so it is never above the true least). Every group's
// spread is at least the largest d of its members, M_g. Order the groups
// by M_g, largest first: the copies with d above M_j all sit in the j−1
// groups before it, at most (j−1)·maxSize of them, so M_j is at least the
// ((j−1)·maxSize+1)-th largest copy of d. Summing over the groups bounds
// the total spread.
//
// d_i: intervals that pairwise overlap share a moment, and the set of
// tickets searching at a moment only grows at an arrival, so the groups
// to consider are subsets of the tickets searching at some arrival. Among
// those, with every ticket's copies side by side in skill order, the
// narrowest group of minSize copies that holds all of i's is a run of
// consecutive copies: take a group's lowest and highest copy positions;
// a run of minSize positions between them that covers i's copies exists,
// and its spread is no wider.
func groupGapBound(ts []searcher, groups, minSize, maxSize int) float64 {
	d := make([]float64, len(ts))
	for i := range d {
		d[i] = math.Inf(1)
	}
	order := make([]int, len(ts))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(ts[a].from, ts[b].from) })
	var (
		active []int
		vals   []float64
		owner  []int
	)
	for x := 0; x < len(order); {
		now := ts[order[x]].from
		kept := active[:0]
		for _, i := range active {
			if ts[i].to >= now {
				kept = append(kept, i)
			}
		}
		active = kept
		for ; x < len(order) && ts[order[x]].from == now; x++ {
			active = append(active, order[x])
		}
		slices.SortFunc(active, func(a, b int) int {
			if c := cmp.Compare(ts[a].skill, ts[b].skill); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		vals, owner = vals[:0], owner[:0]
		for _, i := range active {
			for range ts[i].players {
				vals = append(vals, ts[i].skill)
				owner = append(owner, i)
			}
		}
		m := len(vals)
		if m < minSize {
			continue
		}
		// Runs of minSize copies starting at l, for each ticket's span
		// [p, q] of copies: l from max(0, q−minSize+1) to min(p, m−minSize).
		for p := 0; p < m; {
			i := owner[p]
			q := p + ts[i].players - 1
			for l := max(0, q-minSize+1); l <= min(p, m-minSize); l++ {
				d[i] = min(d[i], vals[l+minSize-1]-vals[l])
			}
			p = q + 1
		}
	}
	var copies []float64
	for i, t := range ts {
		if math.IsInf(d[i], 1) {
			continue // in no group at all: nothing to bound it by
		}
		for range t.players {
			copies = append(copies, d[i])
		}
	}
	slices.SortFunc(copies, func(a, b float64) int { return cmp.Compare(b, a) })
	bound := 0.0
	for j := range groups {
		if k := j * maxSize; k < len(copies) {
			bound += copies[k]
		}
	}
	return bound
}

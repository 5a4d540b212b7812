package sim

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// MinSpreadSum bounds from below the total spread (the sum over groups of
// highest minus lowest value) of any way to split xs into exactly groups
// groups of between minSize and maxSize values each. When minSize equals
// maxSize, or when the search below lands on a split into exactly groups
// runs, the bound is the optimum itself.
//
// Why it holds: take an optimal split and two of its groups A and B that
// interleave. Give the |A| lowest of their values to one group and the |B|
// highest to the other. If one group held both the lowest and the highest
// value, its spread alone was at least the two new spreads together. If A
// held the lowest and B the highest, A's highest is at least the |A|-th
// value of the union and B's lowest at most the next one, which again
// makes the old spreads at least the new. So some optimal split cuts the
// sorted values into consecutive runs. With equal sizes there is one such
// cut, and its total is the optimum (for groups of two: pairing sorted
// neighbours). With sizes in a range, the cheapest cut into runs of allowed
// sizes is found by dynamic programming; the number of runs is held to
// groups by a Lagrange multiplier λ on it, and for every λ the relaxed
// minimum minus λ·groups is a lower bound, of which the best found is
// returned.
func MinSpreadSum(xs []float64, groups, minSize, maxSize int) (float64, error) {
	n := len(xs)
	switch {
	case minSize < 1 || maxSize < minSize:
		return 0, fmt.Errorf("group sizes %d to %d are not a range of positive sizes", minSize, maxSize)
	case groups < 0:
		return 0, errors.New("negative number of groups")
	case n < groups*minSize || n > groups*maxSize:
		return 0, fmt.Errorf("%d values do not fill %d groups of %d to %d", n, groups, minSize, maxSize)
	case n == 0:
		return 0, nil
	}
	xs = slices.Sorted(slices.Values(xs))
	if minSize == maxSize {
		sum := 0.0
		for g := 0; g < n; g += minSize {
			sum += xs[g+minSize-1] - xs[g]
		}
		return sum, nil
	}
	// Splits into runs have a total spread of at most the full range, so
	// past ±(range+1) a λ only pushes the number of runs to its extreme:
	// the multiplier that balances it lies between.
	width := xs[n-1] - xs[0] + 1
	lo, hi := -width, width
	best := math.Inf(-1)
	for range 100 {
		lambda := (lo + hi) / 2
		cost, runs := cheapestRuns(xs, minSize, maxSize, lambda)
		best = max(best, cost-lambda*float64(groups))
		switch {
		case runs == groups:
			return best, nil // exactly groups runs: the optimum itself
		case runs > groups:
			lo = lambda // runs are too cheap
		default:
			hi = lambda
		}
	}
	return best, nil
}

// cheapestRuns cuts sorted xs into consecutive runs of minSize to maxSize
// values at the least total spread plus lambda per run, and returns that
// total and the number of runs (the fewest among equally cheap cuts).
func cheapestRuns(xs []float64, minSize, maxSize int, lambda float64) (float64, int) {
	n := len(xs)
	cost := make([]float64, n+1)
	runs := make([]int, n+1)
	for i := 1; i <= n; i++ {
		cost[i] = math.Inf(1)
		for size := minSize; size <= maxSize && size <= i; size++ {
			j := i - size
			if math.IsInf(cost[j], 1) {
				continue
			}
			c := cost[j] + xs[i-1] - xs[j] + lambda
			if c < cost[i] || (c == cost[i] && runs[j]+1 < runs[i]) {
				cost[i], runs[i] = c, runs[j]+1
			}
		}
	}
	return cost[n], runs[n]
}

package sim

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestMinSpreadSum(t *testing.T) {
	tests := []struct {
		name             string
		xs               []float64
		groups, min, max int
		want             float64
	}{
		{"nothing", nil, 0, 2, 2, 0},
		{"one pair", []float64{5, 9}, 1, 2, 2, 4},
		{"pairs of neighbours", []float64{1, 2, 10, 11}, 2, 2, 2, 2},
		{"unsorted input", []float64{10, 1, 11, 2}, 2, 2, 2, 2},
		// Pairing 1 with 3 and 2 with 4 costs 4; neighbours cost 2.
		{"interleaved pairs lose", []float64{1, 2, 3, 4}, 2, 2, 2, 2},
		{"ties", []float64{7, 7, 7, 7, 7, 7}, 3, 2, 2, 0},
		{"triples", []float64{1, 2, 3, 10, 11, 12}, 2, 3, 3, 4},
		{"teams of five", []float64{0, 1, 2, 3, 4, 100, 101, 102, 103, 104}, 1, 10, 10, 104},
		{"sizes in a range", []float64{1, 2, 3, 10, 11, 12, 13}, 2, 3, 4, 5},
		// Two groups of 2–3 over 5 values: {1,2} and {50,51,52}.
		{"the gap decides the cut", []float64{1, 2, 50, 51, 52}, 2, 2, 3, 3},
		{"one group of a range", []float64{3, 1, 4, 1, 5}, 1, 2, 8, 4},
		{"far apart pairs", []float64{100, 0, 50, 51}, 2, 2, 2, 99},
		{"an outlier alone", []float64{1, 2, 3, 100}, 2, 1, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MinSpreadSum(tt.xs, tt.groups, tt.min, tt.max)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("MinSpreadSum(%v, %d, %d, %d) = %g, want %g", tt.xs, tt.groups, tt.min, tt.max, got, tt.want)
			}
		})
	}
}

func TestMinSpreadSumRejects(t *testing.T) {
	tests := []struct {
		name             string
		n                int
		groups, min, max int
	}{
		{"too few values", 3, 2, 2, 2},
		{"too many values", 5, 2, 2, 2},
		{"sizes out of order", 4, 1, 4, 3},
		{"zero size", 4, 2, 0, 2},
		{"negative groups", 0, -1, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := MinSpreadSum(make([]float64, tt.n), tt.groups, tt.min, tt.max); err == nil {
				t.Errorf("MinSpreadSum of %d values into %d groups of %d–%d: no error", tt.n, tt.groups, tt.min, tt.max)
			}
		})
	}
}

// TestMinSpreadSumAgainstBruteForce checks the bound against every split
// of small random inputs: never above the best split, and equal to it when
// the groups have one size.
func TestMinSpreadSumAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 300 {
		minSize := 1 + rng.IntN(3)
		maxSize := minSize + rng.IntN(3)
		n := 2 + rng.IntN(8)
		groups := n / maxSize
		if groups*maxSize < n {
			groups++
		}
		if groups*minSize > n {
			continue // no split fits
		}
		xs := make([]float64, n)
		for j := range xs {
			xs[j] = float64(rng.IntN(50))
		}
		best := bestSplit(xs, groups, minSize, maxSize)
		got, err := MinSpreadSum(xs, groups, minSize, maxSize)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if got > best+1e-9 {
			t.Fatalf("case %d: MinSpreadSum(%v, %d, %d, %d) = %g, above the best split %g", i, xs, groups, minSize, maxSize, got, best)
		}
		if minSize == maxSize && math.Abs(got-best) > 1e-9 {
			t.Fatalf("case %d: MinSpreadSum(%v, %d, %d, %d) = %g, want the optimum %g", i, xs, groups, minSize, maxSize, got, best)
		}
	}
}

// bestSplit tries every assignment of values to groups.
func bestSplit(xs []float64, groups, minSize, maxSize int) float64 {
	assign := make([]int, len(xs))
	best := math.Inf(1)
	var try func(i, used int)
	try = func(i, used int) {
		if i == len(xs) {
			if used != groups {
				return
			}
			total := 0.0
			for g := range groups {
				var members []float64
				for j, a := range assign {
					if a == g {
						members = append(members, xs[j])
					}
				}
				if len(members) < minSize || len(members) > maxSize {
					return
				}
				total += slices.Max(members) - slices.Min(members)
			}
			best = min(best, total)
			return
		}
		// A value opens at most the next unused group: groups are
		// interchangeable, so this skips relabellings.
		for g := 0; g <= used && g < groups; g++ {
			assign[i] = g
			try(i+1, max(used, g+1))
		}
	}
	try(0, 0)
	return best
}

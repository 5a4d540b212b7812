package sim

import (
	"context"
	"fmt"
	"runtime"
	"sync"
)

// SweepPoint is one run of a sweep: the skill window it ran with and its
// headline figures (flattened into the JSON object).
type SweepPoint struct {
	Queue string `json:"queue"`
	// InitialFactor and RateFactor scale the queue's skill window's
	// initial width and growth per second for this run.
	InitialFactor float64 `json:"initial_factor"`
	RateFactor    float64 `json:"rate_factor"`
	SkillWindow   struct {
		Initial   float64 `json:"initial"`
		PerSecond float64 `json:"per_second"`
		Max       float64 `json:"max"`
	} `json:"skill_window"`
	Figures
	// ReferenceExact tells whether reference_spread is the optimum or a
	// lower bound.
	ReferenceExact bool   `json:"reference_exact"`
	Method         string `json:"reference_method"`
}

// Sweep runs cfg once for every pair of factors, scaling the queue's skill
// window's initial width by one and its growth per second by the other
// (the initial width capped at the window's max), as many runs at once as
// there are CPUs. The points come back in the order of the factors,
// initial factor first.
func Sweep(ctx context.Context, cfg Config, initial, rate []float64) ([]SweepPoint, error) {
	points := make([]SweepPoint, len(initial)*len(rate))
	errs := make([]error, len(points))
	work := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for k := range work {
				points[k], errs[k] = sweepPoint(ctx, cfg, initial[k/len(rate)], rate[k%len(rate)])
			}
		})
	}
	for k := range points {
		work <- k
	}
	close(work)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return points, nil
}

func sweepPoint(ctx context.Context, cfg Config, fi, fr float64) (SweepPoint, error) {
	w := &cfg.Queue.Skill
	w.Initial = min(w.Initial*fi, w.Max)
	w.PerSecond *= fr
	res, err := Run(ctx, cfg)
	if err != nil {
		return SweepPoint{}, fmt.Errorf("window ×%g initial, ×%g per second: %w", fi, fr, err)
	}
	rep, err := res.Report()
	if err != nil {
		return SweepPoint{}, fmt.Errorf("window ×%g initial, ×%g per second: %w", fi, fr, err)
	}
	p := SweepPoint{Queue: cfg.Queue.Name, InitialFactor: fi, RateFactor: fr, Figures: rep.Figures,
		ReferenceExact: rep.ArrivalGap.Exact, Method: rep.ArrivalGap.Method}
	p.SkillWindow.Initial, p.SkillWindow.PerSecond, p.SkillWindow.Max = w.Initial, w.PerSecond, w.Max
	return p, nil
}

// Command simulate replays a seeded arrival stream through the matcher on a
// virtual clock and reports the quality of the matches it formed: waits,
// skill spread, team balance, and the run's total skill gap against the
// offline optimum for the same players. With -sweep-initial and
// -sweep-rate it runs once per pair of skill window factors instead and
// reports the trade-off between wait and spread.
//
//	go run ./matcher/sim/cmd/simulate -queues examples/queues.yaml -queue ranked-5v5 \
//	    -rate 40 -duration 10m -parties 1:0.6,2:0.2,5:0.2 -chart wait.png
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/matcher/sim"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "simulate:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		queuesFile = fs.String("queues", "", "queues file (YAML or JSON); empty: the built-in duel")
		queueName  = fs.String("queue", "duel", "queue to simulate")
		seed       = fs.Uint64("seed", 1, "seed of the arrival stream")
		rate       = fs.Float64("rate", 30, "arrivals, players per second (Poisson)")
		duration   = fs.Duration("duration", 10*time.Minute, "virtual time during which players arrive (0: no limit)")
		count      = fs.Int("count", 0, "players to arrive at most (0: no limit)")
		skillMean  = fs.Float64("skill-mean", 1500, "mean of the normal skill distribution")
		skillSD    = fs.Float64("skill-sd", 300, "standard deviation of the skill distribution")
		partySD    = fs.Float64("party-sd", 100, "standard deviation of members' skills around their party's mean")
		parties    = fs.String("parties", "1:1", "party mix: size:share of tickets, comma-separated")
		regions    = fs.String("regions", "eu-west,us-east,ap-south", "home regions, in order along a line, optionally name:share; empty: no latencies")
		hop        = fs.Float64("hop", 60, "extra latency, ms, per step along the region line")
		candidates = fs.Int("candidates", 0, "pool entries one search reads (0: the matcher's default)")
		jsonOut    = fs.String("json", "", "write the report as JSON to this file")
		chartOut   = fs.String("chart", "", "write a PNG chart of wait time against skill to this file")
		sweepInit  = fs.String("sweep-initial", "", "sweep: factors for the skill window's initial width, comma-separated (with -sweep-rate)")
		sweepRate  = fs.String("sweep-rate", "", "sweep: factors for the skill window's growth per second, comma-separated")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	q, err := loadQueue(*queuesFile, *queueName)
	if err != nil {
		return err
	}
	ps, err := sim.ParseParties(*parties)
	if err != nil {
		return err
	}
	rs, err := sim.ParseRegions(*regions)
	if err != nil {
		return err
	}
	cfg := sim.Config{
		Queue:       q,
		Seed:        *seed,
		Rate:        *rate,
		Duration:    *duration,
		Count:       *count,
		SkillMean:   *skillMean,
		SkillStdDev: *skillSD,
		PartyStdDev: *partySD,
		Parties:     ps,
		Regions:     rs,
		Hop:         *hop,
		Candidates:  *candidates,
	}
	if *sweepInit != "" || *sweepRate != "" {
		return sweep(ctx, cfg, *sweepInit, *sweepRate, *jsonOut, *chartOut, stdout, stderr)
	}
	start := time.Now()
	res, err := sim.Run(ctx, cfg)
	if err != nil {
		return err
	}
	rep, err := res.Report()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "simulated %v of virtual time in %v\n", res.End.Sub(sim.Epoch).Round(time.Second), time.Since(start).Round(time.Millisecond))
	if err := rep.WriteText(stdout); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding the report: %w", err)
		}
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("writing the JSON report: %w", err)
		}
	}
	if *chartOut != "" {
		if err := writeChart(*chartOut, res, rep); err != nil {
			return fmt.Errorf("writing the chart: %w", err)
		}
	}
	return nil
}

// sweep runs cfg for every pair of window factors and reports each run's
// figures: a table, and the JSON and the trade-off chart if asked for.
func sweep(ctx context.Context, cfg sim.Config, initial, rate, jsonOut, chartOut string, stdout, stderr io.Writer) error {
	fi, err := factors(cmp.Or(initial, "1"))
	if err != nil {
		return fmt.Errorf("-sweep-initial: %w", err)
	}
	fr, err := factors(cmp.Or(rate, "1"))
	if err != nil {
		return fmt.Errorf("-sweep-rate: %w", err)
	}
	start := time.Now()
	points, err := sim.Sweep(ctx, cfg, fi, fr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "swept %d runs in %v\n", len(points), time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "queue %s: seed %d, %g players/s for %s; parties %s\n", cfg.Queue.Name, cfg.Seed, cfg.Rate, cfg.Duration, sim.FormatParties(cfg.Parties))
	fmt.Fprintf(stdout, "  window (initial, /s)   wait p50  p90 s   spread  reference  ratio   fair    best region  decile wait ratio\n")
	opt := func(p *float64, scale float64, f string) string {
		if p == nil {
			return "—"
		}
		return fmt.Sprintf(f, *p*scale)
	}
	for _, p := range points {
		fmt.Fprintf(stdout, "  %7.1f, %6.2f        %6.1f %6.1f   %6.1f   %6.1f   %6.3f   %6s   %6s       %s\n",
			p.SkillWindow.Initial, p.SkillWindow.PerSecond, p.WaitP50, p.WaitP90, p.MeanSpread, p.ReferenceSpread, p.Ratio,
			opt(p.BalanceWithin3pct, 100, "%.1f%%"), opt(p.BestRegionShare, 100, "%.1f%%"), opt(p.BandWaitRatioMax, 1, "%.2f"))
	}
	if jsonOut != "" {
		b, err := json.MarshalIndent(points, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding the sweep: %w", err)
		}
		if err := os.WriteFile(jsonOut, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("writing the sweep JSON: %w", err)
		}
	}
	if chartOut != "" {
		if err := writeSweepChart(chartOut, cfg, points); err != nil {
			return fmt.Errorf("writing the sweep chart: %w", err)
		}
	}
	return nil
}

// factors reads a comma-separated list of positive numbers.
func factors(s string) ([]float64, error) {
	var out []float64
	for _, item := range strings.Split(s, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(item), 64)
		if err != nil || !(f > 0) {
			return nil, fmt.Errorf("factor %q: want a positive number", item)
		}
		out = append(out, f)
	}
	return out, nil
}

func loadQueue(file, name string) (queues.Queue, error) {
	set, err := queues.NewSet(queues.Duel())
	if file != "" {
		set, err = queues.LoadFile(file)
	}
	if err != nil {
		return queues.Queue{}, err
	}
	q, ok := set.Get(name)
	if !ok {
		return queues.Queue{}, fmt.Errorf("no queue %q; there are %v", name, set.Names())
	}
	return q, nil
}

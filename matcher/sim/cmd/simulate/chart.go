package main

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/wcharczuk/go-chart/v2"
	"github.com/wcharczuk/go-chart/v2/drawing"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/matcher/sim"
)

// maxDots bounds the scatter so that the chart stays readable and small.
const maxDots = 4000

// writeChart draws each player's wait against their skill (a sample of
// them), with the median and 90th percentile wait of each skill decile. The
// wait axis stops a little above the highest decile p90 and the overall
// p99, so that a few long waits do not flatten the rest: longer waits are
// left out and counted in the legend, and expired players are drawn on the
// top edge.
func writeChart(path string, res *sim.Result, rep *sim.Report) error {
	top := rep.Wait.P99
	for _, d := range rep.WaitByDecile {
		top = max(top, d.Wait.P90)
	}
	top = max(1, 1.3*top)
	players := 0
	for i := range res.Tickets {
		players += len(res.Tickets[i].Players)
	}
	every := max(1, (players+maxDots-1)/maxDots)
	var (
		mx, my, ex, ey []float64
		above, n       int
	)
	for i := range res.Tickets {
		t := &res.Tickets[i]
		for _, p := range t.Players {
			n++
			if n%every != 0 {
				continue
			}
			switch wait := t.Wait().Seconds(); {
			case t.Status != contracts.StatusMatched:
				ex, ey = append(ex, p.Skill), append(ey, top)
			case wait > top:
				above++
			default:
				mx, my = append(mx, p.Skill), append(my, wait)
			}
		}
	}
	var dx, p50, p90 []float64
	for _, d := range rep.WaitByDecile {
		dx = append(dx, d.Median)
		p50 = append(p50, d.Wait.P50)
		p90 = append(p90, d.Wait.P90)
	}
	dots := func(name string, c drawing.Color, width float64, xs, ys []float64) chart.Series {
		return chart.ContinuousSeries{
			Name:    name,
			Style:   chart.Style{StrokeWidth: chart.Disabled, DotWidth: width, DotColor: c, StrokeColor: c},
			XValues: xs, YValues: ys,
		}
	}
	line := func(name string, c drawing.Color, ys []float64) chart.Series {
		return chart.ContinuousSeries{
			Name:    name,
			Style:   chart.Style{StrokeWidth: 3, StrokeColor: c, DotWidth: 4, DotColor: c},
			XValues: dx, YValues: ys,
		}
	}
	name := fmt.Sprintf("matched player (1 in %d)", every)
	if above > 0 {
		name += fmt.Sprintf(", %d waiting over %.0f s not shown", above, top)
	}
	series := []chart.Series{dots(name, drawing.ColorFromHex("7f9fbf").WithAlpha(120), 1.5, mx, my)}
	if len(ex) > 0 {
		series = append(series, dots("expired player (on the top edge)", drawing.ColorFromHex("d62728"), 3, ex, ey))
	}
	if len(dx) > 1 {
		series = append(series,
			line("decile median", drawing.ColorFromHex("1f3b73"), p50),
			line("decile p90", drawing.ColorFromHex("ff7f0e"), p90))
	}
	graph := chart.Chart{
		Title:      fmt.Sprintf("%s (%s): wait vs skill, %g players/s, seed %d", rep.Queue, rep.Shape, rep.Rate, rep.Seed),
		Width:      1000,
		Height:     560,
		Background: chart.Style{Padding: chart.Box{Top: 50, Left: 20, Right: 20, Bottom: 20}},
		XAxis:      chart.XAxis{Name: "player skill", ValueFormatter: format("%.0f")},
		YAxis:      chart.YAxis{Name: "wait (s)", ValueFormatter: format("%.1f"), Range: &chart.ContinuousRange{Min: 0, Max: top}},
		Series:     series,
	}
	graph.Elements = []chart.Renderable{chart.Legend(&graph)}
	var buf bytes.Buffer
	if err := graph.Render(chart.PNG, &buf); err != nil {
		return fmt.Errorf("rendering: %w", err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func format(f string) chart.ValueFormatter {
	return func(v any) string {
		if x, ok := v.(float64); ok {
			return fmt.Sprintf(f, x)
		}
		return fmt.Sprint(v)
	}
}

// writeSweepChart draws the trade-off of a sweep: each run's wait p90
// against its mean spread, one line per growth factor, and beside each
// run, at the same wait, the arrival-aware reference's mean spread for the
// same tickets (grey dots; the legend says whether they are the optimum or
// a lower bound).
func writeSweepChart(path string, cfg sim.Config, points []sim.SweepPoint) error {
	palette := []string{"1f77b4", "ff7f0e", "2ca02c", "d62728", "9467bd", "8c564b"}
	var rates []float64
	for _, p := range points {
		if !slices.Contains(rates, p.RateFactor) {
			rates = append(rates, p.RateFactor)
		}
	}
	var series []chart.Series
	var rx, ry []float64
	exact := true
	for k, rate := range rates {
		var xs, ys []float64
		var run []sim.SweepPoint
		for _, p := range points {
			if p.RateFactor == rate {
				run = append(run, p)
			}
		}
		slices.SortFunc(run, func(a, b sim.SweepPoint) int { return cmp.Compare(a.WaitP90, b.WaitP90) })
		for _, p := range run {
			xs, ys = append(xs, p.WaitP90), append(ys, p.MeanSpread)
			rx, ry = append(rx, p.WaitP90), append(ry, p.ReferenceSpread)
			exact = exact && p.ReferenceExact
		}
		c := drawing.ColorFromHex(palette[k%len(palette)])
		series = append(series, chart.ContinuousSeries{
			Name:    fmt.Sprintf("matcher, growth ×%g, initial ×%s", rate, factorsOf(run)),
			Style:   chart.Style{StrokeWidth: 2, StrokeColor: c, DotWidth: 5, DotColor: c},
			XValues: xs, YValues: ys,
		})
	}
	name := "reference (optimum), same tickets, waits"
	if !exact {
		name = "reference (lower bound), same tickets, waits"
	}
	grey := drawing.ColorFromHex("333333")
	series = append(series, chart.ContinuousSeries{
		Name:    name,
		Style:   chart.Style{StrokeWidth: chart.Disabled, DotWidth: 5, DotColor: grey, StrokeColor: grey},
		XValues: rx, YValues: ry,
	})
	top, right := 0.0, 0.0
	for _, p := range points {
		top, right = max(top, p.MeanSpread), max(right, p.WaitP90)
	}
	graph := chart.Chart{
		Title:      cfg.Queue.Name + ": wait p90 against mean spread",
		TitleStyle: chart.Style{FontSize: 14},
		Width:      1100,
		Height:     560,
		Background: chart.Style{Padding: chart.Box{Top: 50, Left: 330, Right: 20, Bottom: 20}},
		XAxis:      chart.XAxis{Name: fmt.Sprintf("wait p90 (s): the skill window swept, %g players/s for %s, seed %d", cfg.Rate, cfg.Duration, cfg.Seed), ValueFormatter: format("%.1f"), Range: &chart.ContinuousRange{Min: 0, Max: 1.1 * right}},
		YAxis:      chart.YAxis{Name: "mean spread (skill)", ValueFormatter: format("%.0f"), Range: &chart.ContinuousRange{Min: 0, Max: 1.1 * top}},
		Series:     series,
	}
	graph.Elements = []chart.Renderable{chart.LegendLeft(&graph)}
	var buf bytes.Buffer
	if err := graph.Render(chart.PNG, &buf); err != nil {
		return fmt.Errorf("rendering: %w", err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func factorsOf(points []sim.SweepPoint) string {
	var fs []string
	for _, p := range points {
		fs = append(fs, strconv.FormatFloat(p.InitialFactor, 'g', -1, 64))
	}
	return strings.Join(fs, ", ")
}

package main

import (
	"bytes"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strconv"

	"github.com/wcharczuk/go-chart/v2"
	"github.com/wcharczuk/go-chart/v2/drawing"
)

const chartWidth, panelHeight = 1000, 360

// writeChart draws the timeline as one PNG of two panels: players created
// and assigned per second above, time-to-assign p50 and p99 below.
func writeChart(path, title string, tl []Sample) error {
	if len(tl) < 2 {
		return fmt.Errorf("drawing the chart: the timeline has %d points, it needs 2", len(tl))
	}
	t := make([]float64, len(tl))
	created, assigned, p50, p99 := make([]float64, len(tl)), make([]float64, len(tl)), make([]float64, len(tl)), make([]float64, len(tl))
	for i, s := range tl {
		t[i], created[i], assigned[i], p50[i], p99[i] = s.T, s.CreatedPerS, s.AssignedPerS, s.P50MS, s.P99MS
	}
	top, err := renderPanel(title+": throughput", "players/s", t, []line{
		{"created /s", created, drawing.ColorFromHex("1f77b4")},
		{"assigned /s", assigned, drawing.ColorFromHex("2ca02c")},
	})
	if err != nil {
		return err
	}
	bottom, err := renderPanel(title+": time to assign (per interval)", "ms", t, []line{
		{"p50", p50, drawing.ColorFromHex("ff7f0e")},
		{"p99", p99, drawing.ColorFromHex("d62728")},
	})
	if err != nil {
		return err
	}
	img := image.NewRGBA(image.Rect(0, 0, chartWidth, top.Bounds().Dy()+bottom.Bounds().Dy()))
	draw.Draw(img, top.Bounds(), top, image.Point{}, draw.Src)
	draw.Draw(img, bottom.Bounds().Add(image.Pt(0, top.Bounds().Dy())), bottom, image.Point{}, draw.Src)
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return fmt.Errorf("encoding the chart: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing the chart: %w", err)
	}
	return nil
}

type line struct {
	name  string
	ys    []float64
	color drawing.Color
}

func renderPanel(title, yName string, xs []float64, lines []line) (image.Image, error) {
	c := chart.Chart{
		Title:      title,
		Width:      chartWidth,
		Height:     panelHeight,
		Background: chart.Style{Padding: chart.Box{Top: 50, Left: 20, Right: 20, Bottom: 10}},
		XAxis: chart.XAxis{
			Name:  "seconds",
			Ticks: secondTicks(xs[len(xs)-1]),
		},
		YAxis: chart.YAxis{
			Name:           yName,
			ValueFormatter: func(v any) string { return fmt.Sprintf("%.0f", v.(float64)) },
			// Start at zero, so that the panels do not exaggerate noise.
			Range: &chart.ContinuousRange{Min: 0, Max: maxOf(lines) * 1.1},
		},
	}
	for _, l := range lines {
		c.Series = append(c.Series, chart.ContinuousSeries{
			Name:    l.name,
			XValues: xs,
			YValues: l.ys,
			Style:   chart.Style{StrokeColor: l.color, StrokeWidth: 2},
		})
	}
	c.Elements = []chart.Renderable{chart.Legend(&c)}
	var buf bytes.Buffer
	if err := c.Render(chart.PNG, &buf); err != nil {
		return nil, fmt.Errorf("drawing the chart: %w", err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		return nil, fmt.Errorf("drawing the chart: %w", err)
	}
	return img, nil
}

// secondTicks marks whole seconds up to last, about twenty of them.
func secondTicks(last float64) []chart.Tick {
	step := max(1, int(math.Ceil(last/20)))
	var ticks []chart.Tick
	for s := 0; float64(s) <= last+float64(step); s += step {
		ticks = append(ticks, chart.Tick{Value: float64(s), Label: strconv.Itoa(s)})
	}
	return ticks
}

func maxOf(lines []line) float64 {
	m := 1.0
	for _, l := range lines {
		for _, y := range l.ys {
			m = max(m, y)
		}
	}
	return m
}

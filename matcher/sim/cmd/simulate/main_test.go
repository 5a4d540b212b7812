package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quickmatch/quickmatch/matcher/sim"
)

func TestRunWritesReportJSONAndChart(t *testing.T) {
	dir := t.TempDir()
	jsonPath, chartPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "c.png")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{
		"-queues", "../../../../examples/queues.yaml", "-queue", "ranked-2v2",
		"-rate", "20", "-duration", "15s", "-parties", "1:0.7,2:0.3",
		"-json", jsonPath, "-chart", chartPath,
	}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "queue ranked-2v2") || !strings.Contains(out.String(), "wait by skill decile") {
		t.Errorf("text report lacks its header or deciles:\n%s", out.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep sim.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	if rep.Queue != "ranked-2v2" || rep.Matches == 0 || len(rep.WaitByDecile) != 10 {
		t.Errorf("JSON report: queue %q, %d matches, %d deciles", rep.Queue, rep.Matches, len(rep.WaitByDecile))
	}
	png, err := os.ReadFile(chartPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Error("the chart is not a PNG")
	}
}

func TestSweepWritesJSONAndChart(t *testing.T) {
	dir := t.TempDir()
	jsonPath, chartPath := filepath.Join(dir, "s.json"), filepath.Join(dir, "s.png")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{
		"-queues", "../../../../examples/queues.yaml", "-queue", "ranked-2v2",
		"-rate", "20", "-duration", "15s", "-parties", "1:0.7,2:0.3",
		"-sweep-initial", "0.5,2", "-sweep-rate", "1",
		"-json", jsonPath, "-chart", chartPath,
	}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var points []map[string]any
	if err := json.Unmarshal(b, &points); err != nil {
		t.Fatalf("sweep JSON: %v", err)
	}
	if len(points) != 2 {
		t.Fatalf("%d sweep points, want 2", len(points))
	}
	for _, field := range []string{"wait_p50_s", "wait_p90_s", "mean_spread", "reference_spread", "ratio",
		"balance_within_3pct", "best_region_share", "band_wait_ratio_max"} {
		if _, ok := points[0][field]; !ok {
			t.Errorf("sweep point lacks %s: %v", field, points[0])
		}
	}
	if w0, w1 := points[0]["skill_window"].(map[string]any)["initial"], points[1]["skill_window"].(map[string]any)["initial"]; w0 != 37.5 || w1 != 150.0 {
		t.Errorf("swept initial windows %v and %v, want 37.5 and 150", w0, w1)
	}
	png, err := os.ReadFile(chartPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Error("the sweep chart is not a PNG")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"unknown queue", []string{"-queue", "nope"}},
		{"party over the team size", []string{"-parties", "2:1"}},
		{"bad party mix", []string{"-parties", "one"}},
		{"no rate", []string{"-rate", "0"}},
		{"stray argument", []string{"extra"}},
		{"bad sweep factor", []string{"-sweep-initial", "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := run(context.Background(), tt.args, &out, &errOut); err == nil {
				t.Errorf("run(%q) succeeded", tt.args)
			}
		})
	}
}

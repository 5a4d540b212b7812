package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Limit is a raw limit of the machine, measured in the same run as the
// suite: the ceiling a figure is read against.
type Limit struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	How   string  `json:"how"`
}

// Keys of the limits the table uses for its ratios. limits.json holds the
// ones measured outside the load tester; http reports labelled with a key
// add theirs.
const (
	limitRabbit      = "rabbitmq"     // publish+consume msgs/s
	limitRedisEval   = "redis_eval"   // EVAL of a small script /s
	limitHTTPTrivial = "http_trivial" // GET /livez /s on one front
	limitFrontCreate = "front_create" // POST /v1/tickets /s on one front alone
)

// namedReport is a report and the directory it came from.
type namedReport struct {
	dir string
	*Report
}

// loadResults reads dir/limits.json and every dir/*/report.json.
func loadResults(dir string) (map[string]Limit, []namedReport, error) {
	limits := map[string]Limit{}
	b, err := os.ReadFile(filepath.Join(dir, "limits.json"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, nil, fmt.Errorf("reading the limits: %w", err)
	default:
		if err := json.Unmarshal(b, &limits); err != nil {
			return nil, nil, fmt.Errorf("decoding limits.json: %w", err)
		}
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*", "report.json"))
	if err != nil {
		return nil, nil, fmt.Errorf("listing the reports: %w", err)
	}
	slices.Sort(paths)
	var reps []namedReport
	for _, p := range paths {
		r, err := readReport(p)
		if err != nil {
			return nil, nil, err
		}
		reps = append(reps, namedReport{dir: filepath.Base(filepath.Dir(p)), Report: r})
		if r.HTTP != nil && (r.Label == limitHTTPTrivial || r.Label == limitFrontCreate) {
			limits[r.Label] = Limit{Value: r.HTTP.PerS, Unit: "requests/s",
				How: fmt.Sprintf("loadtest -mode http: %s, %d in flight, %.0f s", r.HTTP.Target, r.HTTP.Concurrency, r.HTTP.DurationS)}
		}
	}
	return limits, reps, nil
}

// printTable writes the comparison of the runs under dir as Markdown.
func printTable(w io.Writer, dir string) error {
	limits, reps, err := loadResults(dir)
	if err != nil {
		return err
	}
	if len(reps) == 0 {
		return fmt.Errorf("no report.json under %s", dir)
	}
	var main, ramp []namedReport
	var holds []namedReport
	for _, r := range reps {
		switch {
		case r.Players != nil && strings.Contains(r.dir, "-ramp-"):
			ramp = append(ramp, r)
		case r.Players != nil:
			main = append(main, r)
		case r.Hold != nil:
			holds = append(holds, r)
		}
	}

	if len(main) > 0 {
		fmt.Fprintln(w, "| run | offered | created/s | assigned/s | p50 | p90 | p99 | p99.9 | max | lost | errors | services CPU/player | Redis+RabbitMQ CPU/player | loadtest CPU | other CPU |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
		for _, r := range main {
			p := r.Players
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %s | %s | %.2f cores | %.2f cores |\n",
				nameOf(r), offered(p), thousands(int64(p.CreatedPerS+0.5)), thousands(int64(p.AssignedPerS+0.5)),
				fmtMS(p.TimeToAssign.P50), fmtMS(p.TimeToAssign.P90), fmtMS(p.TimeToAssign.P99),
				fmtMS(p.TimeToAssign.P999), fmtMS(p.TimeToAssign.Max), p.Lost, p.ErrorCount,
				perPlayer(p.ServicesCPUPerPlayerMS), perPlayer(p.InfraCPUPerPlayerMS), r.Generator.Cores, r.CPU.OtherCores)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| run | assigned/s ÷ front create limit | requests/s ÷ trivial HTTP limit | assigned/s ÷ RabbitMQ msgs/s | assigned/s ÷ Redis EVAL/s |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|")
		for _, r := range main {
			p := r.Players
			distributed := r.Suite == "distributed"
			// The create limit is a distributed front's; the embedded
			// matchmaker's HTTP is read against the trivial limit alone.
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", nameOf(r),
				ratio(p.AssignedPerS, limits, limitFrontCreate, distributed),
				ratio(p.RequestsPerS, limits, limitHTTPTrivial, true),
				ratio(p.AssignedPerS, limits, limitRabbit, distributed),
				ratio(p.AssignedPerS, limits, limitRedisEval, distributed))
		}
		fmt.Fprintln(w)
	}
	if len(ramp) > 0 {
		fmt.Fprintln(w, "| ramp step | offered | assigned/s | p50 | p99 | lost | errors | verdict |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|---|")
		for _, r := range ramp {
			p := r.Players
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %d | %d | %s |\n", nameOf(r), offered(p),
				thousands(int64(p.AssignedPerS+0.5)), fmtMS(p.TimeToAssign.P50), fmtMS(p.TimeToAssign.P99),
				p.Lost, p.ErrorCount, verdict(r.Report))
		}
		fmt.Fprintln(w)
	}
	if len(limits) > 0 {
		fmt.Fprintln(w, "| raw limit | value | measured with |")
		fmt.Fprintln(w, "|---|--:|---|")
		for _, k := range slices.Sorted(maps.Keys(limits)) {
			l := limits[k]
			fmt.Fprintf(w, "| %s | %s %s | %s |\n", k, thousands(int64(l.Value+0.5)), l.Unit, l.How)
		}
		fmt.Fprintln(w)
	}
	for _, r := range holds {
		h := r.Hold
		what := "long-polls"
		if h.Stream {
			what = "streams"
		}
		fmt.Fprintf(w, "| %s held | front RSS before → holding | RSS per held one | Go heap+stacks per held one | wake | all answered in | p50 | p99 | verdict |\n", what)
		fmt.Fprintln(w, "|--:|--:|--:|--:|---|--:|--:|--:|---|")
		fmt.Fprintf(w, "| %s of %s | %s → %s KiB | %.1f KiB | %.1f KiB | %s | %s | %s | %s | %s |\n",
			thousands(h.Held), thousands(int64(h.Requested)), thousands(h.RSSCreatedKiB), thousands(h.RSSHoldingKiB),
			h.PerPollKiB, h.GoMemPerPollKiB, h.Wake, fmtMS(h.WakeAllMS), fmtMS(h.WakeLatency.P50), fmtMS(h.WakeLatency.P99), verdict(r.Report))
		fmt.Fprintln(w)
	}
	return nil
}

func nameOf(r namedReport) string {
	if r.Label != "" {
		return r.Label
	}
	return r.dir
}

func offered(p *PlayersReport) string {
	if p.TargetRate > 0 {
		return fmt.Sprintf("%s/s × %.0f s", thousands(int64(p.TargetRate)), p.DurationS)
	}
	return fmt.Sprintf("%d at once × %.0f s", p.Concurrency, p.DurationS)
}

func perPlayer(ms float64) string {
	if ms == 0 {
		return "—"
	}
	return fmt.Sprintf("%.3f ms", ms)
}

func ratio(v float64, limits map[string]Limit, key string, applies bool) string {
	l, ok := limits[key]
	if !applies || !ok || l.Value <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", v/l.Value)
}

func verdict(r *Report) string {
	if r.Pass {
		return "pass"
	}
	if len(r.Failures) == 0 {
		return "fail"
	}
	return "fail: " + strings.Join(r.Failures, "; ")
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is what a run writes to report.json; the part for its mode is set.
type Report struct {
	Label     string    `json:"label"`
	Mode      string    `json:"mode"`
	Scenario  string    `json:"scenario,omitempty"`
	Suite     string    `json:"suite,omitempty"`
	StartedAt time.Time `json:"started_at"`
	Front     string    `json:"front"`            // the first front
	Fronts    []string  `json:"fronts,omitempty"` // every front, players spread over them
	Assigner  string    `json:"assigner,omitempty"`
	Machine   Machine   `json:"machine"`

	Players *PlayersReport `json:"players,omitempty"`
	Hold    *HoldReport    `json:"hold,omitempty"`
	HTTP    *HTTPReport    `json:"http,omitempty"`

	Generator ProcessCPU   `json:"generator"`
	Services  []ProcessCPU `json:"services,omitempty"`
	Infra     []ProcessCPU `json:"infra,omitempty"`
	// CPU is the whole machine's during the run.
	CPU MachineCPU `json:"machine_cpu"`

	Pass     bool     `json:"pass"`
	Failures []string `json:"failures"`
}

// Machine is where the run took place.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Hostname   string `json:"hostname"`
}

// PlayersReport is the outcome of a players run.
type PlayersReport struct {
	TargetRate  float64 `json:"target_rate_per_s,omitempty"`
	Concurrency int     `json:"concurrency,omitempty"`
	WarmupS     float64 `json:"warmup_s,omitempty"`
	DurationS   float64 `json:"duration_s"` // measured arrivals, after the warm-up: the throughput window
	WallS       float64 `json:"wall_s"`     // warm-up, arrivals and drain

	Tickets map[string]int64 `json:"tickets"`
	Players map[string]int64 `json:"players"`
	// Lost is tickets created that were not terminal when the run ended;
	// LostAt says where they were last seen (searching, matched).
	Lost   int64            `json:"lost_tickets"`
	LostAt map[string]int64 `json:"lost_at,omitempty"`

	// Creates that took more than one try; answers marked
	// Idempotent-Replayed, where the suite recognised a retry by its key
	// and answered the ticket an earlier try made; and 409
	// player_has_ticket answers to a retry, where an earlier try made the
	// ticket but the suite did not honour the key.
	CreatesRetried    int64 `json:"creates_retried"`
	CreatesReplayed   int64 `json:"creates_replayed"`
	CreatesConflicted int64 `json:"creates_conflict_after_retry"`

	// Players created and assigned per second within the window.
	CreatedPerS  float64 `json:"created_per_s"`
	AssignedPerS float64 `json:"assigned_per_s"`
	RequestsPerS float64 `json:"requests_per_s"`

	TimeToAssign Latency `json:"time_to_assign"`
	TimeToMatch  Latency `json:"time_to_match"`

	Requests int64            `json:"requests"`
	Errors   map[string]int64 `json:"errors"`
	// ErrorSamples holds the first message of each kind of error.
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	ErrorCount   int64             `json:"error_count"`
	ErrorRate    float64           `json:"error_rate"`

	MaxInFlight int64 `json:"max_in_flight"`
	// ServicesCPUPerPlayerMS is the CPU of every service named with
	// -service-pids, per player assigned.
	ServicesCPUPerPlayerMS float64 `json:"services_cpu_per_player_ms,omitempty"`
	// InfraCPUPerPlayerMS is the same for the -infra-pids processes.
	InfraCPUPerPlayerMS float64 `json:"infra_cpu_per_player_ms,omitempty"`

	Fleet    FleetReport `json:"fleet"`
	Timeline []Sample    `json:"timeline"`
}

// Latency summarizes a histogram in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   usToMS(h.ValueAtQuantile(50)),
		P90:   usToMS(h.ValueAtQuantile(90)),
		P99:   usToMS(h.ValueAtQuantile(99)),
		P999:  usToMS(h.ValueAtQuantile(99.9)),
		Max:   usToMS(h.Max()),
	}
}

// playersReport turns the recorder's counts into the report's figures.
func playersReport(c *Config, s snapshot, start, end time.Time, requests int64) *PlayersReport {
	arrivalsS := s.windowEnd.Sub(s.measureFrom).Seconds()
	r := &PlayersReport{
		WarmupS:      s.measureFrom.Sub(start).Seconds(),
		DurationS:    arrivalsS,
		WallS:        end.Sub(start).Seconds(),
		Tickets:      map[string]int64{},
		Players:      map[string]int64{},
		TimeToAssign: summarize(s.assign),
		TimeToMatch:  summarize(s.match),
		Requests:     requests,
		Errors:       s.errors,
		ErrorSamples: s.samples,
		MaxInFlight:  s.maxInFlight,
		Timeline:     s.timeline,
	}
	if c.Concurrency > 0 {
		r.Concurrency = c.Concurrency
	} else {
		r.TargetRate = c.Rate
	}
	for i, name := range outcomeNames {
		r.Tickets[name] = s.tickets[i]
		r.Players[name] = s.players[i]
	}
	r.Lost = s.tickets[outLost]
	r.LostAt = s.lostAt
	r.CreatesRetried = s.creates[createRetried]
	r.CreatesReplayed = s.creates[createReplayed]
	r.CreatesConflicted = s.creates[createConflicted]
	if arrivalsS > 0 {
		r.CreatedPerS = float64(s.windowCreated) / arrivalsS
		r.AssignedPerS = float64(s.windowAssigned) / arrivalsS
	}
	// Requests per second over the busy part of the run, not the idle end
	// of the drain.
	if busy := max(s.lastAssign.Sub(start).Seconds(), r.WarmupS+arrivalsS); busy > 0 {
		r.RequestsPerS = float64(requests) / busy
	}
	for _, n := range s.errors {
		r.ErrorCount += n
	}
	if requests > 0 {
		r.ErrorRate = float64(r.ErrorCount) / float64(requests)
	}
	return r
}

// gates are the conditions a players run must meet to pass.
type gates struct {
	maxErrorRate  float64
	maxUnassigned float64
	maxP99        time.Duration
	minThroughput float64
}

func gatesOf(c *Config) gates {
	return gates{maxErrorRate: c.MaxErrorRate, maxUnassigned: c.MaxUnassigned, maxP99: c.MaxP99, minThroughput: c.MinThroughput}
}

// check lists every gate r fails; none means the run passes.
func (g gates) check(r *PlayersReport) []string {
	var fails []string
	created := r.Tickets["created"]
	switch {
	case r.Tickets["attempted"] == 0:
		fails = append(fails, "no ticket was attempted")
	case created == 0:
		fails = append(fails, "no ticket was created")
	}
	if r.Lost > 0 {
		fails = append(fails, fmt.Sprintf("%d tickets lost: created but not terminal when the run ended", r.Lost))
	}
	if n := r.Tickets["skipped"]; n > 0 {
		fails = append(fails, fmt.Sprintf("%d arrivals skipped: too many tickets in flight (see -max-inflight)", n))
	}
	if r.ErrorRate > g.maxErrorRate {
		fails = append(fails, fmt.Sprintf("error rate %.4f%% above %.4f%%", 100*r.ErrorRate, 100*g.maxErrorRate))
	}
	if created > 0 {
		unassigned := r.Tickets["cancelled"] + r.Tickets["expired"] + r.Tickets["failed"] + r.Tickets["abandoned"]
		if frac := float64(unassigned) / float64(created); frac > g.maxUnassigned {
			fails = append(fails, fmt.Sprintf("%d tickets (%.2f%%) ended cancelled, expired, failed or abandoned, above %.2f%%",
				unassigned, 100*frac, 100*g.maxUnassigned))
		}
	}
	if g.maxP99 > 0 && r.TimeToAssign.P99 > float64(g.maxP99)/float64(time.Millisecond) {
		fails = append(fails, fmt.Sprintf("time-to-assign p99 %s above %s", fmtMS(r.TimeToAssign.P99), g.maxP99))
	}
	if g.minThroughput > 0 && r.TargetRate > 0 && r.AssignedPerS < g.minThroughput*r.TargetRate {
		fails = append(fails, fmt.Sprintf("assigned %.0f players/s, below %.0f%% of the %.0f/s offered",
			r.AssignedPerS, 100*g.minThroughput, r.TargetRate))
	}
	return fails
}

// write stores the report as report.json and report.txt in dir.
func (r *Report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the report directory: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	var txt strings.Builder
	r.writeText(&txt)
	if err := os.WriteFile(filepath.Join(dir, "report.txt"), []byte(txt.String()), 0o644); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

// readReport loads a report.json.
func readReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading a report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	return &r, nil
}

// writeText renders the report for people.
func (r *Report) writeText(w io.Writer) {
	title := r.Mode
	if r.Label != "" {
		title = r.Label + " (" + r.Mode + ")"
	}
	fmt.Fprintf(w, "loadtest %s — %s, against %s\n", title, r.StartedAt.Format(time.RFC3339), r.targets())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	switch {
	case r.Players != nil:
		writePlayersText(tw, r.Players)
	case r.Hold != nil:
		writeHoldText(tw, r.Hold)
	case r.HTTP != nil:
		writeHTTPText(tw, r.HTTP)
	}
	fmt.Fprintf(tw, "generator CPU\t%.1f s, %.2f cores of %d\n", r.Generator.CPUSeconds, r.Generator.Cores, r.Machine.CPUs)
	for _, s := range slices.Concat(r.Services, r.Infra) {
		if s.Error != "" {
			fmt.Fprintf(tw, "%s CPU\t%s\n", s.Name, s.Error)
			continue
		}
		fmt.Fprintf(tw, "%s CPU\t%.1f s, %.2f cores, RSS %s KiB\n", s.Name, s.CPUSeconds, s.Cores, thousands(s.RSSKiB))
	}
	if r.CPU.BusyCores > 0 {
		fmt.Fprintf(tw, "machine CPU\t%.2f cores busy, %.2f of them not by the processes above\n", r.CPU.BusyCores, r.CPU.OtherCores)
	}
	tw.Flush()
	if r.Pass {
		fmt.Fprintln(w, "PASS")
		return
	}
	fmt.Fprintln(w, "FAIL")
	for _, f := range r.Failures {
		fmt.Fprintln(w, "  -", f)
	}
}

// targets names the fronts the run loaded.
func (r *Report) targets() string {
	if len(r.Fronts) > 1 {
		return strings.Join(r.Fronts, ", ")
	}
	return r.Front
}

func writePlayersText(w io.Writer, p *PlayersReport) {
	warm := ""
	if p.WarmupS > 0 {
		warm = fmt.Sprintf(", after a %.0f s warm-up (counted for lost tickets and errors only)", p.WarmupS)
	}
	if p.TargetRate > 0 {
		fmt.Fprintf(w, "offered\t%s players/s for %.1f s%s\n", thousands(int64(p.TargetRate)), p.DurationS, warm)
	} else {
		fmt.Fprintf(w, "offered\t%d players at once for %.1f s%s\n", p.Concurrency, p.DurationS, warm)
	}
	fmt.Fprintf(w, "players\tcreated %s, matched %s, assigned %s, cancelled %s, expired %s, failed %s, abandoned %s, create failed %s, create unanswered %s, skipped %s\n",
		thousands(p.Players["created"]), thousands(p.Players["matched"]), thousands(p.Players["assigned"]),
		thousands(p.Players["cancelled"]), thousands(p.Players["expired"]), thousands(p.Players["failed"]),
		thousands(p.Players["abandoned"]), thousands(p.Players["create_failed"]), thousands(p.Players["create_unanswered"]),
		thousands(p.Players["skipped"]))
	fmt.Fprintf(w, "create retries\t%s creates retried, %s answers replayed, %s answered 409 after a retry\n",
		thousands(p.CreatesRetried), thousands(p.CreatesReplayed), thousands(p.CreatesConflicted))
	fmt.Fprintf(w, "lost tickets\t%d", p.Lost)
	for _, k := range slices.Sorted(maps.Keys(p.LostAt)) {
		fmt.Fprintf(w, ", %d last seen %s", p.LostAt[k], k)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "throughput\tcreated %s players/s, assigned %s players/s, %s requests/s\n",
		thousands(int64(p.CreatedPerS+0.5)), thousands(int64(p.AssignedPerS+0.5)), thousands(int64(p.RequestsPerS+0.5)))
	writeLatency(w, "time to assign", p.TimeToAssign)
	writeLatency(w, "time to match", p.TimeToMatch)
	fmt.Fprintf(w, "errors\t%d of %d requests (%.4f%%)\n", p.ErrorCount, p.Requests, 100*p.ErrorRate)
	for _, k := range slices.Sorted(maps.Keys(p.Errors)) {
		fmt.Fprintf(w, "  %s\t%d, first: %s\n", k, p.Errors[k], p.ErrorSamples[k])
	}
	fmt.Fprintf(w, "max in flight\t%s tickets\n", thousands(p.MaxInFlight))
	fmt.Fprintf(w, "game servers\t%d × capacity %d, matches seen %s, ended %s, allocated at end %s\n",
		p.Fleet.Servers, p.Fleet.Capacity, thousands(p.Fleet.MatchesSeen), thousands(p.Fleet.MatchesEnded), thousands(p.Fleet.AllocatedAtEnd))
	if p.ServicesCPUPerPlayerMS > 0 {
		fmt.Fprintf(w, "services CPU\t%.3f ms per player assigned\n", p.ServicesCPUPerPlayerMS)
	}
	if p.InfraCPUPerPlayerMS > 0 {
		fmt.Fprintf(w, "Redis+RabbitMQ CPU\t%.3f ms per player assigned\n", p.InfraCPUPerPlayerMS)
	}
}

func writeLatency(w io.Writer, name string, l Latency) {
	fmt.Fprintf(w, "%s\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%s tickets)\n", name,
		fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.P999), fmtMS(l.Max), thousands(l.Count))
}

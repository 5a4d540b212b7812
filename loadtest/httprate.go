package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

// HTTPReport is the outcome of an http run: the rate one endpoint answers
// with a fixed number of requests in flight.
type HTTPReport struct {
	Target      string           `json:"target"` // "GET /livez" or "POST /v1/tickets"
	Concurrency int              `json:"concurrency"`
	DurationS   float64          `json:"duration_s"`
	OK          int64            `json:"ok"`
	PerS        float64          `json:"per_s"` // successful requests per second
	Latency     Latency          `json:"latency"`
	Errors      map[string]int64 `json:"errors"`
}

// runHTTP is the http mode: a closed loop of -concurrency workers (64 if
// unset) for -duration. With -http-create every request queues a new
// player, with skills 1,000 apart so that no matcher pairs them.
func runHTTP(ctx context.Context, c *Config) (*Report, error) {
	conc := c.Concurrency
	if conc == 0 {
		conc = 64
	}
	tr := newTransport(max(c.SourceAddrs, 1), conc)
	defer tr.CloseIdleConnections()
	client := newClient(tr, c.Fronts, c.Front)
	if err := client.authenticate(c.AuthSecret); err != nil {
		return nil, err
	}
	if err := checkLive(ctx, client, c.Front); err != nil {
		return nil, err
	}
	hr := &HTTPReport{Target: "GET " + c.HTTPPath, Concurrency: conc, Errors: map[string]int64{}}
	if c.HTTPCreate {
		hr.Target = "POST /v1/tickets"
	}
	var (
		mu   sync.Mutex
		hist = newHistogram()
		ok   atomic.Int64
		seq  atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	meter := startCPUMeter(c.ServicePIDs, c.InfraPIDs)
	end := start.Add(c.Duration)
	for range conc {
		wg.Go(func() {
			for range 100_000_000 { // each pass is a request; time ends it first
				if ctx.Err() != nil || !time.Now().Before(end) {
					return
				}
				t0 := time.Now()
				var err error
				if c.HTTPCreate {
					n := seq.Add(1)
					_, err = client.CreateOnce(ctx, c.Front, &contracts.TicketRequest{Queue: c.Queue, Players: []contracts.Player{{
						ID: fmt.Sprintf("%s-c%d", c.RunID, n), Skill: float64(n) * 1000,
					}}})
				} else {
					err = client.Get(ctx, "get", c.Front, c.HTTPPath)
				}
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					hr.Errors[errorKind(err)]++
				} else {
					recordDuration(hist, d)
				}
				mu.Unlock()
				if err == nil {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	hr.DurationS = time.Since(start).Seconds()
	hr.OK = ok.Load()
	hr.PerS = float64(hr.OK) / hr.DurationS
	hr.Latency = summarize(hist)

	rep := newReport(c, start)
	rep.HTTP = hr
	var procs []ProcessCPU
	rep.Generator, procs = meter.stop()
	rep.Services, rep.Infra = procs[:len(c.ServicePIDs)], procs[len(c.ServicePIDs):]
	rep.CPU = meter.machine(slices.Concat([]ProcessCPU{rep.Generator}, procs)...)
	var errs int64
	for _, n := range hr.Errors {
		errs += n
	}
	if total := errs + hr.OK; total == 0 || float64(errs)/float64(total) > c.MaxErrorRate {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d of %d requests failed", errs, total))
	}
	return rep, nil
}

func writeHTTPText(w io.Writer, h *HTTPReport) {
	fmt.Fprintf(w, "target\t%s, %d in flight, %.1f s\n", h.Target, h.Concurrency, h.DurationS)
	fmt.Fprintf(w, "rate\t%s requests/s (%s answered)\n", thousands(int64(h.PerS+0.5)), thousands(h.OK))
	writeLatency(w, "latency", h.Latency)
	for _, k := range slices.Sorted(maps.Keys(h.Errors)) {
		fmt.Fprintf(w, "  %s\t%d\n", k, h.Errors[k])
	}
}

// Command loadtest drives a running quickmatch suite over its public HTTP
// APIs, as a studio would before launch day: players queue at a rate or a
// concurrency and long-poll their tickets until assigned, while simulated
// game servers register, heartbeat, host the matches and end them. It
// reports throughput, time-to-assign percentiles, errors and lost tickets,
// and exits non-zero when a gate fails, so that it can gate a release.
//
// Other modes measure the long-poll capacity of one front (hold), the raw
// rate of one HTTP endpoint (http), and print the comparison table of
// earlier runs (table). Run `go run ./loadtest -h` for the flags.
//
// Every target must be a loopback address unless -allow-remote is given.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Exit codes.
const (
	exitPass  = 0
	exitFail  = 1 // a gate failed
	exitSetup = 2 // bad flags, or the run could not start
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitPass
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return exitSetup
	}
	if c.RunID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.RunID = "lt" + hex.EncodeToString(b[:])
	}
	if c.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c.Seed = binary.LittleEndian.Uint64(b[:])
	}

	var rep *Report
	switch c.Mode {
	case modeTable:
		if err := printTable(stdout, c.In); err != nil {
			fmt.Fprintln(stderr, "loadtest:", err)
			return exitSetup
		}
		return exitPass
	case modePlayers:
		rep, err = runPlayers(ctx, &c, stdout)
	case modeHold:
		rep, err = runHold(ctx, &c, stdout)
	case modeHTTP:
		rep, err = runHTTP(ctx, &c)
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return exitSetup
	}
	if ctx.Err() != nil {
		rep.Failures = append(rep.Failures, "interrupted")
	}
	rep.Pass = len(rep.Failures) == 0
	rep.writeText(stdout)
	if c.Out != "" {
		if err := rep.write(c.Out); err != nil {
			fmt.Fprintln(stderr, "loadtest:", err)
			return exitSetup
		}
		if rep.Players != nil {
			title := rep.Label
			if title == "" {
				title = "players"
			}
			if err := writeChart(filepath.Join(c.Out, "chart.png"), title, rep.Players.Timeline); err != nil {
				fmt.Fprintln(stderr, "loadtest:", err)
			}
		}
	}
	if !rep.Pass {
		return exitFail
	}
	return exitPass
}

// newReport fills in what every mode's report has.
func newReport(c *Config, start time.Time) *Report {
	host, _ := os.Hostname()
	return &Report{
		Label:     c.Label,
		Mode:      c.Mode,
		Scenario:  c.Scenario,
		Suite:     c.Suite,
		StartedAt: start.UTC().Truncate(time.Second),
		Front:     c.Front,
		Fronts:    c.Fronts,
		Assigner:  c.Assigner,
		Machine:   Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: gomaxprocs(), Hostname: host},
		Failures:  []string{},
	}
}

func cpuSum(ps []ProcessCPU) float64 {
	var s float64
	for _, p := range ps {
		s += p.CPUSeconds
	}
	return s
}

// checkLive fails fast when a target does not answer its liveness probe.
func checkLive(ctx context.Context, client *Client, bases ...string) error {
	for _, base := range bases {
		if err := client.Get(ctx, "livez", base, "/livez"); err != nil {
			return fmt.Errorf("%s does not answer /livez: %w", base, err)
		}
	}
	return nil
}

// runPlayers is the players mode: the fleet registers, players arrive for
// the duration, and the run ends when every ticket is terminal or the drain
// time is up; whatever is still open then is lost.
func runPlayers(ctx context.Context, c *Config, stdout io.Writer) (*Report, error) {
	nofile, err := raiseOpenFiles()
	if err != nil {
		return nil, err
	}
	maxInFlight := int64(c.MaxInFlight)
	if maxInFlight == 0 {
		// Each ticket in flight holds a connection, and so a file.
		maxInFlight = max(int64(nofile)-1000, 100)
	}
	tr := newTransport(max(c.SourceAddrs, 1), int(min(maxInFlight, 100_000)))
	defer tr.CloseIdleConnections()
	client := newClient(tr, c.Fronts, c.Assigner)
	if err := client.authenticate(c.AuthSecret); err != nil {
		return nil, err
	}
	if err := checkLive(ctx, client, append(slices.Clone(c.Fronts), c.Assigner)...); err != nil {
		return nil, err
	}
	var outcomes *outcomeLog
	if c.Outcomes != "" {
		if outcomes, err = createOutcomeLog(c.Outcomes); err != nil {
			return nil, err
		}
	}
	// Closed on every path; the close that counts is after the players.
	defer outcomes.close()

	fl := newFleet(c, client)
	if err := fl.register(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	measureFrom := start.Add(c.Warmup)
	rec := NewRecorder(start, measureFrom)
	meter := startCPUMeter(c.ServicePIDs, c.InfraPIDs)
	fleetCtx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	fl.start(fleetCtx, rec)

	progCtx, stopProgress := context.WithCancel(ctx)
	defer stopProgress()
	prog := &progress{w: stdout, tty: isTerminal(stdout), rec: rec, period: c.Progress, limit: c.Warmup + c.Duration + c.Drain + time.Minute}
	var progWG sync.WaitGroup
	progWG.Go(func() { prog.run(progCtx) })

	playCtx, cancelPlay := context.WithDeadline(ctx, measureFrom.Add(c.Duration+c.Drain))
	defer cancelPlay()
	arr := &arrivals{
		cfg:   c,
		maker: newTicketMaker(c, c.Seed),
		player: &player{client: client, rec: rec, pollWait: c.PollWait, pollUntil: c.PollUntil,
			cancelAtEnd: c.CancelAtEnd, outcomes: outcomes},
		rec:         rec,
		maxInFlight: maxInFlight,
	}
	if c.Concurrency > 0 {
		arr.closedLoop(ctx, playCtx, start)
	} else {
		arr.openLoop(ctx, playCtx, start)
	}
	rec.CloseWindow(time.Now())
	arr.wait()
	end := time.Now()
	outcomesErr := outcomes.close()
	cancelPlay()
	stopProgress()
	progWG.Wait()
	stopFleet()
	fl.wait()
	gen, procs := meter.stop()
	services, infra := procs[:len(c.ServicePIDs)], procs[len(c.ServicePIDs):]

	finishCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	fleetReport := fl.finish(finishCtx, c.ServerCapacity)

	rep := newReport(c, start)
	rep.Players = playersReport(c, rec.snapshot(), start, end, client.Requests())
	rep.Players.Fleet = fleetReport
	rep.Generator, rep.Services, rep.Infra = gen, services, infra
	rep.CPU = meter.machine(slices.Concat([]ProcessCPU{gen}, procs)...)
	if n := rep.Players.Players["assigned"]; n > 0 {
		rep.Players.ServicesCPUPerPlayerMS = cpuSum(services) * 1000 / float64(n)
		rep.Players.InfraCPUPerPlayerMS = cpuSum(infra) * 1000 / float64(n)
	}
	rep.Failures = append(rep.Failures, gatesOf(c).check(rep.Players)...)
	if outcomesErr != nil {
		rep.Failures = append(rep.Failures, outcomesErr.Error())
	}
	return rep, nil
}

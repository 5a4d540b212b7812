// Command chaos is the fault-injection run behind `make chaos`. It starts
// the distributed mode on loopback, isolated so that it runs beside
// anything else: its own redis-server (AOF, fsync every second) on a free
// port in a temporary directory, its own RabbitMQ vhost, and freshly built
// fronts, matchers and assigners on free ports. The load tester drives
// players through every front while, phase after phase, one kind of fault
// is injected on a seeded schedule: a matcher, an assigner, a front or
// Redis SIGKILLed and restarted, or every broker connection of the vhost
// closed; one phase injects none and one mixes them all.
//
// The checks look from outside: they read the suite's Redis directly, by
// the layout of internal/store/redisstore, sample the game servers'
// capacity every 50 ms, and read the load tester's report and outcomes at
// the end. Each phase is one row of a markdown table: double matches,
// servers over capacity, tickets stuck, creates told failed that exist,
// tickets lost, stale player claims, tickets nobody asked for, and apart
// from them what Redis's own durability window explains. The run exits 1
// on any violation.
//
// Everything it starts it stops by pid, and it deletes its vhost and
// temporary directories on exit, also on failure and on SIGINT. Run
// `go run ./loadtest/chaos -h` for the flags.
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
	mrand "math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	// go-redis logs every connection a Redis kill breaks; the run counts
	// what matters.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// harness is one run: the stack, the run's own view of its Redis, and
// what it must undo at the end.
type harness struct {
	cfg  *config
	logf func(format string, args ...any)
	tag  string // names the run's vhost and ids

	tmp, bin, logs string
	caps           caps
	st             *stack
	vhost          string
	rdb            *redis.Client
	rd             *reader
	wlog           *writeLog
	beat           *beater
	inj            *injector
	loadPid        atomic.Int64

	bgCancel context.CancelFunc
	bg       sync.WaitGroup
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitPass
	}
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return exitSetup
	}
	if cfg.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.Seed = binary.LittleEndian.Uint64(b[:]) >> 1
	}
	var logMu sync.Mutex
	h := &harness{cfg: &cfg, tag: newTag(), logf: func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(stderr, "%s  chaos: %s\n", time.Now().Format(time.TimeOnly), fmt.Sprintf(format, args...))
	}}
	defer h.cleanup()
	if err := h.setup(ctx); err != nil {
		h.logf("%v", err)
		return exitSetup
	}
	var results []phaseResult
	for i, f := range cfg.Phases {
		if ctx.Err() != nil {
			break
		}
		r := h.runPhase(ctx, i, f)
		h.logf("phase %d (%s): %s, %d violations, %d within durability", r.Phase, r.Fault, r.verdict(), r.violations(), r.withinDurability())
		results = append(results, r)
	}
	if ctx.Err() != nil {
		h.logf("interrupted: cleaning up")
	}
	var table strings.Builder
	writeTable(&table, results, &cfg, h.caps, cfg.Seed)
	fmt.Fprint(stdout, table.String())
	if cfg.Out != "" {
		if err := writeOut(cfg.Out, table.String(), results, &cfg, h.caps, cfg.Seed); err != nil {
			h.logf("writing %s: %v", cfg.Out, err)
		}
	}
	if cfg.Logs != "" {
		h.logf("logs kept in %s", cfg.Logs)
	}
	return exitCode(ctx, results, len(cfg.Phases))
}

func exitCode(ctx context.Context, rs []phaseResult, want int) int {
	code := exitPass
	for i := range rs {
		switch {
		case rs[i].violations() > 0:
			return exitViolation
		case rs[i].Error != "":
			code = exitSetup
		case rs[i].incomplete() && code == exitPass:
			code = exitPartial
		}
	}
	if ctx.Err() != nil || len(rs) < want {
		return exitSetup
	}
	return code
}

func newTag() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "chaos" + hex.EncodeToString(b[:])
}

// setup builds the binaries, probes the load tester, and starts the stack.
func (h *harness) setup(ctx context.Context) error {
	c := h.cfg
	var err error
	if h.tmp, err = os.MkdirTemp("", h.tag+"-"); err != nil {
		return err
	}
	h.bin = filepath.Join(h.tmp, "bin")
	h.logs = c.Logs
	if h.logs == "" {
		h.logs = filepath.Join(h.tmp, "logs")
	}
	redisDir := filepath.Join(h.tmp, "redis")
	for _, d := range []string{h.bin, h.logs, redisDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	h.logf("run %s, seed %d: building the services and the load tester", h.tag, c.Seed)
	if err := build(ctx, root, h.bin); err != nil {
		return err
	}
	if h.caps, err = probe(ctx, filepath.Join(h.bin, "loadtest"), h.logs); err != nil {
		return err
	}
	h.logf("load tester: %s", h.caps)
	if m := h.caps.missing(); len(m) > 0 && !c.Partial {
		return fmt.Errorf("the load tester (loadtest/) lacks %s; the checks need them. "+
			"Pass -partial to run without them: the checks that need them show n/a and the run exits %d",
			strings.Join(m, "; "), exitPartial)
	}

	red, err := newRedis(redisDir, h.logs)
	if err != nil {
		return err
	}
	h.vhost = h.tag
	h.st = &stack{cfg: c, bin: h.bin, logs: h.logs, vhost: h.vhost, redis: red, redisAddr: red.addr, prefix: "mm:",
		amqpURL: strings.TrimSuffix(c.AMQPURL, "/") + "/" + h.vhost, authSecret: "chaos-" + rand.Text()}
	if err := addVhost(ctx, h.vhost); err != nil {
		h.vhost = "" // nothing to delete
		return err
	}
	if err := writeQueues(filepath.Join(h.logs, "queues.yaml"), c); err != nil {
		return err
	}
	if err := red.start(ctx); err != nil {
		return err
	}
	bg, cancel := context.WithCancel(context.Background())
	h.bgCancel = cancel
	h.wlog = &writeLog{keep: c.DurabilityWindow + 5*time.Second}
	h.beat = &beater{}
	h.bg.Go(func() { h.wlog.follow(bg, red.addr, h.st.prefix) })
	h.bg.Go(func() { h.beat.run(bg, red.addr) })
	h.rdb = redis.NewClient(&redis.Options{Addr: red.addr, DialTimeout: time.Second, ReadTimeout: 10 * time.Second})
	h.rd = &reader{rdb: h.rdb, keys: keys{prefix: h.st.prefix}, queue: queueName}
	h.inj = &injector{cfg: c, st: h.st, rdb: h.rdb, wlog: h.wlog, beat: h.beat, logf: h.logf, vhost: h.vhost,
		rng: mrand.New(mrand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15)), durable: map[string]bool{}}
	h.logf("starting redis on %s, %d fronts, %d matchers, %d assigners on vhost %s", red.addr, c.Fronts, c.Matchers, c.Assigners, h.vhost)
	return h.st.start(ctx)
}

// cleanup stops everything the run started, by pid, and deletes its vhost
// and temporary directories. It runs on every exit.
func (h *harness) cleanup() {
	if pid := h.loadPid.Load(); pid > 0 {
		_ = syscall.Kill(int(pid), syscall.SIGKILL)
	}
	if h.bgCancel != nil {
		h.bgCancel()
		h.bg.Wait()
	}
	if h.st != nil {
		for _, err := range h.st.stop() {
			h.logf("cleanup: %v", err)
		}
	}
	if h.rdb != nil {
		h.rdb.Close()
	}
	if h.vhost != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := deleteVhost(ctx, h.vhost); err != nil {
			h.logf("cleanup: %v", err)
		}
		cancel()
	}
	if h.tmp != "" {
		if err := os.RemoveAll(h.tmp); err != nil {
			h.logf("cleanup: %v", err)
		}
	}
}

// settle is how long after the load tester starts the first fault may
// come: its game servers register first.
const settle = time.Second

// runPhase runs one phase and checks it.
func (h *harness) runPhase(ctx context.Context, i int, f fault) phaseResult {
	c := h.cfg
	runID := fmt.Sprintf("%s-%d%s", h.tag, i+1, f)
	players := runID + "-p"
	r := phaseResult{Phase: i + 1, Fault: f, RunID: runID}
	fail := func(err error) phaseResult {
		r.Error = err.Error()
		return r
	}
	supervise := func() {
		deaths, err := h.st.ensureUp(ctx)
		r.Deaths = append(r.Deaths, deaths...)
		if err != nil && ctx.Err() == nil {
			r.Notes = append(r.Notes, "restarting a dead process: "+err.Error())
		}
	}
	supervise()
	h.inj.takeDurable()
	h.logf("phase %d: %s for %s at %.0f players/s", i+1, faultText[f], c.PhaseDuration, c.Rate)

	servers := make([]string, c.Servers)
	for j := range servers {
		servers[j] = fmt.Sprintf("%s-gs%d", runID, j+1)
	}
	smp := &sampler{}
	sctx, stopSampling := context.WithCancel(ctx)
	var sampling sync.WaitGroup
	sampling.Go(func() { smp.run(sctx, h.rd, servers, c.SampleEvery) })
	defer func() { stopSampling(); sampling.Wait() }()

	lr, err := h.startLoad(ctx, runID, c.Seed+uint64(i)+1)
	if err != nil {
		return fail(err)
	}
	start := time.Now()
	loadEnd := start.Add(c.PhaseDuration)
	deadline := loadEnd.Add(c.drain())
	r.Injections = h.inj.run(ctx, f, start.Add(settle), loadEnd, supervise)
	if len(r.Injections) > 0 {
		h.logf("phase %d: %d injections; waiting for the load tester to drain", i+1, len(r.Injections))
	}
	waitErr := lr.wait(ctx, time.Until(deadline)+2*time.Minute)
	supervise()
	if waitErr != nil {
		return fail(waitErr)
	}

	rep, err := readLoadReport(filepath.Join(lr.dir, "report.json"))
	if err != nil {
		return fail(err)
	}
	for _, f := range rep.Failures {
		if strings.HasPrefix(f, "-outcomes") {
			return fail(fmt.Errorf("the load tester's outcomes are incomplete: %s", f))
		}
	}
	var outs []outcome
	if h.caps.Outcomes {
		if outs, err = readOutcomes(lr.outcomes); err != nil {
			return fail(fmt.Errorf("reading the outcomes: %w", err))
		}
	}

	// Tickets have until the deadline to end and their claims to go.
	st, err := h.state(ctx, players)
	if err != nil {
		return fail(err)
	}
	for range 10_000 {
		fd := evaluate(st, h.rd.keys, outs, h.caps.Outcomes)
		if len(fd.Stuck) == 0 && len(fd.Stale) == 0 || !time.Now().Before(deadline) {
			break
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return fail(ctx.Err())
		}
		if st, err = h.rd.refresh(ctx, st, players); err != nil {
			return fail(err)
		}
	}
	stopSampling()
	sampling.Wait()
	if st, err = h.state(ctx, players); err != nil {
		return fail(err)
	}
	fd := evaluate(st, h.rd.keys, outs, h.caps.Outcomes)
	durable := h.inj.takeDurable()
	r.DoublePlayers = classify(fd.DoublePlayers, durable)
	r.DoubleTickets = classify(fd.DoubleTickets, durable)
	r.Stuck = classify(fd.Stuck, durable)
	r.Stale = classify(fd.Stale, durable)
	var overExamples []string
	r.Samples, r.SampleErrors, r.OverCapacity.Violations, overExamples = smp.result()
	r.OverCapacity.Examples = overExamples
	p := rep.Players
	r.Assigned = p.Tickets["assigned"]
	r.Creates = p.Tickets["attempted"]
	r.P99ms = p.TimeToAssign.P99
	r.Requests, r.Errors = p.Requests, p.ErrorCount
	if h.caps.Outcomes {
		r.ToldFailedPresent = classify(fd.ToldFailedPresent, durable)
		r.Lost = classify(fd.Lost, durable)
		r.Phantom = classify(fd.Phantom, durable)
		r.Creates = 0
		lostSeen, unanswered := int64(0), 0
		for _, o := range outs {
			if o.Fate != fateSkipped {
				r.Creates++
			}
			switch o.Fate {
			case fateLost:
				lostSeen++
			case fateCreateUnanswered:
				unanswered++
			}
		}
		if unanswered > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("%d creates got no answer to some try and gave up; %d of them left a ticket the client cannot know of (not a violation: a ticket may exist)",
				unanswered, len(fd.Unanswered)))
		}
		if lostSeen != p.Lost {
			r.Notes = append(r.Notes, fmt.Sprintf("the report counts %d lost tickets, the outcomes %d", p.Lost, lostSeen))
		}
	} else {
		r.ToldFailedPresent.NA, r.Phantom.NA = true, true
		// Without the outcomes only the load tester's own count is known.
		r.Lost = count{Violations: int(p.Lost)}
		if p.Lost > 0 {
			r.Lost.Examples = []string{fmt.Sprintf("the load tester counts %d lost tickets, last seen %v", p.Lost, p.LostAt)}
		}
	}
	if n := p.Tickets["skipped"]; n > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("the load tester skipped %d arrivals (too many in flight)", n))
	}
	r.Notes = append(r.Notes, describeOutages(r.Injections)...)
	if slices.ContainsFunc(r.Injections, func(i injection) bool { return i.Kind == faultRedis }) {
		if h.wlog.count() == 0 {
			r.Notes = append(r.Notes, "no keyspace notification arrived: what a Redis kill lost could not be told apart")
		}
	}
	if r.SampleErrors > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d of %d capacity samples failed (Redis down)", r.SampleErrors, r.SampleErrors+r.Samples))
	}
	return r
}

// state reads the phase's store state, retrying while Redis restarts.
func (h *harness) state(ctx context.Context, players string) (*storeState, error) {
	var err error
	for range 20 {
		var st *storeState
		if st, err = h.rd.state(ctx, players); err == nil {
			return st, nil
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	return nil, fmt.Errorf("reading the store: %w", err)
}

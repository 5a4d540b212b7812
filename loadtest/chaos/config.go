package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// config is what a run is made of; flags fill it. The defaults are the
// long version that `make chaos` runs.
type config struct {
	PhaseDuration time.Duration // how long players arrive in each phase
	Rate          float64       // players per second
	Phases        []fault
	Seed          uint64
	Every         time.Duration // mean time between two injections
	Down          time.Duration // how long a killed service stays down
	RedisDown     time.Duration // how long the killed Redis stays down

	// The queue the players join: short, so that a phase drains fast.
	MaxWait        time.Duration
	AssignDeadline time.Duration
	RetryDelay     time.Duration
	// Grace is added to max wait + assign deadline after arrivals end:
	// the create retries, the reaper's grace and its interval fit in it.
	Grace time.Duration
	// DurabilityWindow bounds, before each Redis kill, the writes whose
	// loss is counted as within durability.
	DurabilityWindow time.Duration
	SampleEvery      time.Duration

	Fronts, Matchers, Assigners int
	Servers, ServerCapacity     int
	GameLength                  time.Duration

	AMQPURL string // the broker, without a vhost; the run adds its own vhost
	Logs    string // keep logs and the load tester's files here
	Out     string // write table.md and chaos.json here
	Partial bool   // run even if the load tester lacks features; exits 3
	Verbose bool
}

// Exit codes.
const (
	exitPass      = 0
	exitViolation = 1 // an invariant broke
	exitSetup     = 2 // bad flags, or the run could not start or finish
	exitPartial   = 3 // no violation, but some checks could not run (-partial)
)

func parseConfig(args []string, stderr io.Writer) (config, error) {
	var c config
	var phases, seed string
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./loadtest/chaos [flags]\n\n%s\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	fs.DurationVar(&c.PhaseDuration, "phase-duration", 60*time.Second, "how long players arrive in each phase (faults are injected meanwhile)")
	fs.Float64Var(&c.Rate, "rate", 250, "players arriving per second")
	fs.StringVar(&phases, "phases", joinFaults(allFaults), "phases to run, in order, comma-separated: "+joinFaults(allFaults))
	fs.StringVar(&seed, "seed", "", "seed of the fault schedule and of the players (default: from the clock; printed)")
	fs.DurationVar(&c.Every, "every", 4*time.Second, "mean time between two injections (jittered ±30%)")
	fs.DurationVar(&c.Down, "down", time.Second, "how long a killed front, matcher or assigner stays down before its restart")
	fs.DurationVar(&c.RedisDown, "redis-down", 2*time.Second, "how long the killed Redis stays down before its restart")
	fs.DurationVar(&c.MaxWait, "max-wait", 15*time.Second, "max_wait of the queue the players join")
	fs.DurationVar(&c.AssignDeadline, "assign-deadline", 10*time.Second, "assign_deadline of the queue")
	fs.DurationVar(&c.RetryDelay, "retry-delay", 500*time.Millisecond, "retry_delay of the queue")
	fs.DurationVar(&c.Grace, "grace", 20*time.Second, "added to max wait + assign deadline after arrivals end, before a ticket counts as stuck")
	fs.DurationVar(&c.DurabilityWindow, "durability-window", 2*time.Second, "writes lost from at most this long before a Redis kill count as within durability")
	fs.DurationVar(&c.SampleEvery, "sample", 50*time.Millisecond, "how often the game servers' capacity is sampled")
	fs.IntVar(&c.Fronts, "fronts", 2, "fronts (the load tester spreads players over them)")
	fs.IntVar(&c.Matchers, "matchers", 2, "matchers")
	fs.IntVar(&c.Assigners, "assigners", 2, "assigners (the game servers talk to the first)")
	fs.IntVar(&c.Servers, "servers", 10, "simulated game servers per phase")
	fs.IntVar(&c.ServerCapacity, "server-capacity", 64, "matches each game server hosts at once")
	fs.DurationVar(&c.GameLength, "game-length", 3*time.Second, "how long a game server holds a match")
	fs.StringVar(&c.AMQPURL, "amqp", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ on loopback that rabbitmqctl manages; the run creates and deletes its own vhost")
	fs.StringVar(&c.Logs, "logs", "", "keep the services' logs and the load tester's reports and outcomes in this directory (default: a temporary one, deleted)")
	fs.StringVar(&c.Out, "out", "", "also write table.md and chaos.json to this directory")
	fs.BoolVar(&c.Partial, "partial", false, "run even if the load tester lacks -outcomes or several -front; the checks that need them show n/a and the run exits 3")
	fs.BoolVar(&c.Verbose, "v", false, "log every injection")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var err error
	if c.Phases, err = parseFaults(phases); err != nil {
		return config{}, err
	}
	if seed != "" {
		if c.Seed, err = strconv.ParseUint(seed, 10, 64); err != nil {
			return config{}, fmt.Errorf("-seed: %w", err)
		}
	}
	return c, c.validate()
}

const usage = `chaos runs the distributed mode on loopback (2 fronts, 2 matchers, 2
assigners, a private redis-server and a private RabbitMQ vhost), drives it
with the load tester, and in each phase injects one kind of fault: SIGKILL of
a matcher, an assigner, a front or Redis (each restarted), or every broker
connection closed. It checks the suite's invariants from outside, by reading
its Redis directly, and prints one table row per phase. It exits 1 on any
violation.
`

func (c *config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	// Every loop of the run is bounded by these.
	if c.PhaseDuration < time.Second || c.PhaseDuration > time.Hour {
		bad("-phase-duration must be between 1s and 1h")
	}
	if !(c.Rate > 0 && c.Rate <= 5000) {
		bad("-rate must be above 0 and at most 5000")
	}
	if c.Every < 100*time.Millisecond || c.Down < 0 || c.Down > time.Minute || c.RedisDown < 0 || c.RedisDown > time.Minute {
		bad("-every must be at least 100ms; -down and -redis-down between 0 and 1m")
	}
	if c.MaxWait <= 0 || c.AssignDeadline <= 0 || c.RetryDelay <= 0 || c.RetryDelay > c.MaxWait ||
		c.MaxWait > 10*time.Minute || c.AssignDeadline > 10*time.Minute {
		bad("-max-wait and -assign-deadline must be positive and at most 10m; -retry-delay positive and at most -max-wait")
	}
	if c.Grace < 0 || c.Grace > 10*time.Minute || c.DurabilityWindow < 0 || c.DurabilityWindow > time.Minute {
		bad("-grace must be between 0 and 10m, -durability-window between 0 and 1m")
	}
	if c.SampleEvery < 5*time.Millisecond || c.SampleEvery > 10*time.Second {
		bad("-sample must be between 5ms and 10s")
	}
	if c.Fronts < 1 || c.Fronts > 8 || c.Matchers < 1 || c.Matchers > 8 || c.Assigners < 1 || c.Assigners > 8 {
		bad("-fronts, -matchers and -assigners must be between 1 and 8")
	}
	if c.Servers < 1 || c.Servers > 1000 || c.ServerCapacity < 1 || c.ServerCapacity > 10000 || c.GameLength < 0 {
		bad("-servers must be between 1 and 1000, -server-capacity between 1 and 10000, -game-length not negative")
	}
	if len(c.Phases) == 0 || len(c.Phases) > 50 {
		bad("-phases must name between 1 and 50 phases")
	}
	if err := checkLoopbackURL(c.AMQPURL, "amqp"); err != nil {
		bad("-amqp: %v", err)
	}
	return errors.Join(errs...)
}

// checkLoopbackURL refuses any target but a loopback address: the run
// kills, restarts and floods what it talks to.
func checkLoopbackURL(raw, scheme string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != scheme {
		return fmt.Errorf("scheme must be %s, not %q", scheme, u.Scheme)
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address", host)
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		return fmt.Errorf("give the broker without a vhost (the run makes its own), not %q", raw)
	}
	return nil
}

func parseFaults(s string) ([]fault, error) {
	var out []fault
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if item == "all" {
			out = append(out, allFaults...)
			continue
		}
		f := fault(item)
		if !slices.Contains(allFaults, f) {
			return nil, fmt.Errorf("-phases: unknown phase %q (known: %s, or all)", item, joinFaults(allFaults))
		}
		out = append(out, f)
	}
	return out, nil
}

func joinFaults(fs []fault) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = string(f)
	}
	return strings.Join(s, ",")
}

// drain is how long, after arrivals end, a phase gives its tickets to end.
func (c *config) drain() time.Duration { return c.MaxWait + c.AssignDeadline + c.Grace }

// retention is the suite's MM_RETENTION: well past the end of a phase's
// checks, so that none of its records is purged before, but short enough
// that the store (and so the AOF a restarted Redis replays) holds about
// two phases, not the whole run.
func (c *config) retention() time.Duration {
	return max(2*(c.PhaseDuration+c.drain()), 2*time.Minute)
}

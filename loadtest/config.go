package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

// Modes the command runs in.
const (
	modePlayers = "players" // queued players and game servers
	modeHold    = "hold"    // long-poll capacity of one front
	modeHTTP    = "http"    // the raw HTTP rate of one endpoint
	modeTable   = "table"   // the comparison table of earlier reports
)

// Config is everything a run is made of; flags fill it.
type Config struct {
	Mode     string
	Scenario string
	Label    string
	Suite    string // what is under test, such as embedded or distributed

	Front       string   // base URL of the player API: the first of Fronts
	Fronts      []string // base URLs of the player API; players spread over them
	Assigner    string   // base URL of the game-server API
	AllowRemote bool
	// AuthSecret is the suite's HS256 secret, to mint tokens with; empty
	// when the suite runs without auth.
	AuthSecret string

	// Players.
	Rate        float64       // players per second; used when Concurrency is 0
	Concurrency int           // players in the queue at once (closed loop)
	Players     int64         // total players; 0 means only Duration bounds the run
	Duration    time.Duration // how long players arrive, after the warm-up
	Warmup      time.Duration // how long players arrive before the measured part
	Drain       time.Duration // how long, after arrivals end, tickets have to finish
	Queue       string
	SkillMean   float64
	SkillStddev float64
	Regions     []Region // latencies every player reports, before jitter
	Jitter      float64  // ± milliseconds added to each latency
	Party       []PartyShare
	PollWait    time.Duration
	PollUntil   string // a ticket poll's ?until: "", matched or assigned
	CancelAtEnd bool   // cancel tickets still searching at the end, instead of counting them lost
	MaxInFlight int    // tickets held at once; 0 picks one from the open-file limit

	// Game servers.
	Servers        int // 0 sizes the fleet for the whole run (see fleetSize)
	ServerCapacity int
	ServerRegions  []string
	GameLength     time.Duration // 0 holds every match until the run ends
	Heartbeat      time.Duration
	MatchSize      int // players per match, to size the fleet

	// Gates: a run that breaks one exits non-zero.
	MaxErrorRate  float64
	MaxUnassigned float64       // fraction of created tickets that may end other than assigned
	MaxP99        time.Duration // 0: no bound
	MinThroughput float64       // fraction of Rate that must be assigned per second; 0: no bound

	Out         string
	Outcomes    string // file of one JSON line per logical create; "": none
	Progress    time.Duration
	Seed        uint64
	SourceAddrs int    // loopback source addresses to spread connections over; 0: automatic
	ServicePIDs []PID  // the suite's processes, whose CPU the report accounts for
	InfraPIDs   []PID  // processes it stands on (Redis, RabbitMQ), reported apart
	RunID       string // makes player and server ids unique to the run

	// Hold.
	Hold        int
	FrontPID    int
	Wake        string // sigterm or cancel
	HoldStream  bool   // hold ticket streams (SSE) instead of long-polls
	HoldTimeout time.Duration

	// HTTP.
	HTTPPath   string
	HTTPCreate bool

	// Table.
	In string
}

// Region is a region and the latency players report to it.
type Region struct {
	Name      string
	LatencyMS float64
}

// PartyShare is the weight of one party size in the mix.
type PartyShare struct {
	Size   int
	Weight float64
}

// PID names a process whose CPU time the report accounts for.
type PID struct {
	Name string
	PID  int
}

// parseConfig reads the command line. The scenario preset fills the flags
// the command line leaves unset.
func parseConfig(args []string, stderr io.Writer) (Config, error) {
	var (
		c                                                        Config
		fronts, regions, party, serverRegions, pids, infra, seed string
	)
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./loadtest [flags]\n\n%s\n\nFlags:\n", usageText)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Mode, "mode", modePlayers, "players, hold, http or table")
	fs.StringVar(&c.Scenario, "scenario", "", "preset: pipeline (one skill band, one region, ample servers)")
	fs.StringVar(&c.Label, "label", "", "name of the run in reports and tables")
	fs.StringVar(&c.Suite, "suite", "", "what is under test, for the table: embedded or distributed")
	fs.StringVar(&fronts, "front", "http://127.0.0.1:8080", "base URL of the player API, or several, comma-separated: players spread over them round robin, and a create retry or a poll that failed on a connection error or a 5xx goes to the next")
	fs.StringVar(&c.Assigner, "assigner", "", "base URL of the game-server API (default: the first -front)")
	fs.BoolVar(&c.AllowRemote, "allow-remote", false, "allow targets that are not loopback addresses")
	fs.StringVar(&c.AuthSecret, "auth-secret", os.Getenv("MM_AUTH_HS256_SECRET"), "HS256 secret of a suite with auth on: the run mints a service token for the ticket calls and a server token per game server (default: $MM_AUTH_HS256_SECRET)")

	fs.Float64Var(&c.Rate, "rate", 100, "players arriving per second (open loop)")
	fs.IntVar(&c.Concurrency, "concurrency", 0, "if set, players in the queue at once (closed loop) instead of -rate")
	fs.Int64Var(&c.Players, "players", 0, "total players; 0: until -duration ends")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "how long players arrive (after the warm-up)")
	fs.DurationVar(&c.Warmup, "warmup", 0, "players arrive at the rate for this long first; they count for lost tickets and errors, not for throughput and latency")
	fs.DurationVar(&c.Drain, "drain", 30*time.Second, "after arrivals end, how long tickets have to reach a terminal status")
	fs.StringVar(&c.Queue, "queue", "duel", "matchmaking queue")
	fs.Float64Var(&c.SkillMean, "skill-mean", 1500, "mean of the players' skill (normal distribution)")
	fs.Float64Var(&c.SkillStddev, "skill-stddev", 200, "standard deviation of the players' skill")
	fs.StringVar(&regions, "regions", "eu-west=30,us-east=110", "latency in ms each player reports per region, region=ms,...")
	fs.Float64Var(&c.Jitter, "latency-jitter", 20, "± ms of uniform noise on each reported latency")
	fs.StringVar(&party, "party", "1=1", "party mix as size=weight,...: 1=0.8,2=0.2")
	fs.DurationVar(&c.PollWait, "poll-wait", 30*time.Second, "wait asked for by each long-poll")
	fs.StringVar(&c.PollUntil, "poll-until", "", "ticket polls ask to be held until the ticket is matched or assigned (?until=); empty: answered at every change. With assigned the time to match is not seen and reads as the time to assign")
	fs.BoolVar(&c.CancelAtEnd, "cancel-at-end", true, "at the end, cancel tickets still searching and count them abandoned; false counts them lost (use with -drain past the queue's max wait)")
	fs.IntVar(&c.MaxInFlight, "max-inflight", 0, "most tickets in flight at once; arrivals past it are skipped and fail the run (0: from the open-file limit)")

	fs.IntVar(&c.Servers, "servers", 10, "simulated game servers (0: enough for every match of the run)")
	fs.IntVar(&c.ServerCapacity, "server-capacity", 16, "matches each game server hosts at once")
	fs.StringVar(&serverRegions, "server-regions", "", "regions the servers register in, round robin (default: those of -regions)")
	fs.DurationVar(&c.GameLength, "game-length", 30*time.Second, "how long a server holds a match before ending it (0: until the run ends)")
	fs.DurationVar(&c.Heartbeat, "heartbeat", 5*time.Second, "game-server heartbeat period")
	fs.IntVar(&c.MatchSize, "match-size", 2, "players per match, to size the fleet with -servers 0")

	fs.Float64Var(&c.MaxErrorRate, "max-error-rate", 0.001, "fail when failed requests pass this fraction of all requests")
	fs.Float64Var(&c.MaxUnassigned, "max-unassigned", 1, "fail when more than this fraction of tickets ends cancelled, expired or failed")
	fs.DurationVar(&c.MaxP99, "max-p99", 0, "fail when the time-to-assign p99 passes this (0: no bound)")
	fs.Float64Var(&c.MinThroughput, "min-throughput", 0, "fail when fewer than this fraction of -rate players are assigned per second (0: no bound)")

	fs.StringVar(&c.Out, "out", "", "directory for report.txt, report.json and chart.png")
	fs.StringVar(&c.Outcomes, "outcomes", "", "players mode: write to this file one JSON line per logical create (an arrival skipped for -max-inflight sends none), complete when the run ends: "+
		`{"players":[ids],"ticket":id or "","fate":f,"front":url of the last create try,"tries":n}, f one of `+strings.Join(fateNames(), ", ")+
		"; create_failed: the suite refused every try, so no ticket was made; create_unanswered: a try got no answer, so a ticket may exist")
	fs.DurationVar(&c.Progress, "progress", time.Second, "progress period")
	fs.StringVar(&seed, "seed", "", "random seed (default: from the clock)")
	fs.IntVar(&c.SourceAddrs, "source-addrs", 0, "spread connections over 127.0.0.1..127.0.0.N (0: one, or enough for -hold)")
	fs.StringVar(&pids, "service-pids", "", "the suite's processes, whose CPU the report accounts for per player: name=pid,...")
	fs.StringVar(&infra, "infra-pids", "", "processes the suite stands on (Redis, RabbitMQ), whose CPU is reported apart: name=pid,...")
	fs.StringVar(&c.RunID, "run-id", "", "prefix of player and server ids (default: random)")

	fs.IntVar(&c.Hold, "hold", 50000, "hold mode: long-polls to hold on the front")
	fs.IntVar(&c.FrontPID, "front-pid", 0, "hold mode: pid of the front process, for its memory and -wake sigterm")
	fs.StringVar(&c.Wake, "wake", "cancel", "hold mode: wake the polls by cancelling the tickets (cancel) or stopping the front (sigterm)")
	fs.BoolVar(&c.HoldStream, "hold-stream", false, "hold mode: hold Server-Sent Event streams of the tickets (GET /v1/tickets/{id}/events) instead of long-polls; with -wake cancel, the wake is the time to deliver the cancel to every stream")
	fs.DurationVar(&c.HoldTimeout, "hold-timeout", 60*time.Second, "hold mode: bound on each phase (create, hold, wake)")

	fs.StringVar(&c.HTTPPath, "http-path", "/livez", "http mode: path to GET")
	fs.BoolVar(&c.HTTPCreate, "http-create", false, "http mode: POST tickets instead of GET -http-path")

	fs.StringVar(&c.In, "in", "", "table mode: directory holding the reports of earlier runs")

	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	c.Fronts = parseFronts(fronts)
	if len(c.Fronts) > 0 {
		c.Front = c.Fronts[0]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := applyScenario(&c, &regions, &party, set); err != nil {
		return Config{}, err
	}

	var err error
	if c.Regions, err = parseRegions(regions); err != nil {
		return Config{}, err
	}
	if c.Party, err = parsePartyMix(party); err != nil {
		return Config{}, err
	}
	if serverRegions == "" {
		for _, r := range c.Regions {
			c.ServerRegions = append(c.ServerRegions, r.Name)
		}
	} else {
		c.ServerRegions = splitList(serverRegions)
	}
	if c.ServicePIDs, err = parsePIDs(pids); err != nil {
		return Config{}, fmt.Errorf("-service-pids: %w", err)
	}
	if c.InfraPIDs, err = parsePIDs(infra); err != nil {
		return Config{}, fmt.Errorf("-infra-pids: %w", err)
	}
	if seed != "" {
		if c.Seed, err = strconv.ParseUint(seed, 10, 64); err != nil {
			return Config{}, fmt.Errorf("-seed: %w", err)
		}
	}
	if c.Assigner == "" {
		c.Assigner = c.Front
	}
	return c, c.validate()
}

const usageText = `loadtest drives a running quickmatch suite over its public HTTP APIs.

  players  players queue at -rate (or -concurrency), long-poll their tickets
           until assigned, while -servers game servers host the matches;
           reports throughput, time-to-assign percentiles, errors and lost
           tickets, and exits 1 when a gate fails.
  hold     holds -hold long-polls on one front and reports its memory per
           held poll and the time to wake them all.
  http     closed-loop requests to one endpoint, for the raw HTTP rate.
  table    prints the comparison table of the reports under -in.`

// applyScenario fills in the preset's values for flags not set explicitly.
func applyScenario(c *Config, regions, party *string, set map[string]bool) error {
	switch c.Scenario {
	case "":
		return nil
	case "pipeline":
		// Every ticket finds a partner at once and a server is always
		// free, so the time to assign is the suite's own overhead.
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("skill-stddev", func() { c.SkillStddev = 0 })
		def("regions", func() { *regions = "eu-west=20" })
		def("latency-jitter", func() { c.Jitter = 0 })
		def("party", func() { *party = "1=1" })
		def("servers", func() { c.Servers = 0 })
		def("server-capacity", func() { c.ServerCapacity = 10000 })
		def("game-length", func() { c.GameLength = 0 })
		def("max-unassigned", func() { c.MaxUnassigned = 0 })
		// Past the default queue's 30 s assignment deadline, so that a
		// match waiting out an outage for a server is counted as what it
		// becomes, not as lost.
		def("drain", func() { c.Drain = 35 * time.Second })
		return nil
	}
	return fmt.Errorf("unknown -scenario %q (known: pipeline)", c.Scenario)
}

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Mode {
	case modeTable:
		if c.In == "" {
			bad("-mode table needs -in")
		}
		return errors.Join(errs...)
	case modePlayers, modeHold, modeHTTP:
	default:
		bad("unknown -mode %q", c.Mode)
	}
	errs = append(errs, checkFronts(c.Fronts, c.AllowRemote)...)
	if len(c.Fronts) > 1 && c.Mode != modePlayers {
		bad("-mode %s loads one front: give one -front", c.Mode)
	}
	if c.Outcomes != "" && c.Mode != modePlayers {
		bad("-outcomes needs -mode players")
	}
	if err := checkTarget("-assigner", c.Assigner, c.AllowRemote); err != nil {
		errs = append(errs, err)
	}
	if c.Concurrency == 0 && (c.Rate <= 0 || math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate)) {
		bad("-rate must be positive")
	}
	if c.Concurrency < 0 || c.Players < 0 || c.MaxInFlight < 0 || c.SourceAddrs < 0 || c.Servers < 0 {
		bad("-concurrency, -players, -max-inflight, -source-addrs and -servers must not be negative")
	}
	// Every phase is bounded in time, whatever the counts say.
	if c.Duration <= 0 || c.Duration > 24*time.Hour || c.Warmup < 0 || c.Warmup > time.Hour {
		bad("-duration must be positive and at most 24h; -warmup between 0 and 1h")
	}
	if c.Drain <= 0 || c.Drain > time.Hour || c.HoldTimeout <= 0 || c.HoldTimeout > time.Hour {
		bad("-drain and -hold-timeout must be positive and at most 1h")
	}
	if c.PollUntil != "" && c.PollUntil != string(contracts.StatusMatched) && c.PollUntil != string(contracts.StatusAssigned) {
		errs = append(errs, fmt.Errorf("-poll-until must be matched, assigned or empty, not %q", c.PollUntil))
	}
	if c.PollWait <= 0 || c.Progress <= 0 || c.Heartbeat <= 0 || c.GameLength < 0 {
		bad("-poll-wait, -progress and -heartbeat must be positive; -game-length must not be negative")
	}
	if c.SkillStddev < 0 || c.Jitter < 0 {
		bad("-skill-stddev and -latency-jitter must not be negative")
	}
	if c.ServerCapacity < 1 || c.ServerCapacity > 10000 {
		bad("-server-capacity must be between 1 and 10000 (the API's limit)")
	}
	if c.MatchSize < 1 {
		bad("-match-size must be at least 1")
	}
	if c.Queue == "" {
		bad("-queue must not be empty")
	}
	if len(c.ServerRegions) == 0 && c.Mode == modePlayers {
		bad("the servers need a region: set -regions or -server-regions")
	}
	if c.MaxErrorRate < 0 || c.MaxUnassigned < 0 || c.MinThroughput < 0 || c.MaxP99 < 0 {
		bad("gates must not be negative")
	}
	if c.Mode == modeHold {
		if c.Hold < 1 || c.Hold > 1_000_000 {
			bad("-hold must be between 1 and 1000000")
		}
		if c.Wake != "cancel" && c.Wake != "sigterm" {
			bad("-wake must be cancel or sigterm")
		}
		if c.Wake == "sigterm" && c.FrontPID <= 0 {
			bad("-wake sigterm needs -front-pid")
		}
	}
	if c.Mode == modeHTTP && !c.HTTPCreate && !strings.HasPrefix(c.HTTPPath, "/") {
		bad("-http-path must start with /")
	}
	return errors.Join(errs...)
}

// parseFronts reads "http://127.0.0.1:8080,http://127.0.0.1:8090", each
// without its trailing slash, as the client sends and the outcomes name it.
func parseFronts(s string) []string {
	var out []string
	for _, f := range splitList(s) {
		out = append(out, trimSlash(f))
	}
	return out
}

// checkFronts checks each front as a target, and that each is named once:
// one named twice would take twice its share of the players.
func checkFronts(fronts []string, allowRemote bool) []error {
	if len(fronts) == 0 {
		return []error{errors.New("-front must name at least one base URL")}
	}
	if len(fronts) > maxFronts {
		return []error{fmt.Errorf("-front names %d fronts, more than %d", len(fronts), maxFronts)}
	}
	var errs []error
	for i, f := range fronts {
		if err := checkTarget("-front", f, allowRemote); err != nil {
			errs = append(errs, err)
		} else if slices.Contains(fronts[:i], f) {
			errs = append(errs, fmt.Errorf("-front: %s appears twice", f))
		}
	}
	return errs
}

// maxFronts bounds the fronts of one run.
const maxFronts = 64

// checkTarget refuses a base URL whose host is not a loopback address,
// unless remote targets are allowed. Host names other than localhost are
// refused rather than resolved: a name's answer can change between the
// check and the connection.
func checkTarget(flagName, raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", flagName, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s: scheme must be http or https, not %q", flagName, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("%s: %q has no host", flagName, raw)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return fmt.Errorf("%s: give a base URL without path or query, not %q", flagName, raw)
	}
	if allowRemote || isLoopbackHost(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("%s: %s is not a loopback address; pass -allow-remote to load a remote suite", flagName, u.Hostname())
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseRegions reads "eu-west=30,us-east=110".
func parseRegions(s string) ([]Region, error) {
	var out []Region
	for _, item := range splitList(s) {
		name, ms, ok := strings.Cut(item, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("-regions: %q is not region=ms", item)
		}
		v, err := strconv.ParseFloat(ms, 64)
		if err != nil || v < 0 || v > 60000 {
			return nil, fmt.Errorf("-regions: latency of %s must be between 0 and 60000 ms, not %q", name, ms)
		}
		if slices.ContainsFunc(out, func(r Region) bool { return r.Name == name }) {
			return nil, fmt.Errorf("-regions: %s appears twice", name)
		}
		out = append(out, Region{Name: name, LatencyMS: v})
	}
	return out, nil
}

// parsePartyMix reads "1=0.8,2=0.2"; weights need not sum to one.
func parsePartyMix(s string) ([]PartyShare, error) {
	var (
		out   []PartyShare
		total float64
	)
	for _, item := range splitList(s) {
		size, weight, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("-party: %q is not size=weight", item)
		}
		n, err := strconv.Atoi(size)
		if err != nil || n < 1 || n > 100 {
			return nil, fmt.Errorf("-party: size must be between 1 and 100, not %q", size)
		}
		w, err := strconv.ParseFloat(weight, 64)
		if err != nil || w < 0 || math.IsInf(w, 0) || math.IsNaN(w) {
			return nil, fmt.Errorf("-party: weight of size %d must be a non-negative number, not %q", n, weight)
		}
		if slices.ContainsFunc(out, func(p PartyShare) bool { return p.Size == n }) {
			return nil, fmt.Errorf("-party: size %d appears twice", n)
		}
		out = append(out, PartyShare{Size: n, Weight: w})
		total += w
	}
	if total <= 0 {
		return nil, fmt.Errorf("-party: needs at least one size with a positive weight")
	}
	return out, nil
}

// parsePIDs reads "front=123,matcher=456".
func parsePIDs(s string) ([]PID, error) {
	var out []PID
	for _, item := range splitList(s) {
		name, v, ok := strings.Cut(item, "=")
		pid, err := strconv.Atoi(v)
		if !ok || name == "" || err != nil || pid <= 0 {
			return nil, fmt.Errorf("%q is not name=pid", item)
		}
		out = append(out, PID{Name: name, PID: pid})
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// fleetSize is how many servers of the given capacity host every match of
// a run of the given players when no match ends before the run does, with
// a quarter to spare.
func fleetSize(players int64, matchSize, capacity int) int {
	matches := float64(players) / float64(matchSize)
	return max(1, int(math.Ceil(matches*1.25/float64(capacity))))
}

// expectedPlayers bounds the players a run can create.
func (c *Config) expectedPlayers() int64 {
	n := int64(math.Ceil(c.Rate * (c.Warmup + c.Duration).Seconds()))
	if c.Concurrency > 0 {
		// A closed loop has no rate; assume players that take 1 ms.
		n = int64(c.Concurrency) * int64((c.Warmup+c.Duration)/time.Millisecond)
	}
	if c.Players > 0 {
		n = min(n, c.Players)
	}
	return n
}

// gomaxprocs is reported with the generator's CPU, to read it against.
func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

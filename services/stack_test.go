package services

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/auth/authtest"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// testQueue is duel with deadlines short enough for tests.
func testQueue() queues.Queue {
	q := queues.Duel()
	q.MaxWait = 20 * time.Second
	q.AssignDeadline = 3 * time.Second
	q.RetryDelay = 200 * time.Millisecond
	return q
}

type mode string

const (
	embedded    mode = "embedded"
	distributed mode = "distributed"
)

// stack is a running suite: one all-in-one app in the embedded mode, or
// separate front, matcher and assigner apps, each with its own connections,
// in the distributed mode.
type stack struct {
	cfg         Config
	frontURL    string
	assignerURL string
	redis       *redis.Client // distributed only
	front       *runningApp   // the app serving the player API; its deps reach the store and broker
	assigners   []*runningApp // the apps consuming match messages
	mu          sync.Mutex
	matchers    []*runningApp
}

type runningApp struct {
	app    *App
	cancel context.CancelFunc
	done   chan error
}

type stackOptions struct {
	matchers, assigners int
	noMatchers          bool // start no matcher; the test drives matching
	queue               queues.Queue
	more                []queues.Queue // further queues beside queue
	orphanAfter         time.Duration  // MM_ORPHAN_AFTER; 0 turns it off
	// auth, when set, turns authentication on with these keys (the HS256
	// secret and a JWKS file of the public keys), testIssuer and
	// testAudience; otherwise the stack runs with MM_AUTH=off.
	auth        *authtest.Keys
	createBurst int // MM_CREATE_BURST when auth is on
	// failureBurst is MM_AUTH_FAILURE_BURST when auth is on; 0 turns the
	// limit off, since every test client shares one address.
	failureBurst int
	tracing      bool // cfg.Tracing: spans go to the provider the test set
}

func startStack(t *testing.T, m mode, opt stackOptions) *stack {
	t.Helper()
	if opt.matchers == 0 {
		opt.matchers = 1
	}
	if opt.assigners == 0 {
		opt.assigners = 1
	}
	if opt.queue.Name == "" {
		opt.queue = testQueue()
	}
	set, err := queues.NewSet(append([]queues.Queue{opt.queue}, opt.more...)...)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTPAddr = "127.0.0.1:0"
	// These tests are of the pipeline; auth_test.go has the stacks that
	// authenticate.
	cfg.Auth = "off"
	cfg.Queues = set
	cfg.ShutdownTimeout = 10 * time.Second
	cfg.AssignRetryDelay = 100 * time.Millisecond
	cfg.ReapInterval = 200 * time.Millisecond
	cfg.ReapGrace = time.Second
	cfg.OrphanAfter = opt.orphanAfter
	// The tests register their game servers once and never heartbeat: on
	// a slow run (-race, packages side by side) the default 15 s would
	// expire them mid-test and fail matches for want of capacity.
	cfg.ServerTTL = 5 * time.Minute
	if opt.auth != nil {
		cfg.Auth = ""
		cfg.AuthHS256Secret = string(opt.auth.Secret())
		cfg.AuthJWKSFile = filepath.Join(t.TempDir(), "jwks.json")
		if err := os.WriteFile(cfg.AuthJWKSFile, opt.auth.JWKS(), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.AuthIssuer, cfg.AuthAudience = testIssuer, testAudience
		if opt.createBurst > 0 {
			cfg.CreateBurst, cfg.CreateRate = opt.createBurst, 0.001
			cfg.ExplainBurst, cfg.ExplainRate = opt.createBurst, 0.001
		}
		cfg.AuthFailureRate = 0
		if opt.failureBurst > 0 {
			cfg.AuthFailureBurst, cfg.AuthFailureRate = opt.failureBurst, 0.001
		}
	}
	cfg.Tracing = opt.tracing
	s := &stack{cfg: cfg}
	if m == embedded {
		s.cfg.AMQPURL, s.cfg.RedisAddr = "", ""
		a := s.start(t, All)
		s.front = a
		s.assigners = []*runningApp{a}
		s.frontURL = "http://" + a.app.Addr()
		s.assignerURL = s.frontURL
		return s
	}
	s.cfg.AMQPURL = testenv.AMQPURL(t)
	s.cfg.RedisAddr = testenv.RedisAddr(t)
	prefix := testenv.Prefix(t)
	s.cfg.AMQPPrefix, s.cfg.RedisPrefix = prefix, prefix
	s.redis = redis.NewClient(&redis.Options{Addr: s.cfg.RedisAddr})
	t.Cleanup(func() { cleanupBackends(t, s.cfg, s.redis) })
	s.front = s.start(t, Front)
	s.frontURL = "http://" + s.front.app.Addr()
	for range opt.assigners {
		a := s.start(t, Assigner)
		s.assigners = append(s.assigners, a)
		s.assignerURL = "http://" + a.app.Addr()
	}
	if !opt.noMatchers {
		for range opt.matchers {
			s.addMatcher(t)
		}
	}
	return s
}

// assignments is how many match messages of queue the stack's assigners
// have handled with outcome (assigned, no_capacity, failed), all together.
// The count goes up after the store call it reports has returned.
func (s *stack) assignments(t *testing.T, queue, outcome string) int {
	t.Helper()
	var total float64
	for _, a := range s.assigners {
		var m dto.Metric
		if err := a.app.metrics.Assignments.WithLabelValues(queue, outcome).Write(&m); err != nil {
			t.Fatal(err)
		}
		total += m.GetCounter().GetValue()
	}
	return int(total)
}

// awaitAssignments waits until the assigners have handled at least n match
// messages of queue with outcome, and returns how many they have.
func (s *stack) awaitAssignments(t *testing.T, queue, outcome string, n int, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := s.assignments(t, queue, outcome)
		if got >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("assigners handled %d match messages with outcome %s within %v, want %d", got, outcome, within, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *stack) addMatcher(t *testing.T) *runningApp {
	t.Helper()
	a := s.start(t, Matcher)
	s.mu.Lock()
	s.matchers = append(s.matchers, a)
	s.mu.Unlock()
	return a
}

// start runs an app until the test ends.
func (s *stack) start(t *testing.T, roles Role) *runningApp {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := New(ctx, s.cfg, roles, log.With("role", roles.String()))
	if err != nil {
		cancel()
		t.Fatalf("starting %s: %v", roles, err)
	}
	r := &runningApp{app: app, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- app.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	testenv.WaitReady(t, "http://"+app.Addr())
	return r
}

func (r *runningApp) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("app stopped with: %v", err)
		}
		r.done <- nil // later stops return at once
	case <-time.After(20 * time.Second):
		t.Errorf("app did not stop within 20s")
	}
}

// cleanupBackends deletes the test's queues and keys.
func cleanupBackends(t *testing.T, cfg Config, rdb *redis.Client) {
	t.Helper()
	defer rdb.Close()
	testenv.DeleteKeys(t, rdb.Options().Addr, cfg.RedisPrefix)
	conn, err := amqp.Dial(cfg.AMQPURL)
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	names := []string{contracts.MatchQueue, contracts.DeadLetterQueue}
	for _, q := range cfg.Queues.Names() {
		names = append(names, contracts.TicketQueue(q))
	}
	for _, n := range names {
		ch.QueueDelete(cfg.AMQPPrefix+n, false, false, false)
		ch.QueueDelete(cfg.AMQPPrefix+n+contracts.RetrySuffix, false, false, false)
	}
}

// client is a small HTTP client of both APIs for tests.
type client struct {
	t    testing.TB
	http *http.Client
	// authorize, when set, adds the request's credentials.
	authorize func(*http.Request)
}

func newClient(t testing.TB) *client {
	return &client{t: t, http: &http.Client{Timeout: 90 * time.Second}}
}

func (c *client) do(method, url string, body any, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.authorize != nil {
		c.authorize(req)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	if out != nil && len(raw) > 0 && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: decoding %q: %v", method, url, raw, err)
		}
	}
	return resp.StatusCode
}

func (c *client) createTicket(base string, req contracts.TicketRequest) contracts.Ticket {
	c.t.Helper()
	var tk contracts.Ticket
	if code := c.do(http.MethodPost, base+"/v1/tickets", req, &tk); code != http.StatusCreated {
		c.t.Fatalf("create ticket for %v: status %d", req.Players, code)
	}
	return tk
}

func (c *client) registerServer(base, id, region string, capacity int) {
	c.t.Helper()
	req := contracts.ServerRequest{Address: "127.0.0.1:7777", Region: region, Capacity: capacity}
	if code := c.do(http.MethodPut, base+"/v1/servers/"+id, req, nil); code != http.StatusOK {
		c.t.Fatalf("register server %s: status %d", id, code)
	}
}

// awaitTerminal long-polls a ticket until it is terminal or the time is up.
func (c *client) awaitTerminal(base, id string, within time.Duration) contracts.Ticket {
	c.t.Helper()
	return c.awaitTicket(base, id, within, "terminal", func(t contracts.Ticket) bool { return t.Status.Terminal() })
}

// awaitStatus long-polls a ticket until it is in status or the time is up;
// a ticket that ends in another status fails the test at once.
func (c *client) awaitStatus(base, id string, status contracts.Status, within time.Duration) contracts.Ticket {
	c.t.Helper()
	return c.awaitTicket(base, id, within, string(status), func(t contracts.Ticket) bool {
		if t.Status != status && t.Status.Terminal() {
			c.t.Fatalf("ticket %s ended %s, want %s", id, t.Status, status)
		}
		return t.Status == status
	})
}

// awaitTicket long-polls a ticket until done says so of it, or fails the
// test once within has passed; want names what done waits for.
func (c *client) awaitTicket(base, id string, within time.Duration, want string, done func(contracts.Ticket) bool) contracts.Ticket {
	c.t.Helper()
	deadline := time.Now().Add(within)
	var tk contracts.Ticket
	for {
		wait := min(5*time.Second, max(100*time.Millisecond, time.Until(deadline)))
		url := fmt.Sprintf("%s/v1/tickets/%s?wait=%dms&after=%d", base, id, wait.Milliseconds(), tk.Version)
		if code := c.do(http.MethodGet, url, nil, &tk); code != http.StatusOK {
			c.t.Fatalf("poll %s: status %d", id, code)
		}
		if done(tk) {
			return tk
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("ticket %s is %s after %v, want %s", id, tk.Status, within, want)
		}
	}
}

func player(id string, skill float64) contracts.TicketRequest {
	return contracts.TicketRequest{Queue: "duel", Players: []contracts.Player{{ID: id, Skill: skill}}}
}

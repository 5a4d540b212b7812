package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/quickmatch/quickmatch/assigner"
	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/front"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/dashboard"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/longpoll"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/matcher"
)

// Role is a component a process runs; a process may run several.
type Role uint8

const (
	Front Role = 1 << iota
	Matcher
	Assigner
	// All is the all-in-one matchmaker.
	All = Front | Matcher | Assigner
)

func (r Role) String() string {
	switch r {
	case Front:
		return "front"
	case Matcher:
		return "matcher"
	case Assigner:
		return "assigner"
	case All:
		return "matchmaker"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// App is one running process of the suite.
type App struct {
	cfg   Config
	roles Role
	log   *slog.Logger
	deps  *Deps
	// counted is the store with its counts read once a second
	// (store.CachingStats), for the gauges, explanations and dashboard.
	counted store.Store
	metrics *metrics.Metrics
	hub     *longpoll.Hub
	ln      net.Listener
	srv     *http.Server
	ready   *readiness
	auth    *httpapi.Authenticator
	dash    *dashboard.Dashboard
	// stopAuth ends the verifier's key refresh.
	stopAuth context.CancelFunc

	stopping chan struct{} // closed at shutdown: held long-polls answer at once
}

// New connects to the broker and store, declares the queues and opens the
// HTTP listener, so that Addr is known before Run.
func New(ctx context.Context, cfg Config, roles Role, log *slog.Logger) (*App, error) {
	if cfg.Queues == nil {
		set, err := queues.NewSet(queues.Duel())
		if err != nil {
			return nil, err
		}
		cfg.Queues = set
	}
	authCtx, stopAuth := context.WithCancel(context.WithoutCancel(ctx))
	authn, err := newAuthenticator(authCtx, &cfg, roles, log)
	if err != nil {
		stopAuth()
		return nil, err
	}
	deps, err := Connect(ctx, &cfg, roles.String(), log)
	if err != nil {
		stopAuth()
		return nil, err
	}
	closeDeps := func() {
		deps.Close()
		stopAuth()
	}
	if err := declareQueues(ctx, deps.Broker, &cfg); err != nil {
		closeDeps()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		closeDeps()
		return nil, fmt.Errorf("listening on %s: %w", cfg.HTTPAddr, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The gauges, the explanations and the dashboard share one reading of
	// the store's counts a second.
	counted := store.CachingStats(deps.Store, time.Second)
	if roles&(Matcher|Assigner) != 0 {
		reg.MustRegister(newGauges(counted, log))
	}
	a := &App{
		cfg:      cfg,
		roles:    roles,
		log:      log,
		deps:     deps,
		metrics:  metrics.New(reg),
		hub:      longpoll.NewHub(log),
		ln:       ln,
		auth:     authn,
		stopAuth: stopAuth,
		stopping: make(chan struct{}),
	}
	a.ready = newReadiness(deps, a.listenerReady())
	a.counted = counted
	a.dash = newDashboard(&cfg, roles, counted, authn, a.metrics, log)
	handler := a.routes(reg)
	if cfg.Tracing {
		handler = otelhttp.NewHandler(handler, "http",
			otelhttp.WithFilter(func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/v1/") }))
	}
	a.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		// Long-polls extend their own write deadline per request.
		WriteTimeout:   15 * time.Second,
		IdleTimeout:    90 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return a, nil
}

// declareQueues declares every queue the suite uses: each process does, so
// that whichever starts first creates them.
func declareQueues(ctx context.Context, b broker.Broker, cfg *Config) error {
	for _, name := range cfg.Queues.Names() {
		q, _ := cfg.Queues.Get(name)
		if err := b.Declare(ctx, contracts.TicketQueue(name), q.RetryDelay); err != nil {
			return fmt.Errorf("declaring the queue of %s: %w", name, err)
		}
	}
	if err := b.Declare(ctx, contracts.MatchQueue, cfg.AssignRetryDelay); err != nil {
		return fmt.Errorf("declaring the match queue: %w", err)
	}
	return nil
}

// holdsPolls reports whether the process serves long-polls (the front's
// tickets, the assigner's allocations) and so must listen to every store
// change; a matcher alone does not, and parsing the stream would cost it CPU
// for nothing.
func (a *App) holdsPolls() bool { return a.roles&(Front|Assigner) != 0 }

// listenerReady is closed once the store listener is subscribed, or at once
// when the process runs none.
func (a *App) listenerReady() <-chan struct{} {
	if a.holdsPolls() {
		return a.hub.Ready()
	}
	done := make(chan struct{})
	close(done)
	return done
}

// Addr is the address the HTTP server listens on.
func (a *App) Addr() string { return a.ln.Addr().String() }

func (a *App) routes(reg *prometheus.Registry) http.Handler {
	r := httpapi.NewRouter()
	r.Use(httpapi.CountRequests(a.metrics.HTTPRequests, a.metrics.HTTPDuration))
	if a.cfg.Tracing {
		r.Use(nameSpan)
	}
	mountOps(r, reg, a.ready)
	a.dash.Mount(r)
	poller := &longpoll.Poller{
		Hub:      a.hub,
		MaxWait:  a.cfg.PollMax,
		Stopping: a.stopping,
		Gauge:    a.metrics.LongPollsWaiting,
		Log:      a.log,
	}
	if a.roles&Front != 0 {
		front.New(front.Config{
			Queues:         a.cfg.Queues,
			Store:          a.counted,
			Publisher:      a.deps.Broker,
			Poller:         poller,
			Metrics:        a.metrics,
			Log:            a.log,
			Now:            time.Now,
			MaxCreates:     a.cfg.MaxCreates,
			Auth:           a.auth,
			PlayerCreates:  createLimiter(a.cfg.CreateRate, a.cfg.CreateBurst),
			ServiceCreates: createLimiter(a.cfg.ServiceCreateRate, a.cfg.ServiceCreateBurst),
			PlayerExplains: createLimiter(a.cfg.ExplainRate, a.cfg.ExplainBurst),
			Regions:        a.cfg.Regions,
			Waits:          a.dash,
		}).Mount(r)
	}
	if a.roles&Assigner != 0 {
		assigner.NewHTTP(assigner.HTTPConfig{
			Store:     a.deps.Store,
			Poller:    poller,
			ServerTTL: a.cfg.ServerTTL,
			Log:       a.log,
			Now:       time.Now,
			Auth:      a.auth,
			Queues:    a.cfg.Queues,
		}).Mount(r)
	}
	return r
}

// newDashboard is the process's dashboard (GET /dashboard): every process
// serves it, and a front's ticket explanations take their wait estimates
// from it. Only a process that runs a matcher counts matches itself.
func newDashboard(cfg *Config, roles Role, st store.Store, authn *httpapi.Authenticator, m *metrics.Metrics, log *slog.Logger) *dashboard.Dashboard {
	dc := dashboard.Config{Queues: cfg.Queues, Store: st, Auth: authn, Log: log, Now: time.Now}
	if roles&Matcher != 0 {
		dc.Matches = dashboard.CounterByLabel(m.MatchesFormed, "queue")
	}
	return dashboard.New(dc)
}

// stage is a group of components that stop together.
type stage struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newStage(parent context.Context) *stage {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	return &stage{ctx: ctx, cancel: cancel}
}

func (s *stage) goRun(g *errgroup.Group, name string, run func(context.Context) error) {
	s.wg.Add(1)
	g.Go(func() error {
		defer s.wg.Done()
		if err := run(s.ctx); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
}

// stop cancels the stage and waits for it until deadline ends.
func (s *stage) stop(deadline context.Context) error {
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-deadline.Done():
		return deadline.Err()
	}
}

// Run serves until ctx ends or a component fails, then shuts down in the
// reverse order of start: readiness fails first, held long-polls answer, the
// HTTP server finishes its requests, consumers finish their messages, and the
// store listener stops; all within MM_SHUTDOWN_TIMEOUT.
func (a *App) Run(ctx context.Context) error {
	defer a.stopAuth()
	defer a.deps.Close()
	g, gctx := errgroup.WithContext(ctx)
	listen, consume := newStage(ctx), newStage(ctx)

	if a.holdsPolls() {
		listen.goRun(g, "store listener", func(ctx context.Context) error { return a.hub.Run(ctx, a.deps.Store) })
	}
	listen.goRun(g, "dashboard", a.dash.Run)
	if a.roles&Matcher != 0 {
		m := matcher.New(matcher.Config{
			Queues:    a.cfg.Queues,
			Store:     a.deps.Store,
			Publisher: a.deps.Broker,
			Metrics:   a.metrics,
			Log:       a.log,
			Batch:     !a.cfg.Embedded(),
		})
		opts := broker.ConsumeOptions{Prefetch: a.cfg.MatcherPrefetch, Workers: a.cfg.MatcherWorkers}
		for _, name := range a.cfg.Queues.Names() {
			queue := contracts.TicketQueue(name)
			consume.goRun(g, "matcher "+name, func(ctx context.Context) error {
				return a.deps.Broker.Consume(ctx, queue, opts, m.Handle)
			})
		}
		reaper := &matcher.Reaper{
			Store: a.deps.Store, Publisher: a.deps.Broker,
			Interval: a.cfg.ReapInterval, Grace: a.cfg.ReapGrace, OrphanAfter: a.cfg.OrphanAfter,
			Metrics: a.metrics, Log: a.log, Now: time.Now,
		}
		consume.goRun(g, "reaper", reaper.Run)
	}
	if a.roles&Assigner != 0 {
		c := assigner.NewConsumer(assigner.ConsumerConfig{
			Store: a.deps.Store, Publisher: a.deps.Broker, Metrics: a.metrics, Log: a.log, Batch: !a.cfg.Embedded(),
		})
		opts := broker.ConsumeOptions{Prefetch: a.cfg.AssignerPrefetch, Workers: a.cfg.AssignerWorkers}
		consume.goRun(g, "assigner", func(ctx context.Context) error {
			return a.deps.Broker.Consume(ctx, contracts.MatchQueue, opts, c.Handle)
		})
	}
	g.Go(func() error {
		if err := a.srv.Serve(a.ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving HTTP: %w", err)
		}
		return nil
	})
	a.log.Info("started", "role", a.roles.String(), "addr", a.Addr(), "embedded", a.cfg.Embedded(), "queues", a.cfg.Queues.Names())

	shutdownErr := make(chan error, 1)
	g.Go(func() error {
		<-gctx.Done()
		shutdownErr <- a.shutdown(listen, consume)
		return nil
	})
	err := g.Wait()
	return errors.Join(err, <-shutdownErr)
}

func (a *App) shutdown(listen, consume *stage) error {
	deadline, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	a.log.Info("shutting down", "role", a.roles.String())
	a.ready.fail()
	select {
	case <-time.After(a.cfg.DrainDelay):
	case <-deadline.Done():
	}
	close(a.stopping)
	var errs []error
	if err := a.srv.Shutdown(deadline); err != nil {
		errs = append(errs, fmt.Errorf("stopping the HTTP server: %w", err))
	}
	if err := consume.stop(deadline); err != nil {
		errs = append(errs, fmt.Errorf("finishing in-flight messages: %w", err))
	}
	if err := listen.stop(deadline); err != nil {
		errs = append(errs, fmt.Errorf("stopping the store listener: %w", err))
	}
	return errors.Join(errs...)
}

// readiness answers /readyz: the process is ready while it is not shutting
// down, its store listener is subscribed, and the broker and store answer.
// Pings are cached briefly so that probes cannot load the backends.
type readiness struct {
	deps     *Deps
	listener <-chan struct{}
	failed   atomic.Bool

	mu      sync.Mutex
	checked time.Time
	err     error
}

const readyCacheFor = time.Second

func newReadiness(deps *Deps, listener <-chan struct{}) *readiness {
	return &readiness{deps: deps, listener: listener}
}

func (r *readiness) fail() { r.failed.Store(true) }

func (r *readiness) check(ctx context.Context) error {
	if r.failed.Load() {
		return errors.New("shutting down")
	}
	select {
	case <-r.listener:
	default:
		return errors.New("store listener not subscribed yet")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < readyCacheFor {
		return r.err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	r.err = errors.Join(r.deps.Broker.Ping(ctx), r.deps.Store.Ping(ctx))
	r.checked = time.Now()
	return r.err
}

// nameSpan names a request's span by its route once the router has
// matched it: a bounded name, as the route label of the metrics is.
func nameSpan(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		trace.SpanFromContext(r.Context()).SetName(r.Method + " " + httpapi.Route(r))
	})
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// proc is one process of the stack: a service or the private Redis. It
// keeps its address across restarts, appends every life to one log file,
// and tells the deaths the run caused from the others.
type proc struct {
	name    string
	path    string
	args    []string
	env     []string
	addr    string // host:port it listens on
	logPath string
	ready   func(ctx context.Context) error

	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{} // closed when the current life ends
	killing    bool
	lives      int
	unexpected []string // how each death the run did not cause ended
}

// start begins a new life and waits until it is ready.
func (p *proc) start(ctx context.Context) error {
	p.mu.Lock()
	if p.cmd != nil && !isClosed(p.done) {
		p.mu.Unlock()
		return fmt.Errorf("%s is already running", p.name)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("opening the log of %s: %w", p.name, err)
	}
	p.lives++
	fmt.Fprintf(logf, "=== chaos: %s life %d starts at %s\n", p.name, p.lives, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		logf.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.killing = cmd, done, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		if !p.killing {
			p.unexpected = append(p.unexpected, fmt.Sprintf("%s exited by itself (%v) at %s", p.name, err, time.Now().Format(time.TimeOnly)))
		}
		p.mu.Unlock()
		close(done)
	}()
	return p.waitReady(ctx, done)
}

func (p *proc) waitReady(ctx context.Context, done chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var err error
	for range 2400 { // 60 s at 25 ms
		if isClosed(done) {
			return fmt.Errorf("%s exited while starting; see %s", p.name, p.logPath)
		}
		if err = p.ready(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v); see %s", p.name, ctx.Err(), err, p.logPath)
		case <-time.After(25 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready: %v; see %s", p.name, err, p.logPath)
}

// kill sends SIGKILL to the process, by its pid, and waits for it to die.
func (p *proc) kill() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil || isClosed(done) {
		p.mu.Unlock()
		return nil
	}
	p.killing = true
	p.mu.Unlock()
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %s (pid %d): %w", p.name, cmd.Process.Pid, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s (pid %d) still alive 30 s after SIGKILL", p.name, cmd.Process.Pid)
	}
}

// alive reports whether the current life is running.
func (p *proc) alive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.done)
}

func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// takeUnexpected returns the deaths the run did not cause since the last
// call.
func (p *proc) takeUnexpected() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.unexpected
	p.unexpected = nil
	return u
}

func isClosed(c chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// stack is the suite under test and what it stands on.
type stack struct {
	cfg       *config
	bin       string // the built binaries
	logs      string
	vhost     string
	amqpURL   string // with the vhost
	redis     *proc
	redisAddr string
	prefix    string // of the services' Redis keys
	// authSecret turns the services' auth on; the load tester mints its
	// tokens with it, so that faults are tested as a studio runs.
	authSecret string
	fronts     []*proc
	matchers   []*proc
	assigners  []*proc
}

// services lists every service process.
func (s *stack) services() []*proc {
	var out []*proc
	out = append(out, s.fronts...)
	out = append(out, s.matchers...)
	return append(out, s.assigners...)
}

func (s *stack) all() []*proc { return append(s.services(), s.redis) }

func urlOf(p *proc) string { return "http://" + p.addr }

// moduleRoot finds the quickmatch module from the working directory.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	b, err := os.ReadFile(gomod)
	if err != nil || !bytes.Contains(b, []byte("module github.com/quickmatch/quickmatch\n")) {
		return "", fmt.Errorf("run chaos inside the quickmatch module (go env GOMOD says %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}

// build compiles the three services and the load tester into bin.
func build(ctx context.Context, root, bin string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin+"/",
		"./services/front", "./services/matcher", "./services/assigner", "./loadtest")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// rabbitmqctl runs one rabbitmqctl command, bounded in time.
func rabbitmqctl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-q"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

func addVhost(ctx context.Context, vhost string) error {
	if _, err := rabbitmqctl(ctx, "add_vhost", vhost); err != nil {
		return err
	}
	_, err := rabbitmqctl(ctx, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	return err
}

func deleteVhost(ctx context.Context, vhost string) error {
	_, err := rabbitmqctl(ctx, "delete_vhost", vhost)
	return err
}

// freePort finds a loopback port nobody listens on.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// newRedis describes the private redis-server: AOF on, fsync every second,
// no snapshots, keyspace notifications on (the durability record).
func newRedis(dir, logs string) (*proc, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is needed: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := &proc{
		name: "redis", path: path, addr: addr, logPath: filepath.Join(logs, "redis.log"),
		args: []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir,
			"--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
			"--daemonize", "no", "--notify-keyspace-events", "KA"},
		env: os.Environ(),
	}
	p.ready = func(ctx context.Context) error {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
		defer c.Close()
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		// A read answers LOADING while the AOF replays (PING may not).
		if err := c.Get(ctx, beatKey).Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		return nil
	}
	return p, nil
}

// newService describes one service on its own loopback port.
func (s *stack) newService(name, binary string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MM_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"MM_HTTP_ADDR="+addr,
		"MM_AMQP_URL="+s.amqpURL,
		"MM_AMQP_PREFIX=mm.",
		"MM_REDIS_ADDR="+s.redisAddr,
		"MM_REDIS_PREFIX="+s.prefix,
		"MM_QUEUES_FILE="+filepath.Join(s.logs, "queues.yaml"),
		"MM_LOG_LEVEL=warn",
		"MM_RETENTION="+s.cfg.retention().String(),
		"MM_SHUTDOWN_TIMEOUT=5s",
		"MM_AUTH_HS256_SECRET="+s.authSecret,
		// The simulated players all come from loopback.
		"MM_AUTH_FAILURE_RATE=0",
	)
	p := &proc{name: name, path: filepath.Join(s.bin, binary), addr: addr, env: env,
		logPath: filepath.Join(s.logs, name+".log")}
	client := &http.Client{Timeout: time.Second}
	p.ready = func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz answered %d", resp.StatusCode)
		}
		return nil
	}
	return p, nil
}

// writeQueues writes the queues file: one duel queue with short deadlines.
func writeQueues(path string, c *config) error {
	body := fmt.Sprintf(`# Written by loadtest/chaos: a duel with short deadlines, so a phase drains fast.
queues:
  - name: %s
    teams: 2
    team_size: 1
    skill: {initial: 50, per_second: 25, max: 500}
    max_wait: %s
    assign_deadline: %s
    retry_delay: %s
`, queueName, c.MaxWait, c.AssignDeadline, c.RetryDelay)
	return os.WriteFile(path, []byte(body), 0o644)
}

// queueName is the one queue the players join.
const queueName = "duel"

// start starts every service, each ready before the next; Redis runs
// already.
func (s *stack) start(ctx context.Context) error {
	mk := func(n int, kind string) ([]*proc, error) {
		var ps []*proc
		for i := range n {
			p, err := s.newService(fmt.Sprintf("%s%d", kind, i+1), kind)
			if err != nil {
				return nil, err
			}
			ps = append(ps, p)
		}
		return ps, nil
	}
	var err error
	if s.fronts, err = mk(s.cfg.Fronts, "front"); err != nil {
		return err
	}
	if s.matchers, err = mk(s.cfg.Matchers, "matcher"); err != nil {
		return err
	}
	if s.assigners, err = mk(s.cfg.Assigners, "assigner"); err != nil {
		return err
	}
	for _, p := range s.services() {
		if err := p.start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// ensureUp restarts whatever died by itself, and returns how each such
// death ended.
func (s *stack) ensureUp(ctx context.Context) ([]string, error) {
	var deaths []string
	for _, p := range s.all() {
		deaths = append(deaths, p.takeUnexpected()...)
		if !p.alive() {
			if err := p.start(ctx); err != nil {
				return deaths, err
			}
		}
	}
	return deaths, nil
}

// stop kills every process of the stack, by pid.
func (s *stack) stop() []error {
	var errs []error
	for _, p := range s.all() {
		if p == nil {
			continue
		}
		if err := p.kill(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

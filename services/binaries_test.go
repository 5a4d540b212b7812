package services

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// TestBinaries runs the real deployables as separate processes: the
// README's walk-through against the embedded matchmaker and against front,
// assigner and two matchers on RabbitMQ and Redis; then SIGTERM, which must
// answer a held long-poll at once and exit 0.
func TestBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin, "./front", "./matcher", "./assigner", "./matchmaker")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("embedded", func(t *testing.T) {
		mm := startProcess(t, filepath.Join(bin, "matchmaker"), nil)
		walkthrough(t, newClient(t), mm.url, mm.url)
		mm.stopWithHeldPoll(t, newClient(t))
	})

	t.Run("distributed", func(t *testing.T) {
		prefix := testenv.Prefix(t)
		secret := "binaries-test-" + prefix
		env := []string{
			"MM_AMQP_URL=" + testenv.AMQPURL(t), "MM_REDIS_ADDR=" + testenv.RedisAddr(t),
			"MM_AMQP_PREFIX=" + prefix, "MM_REDIS_PREFIX=" + prefix,
			// As a studio runs it: with auth on.
			"MM_AUTH_HS256_SECRET=" + secret,
		}
		cfg := Config{AMQPURL: testenv.AMQPURL(t), AMQPPrefix: prefix, RedisPrefix: prefix}
		cfg.Queues, _ = queues.NewSet(queues.Duel())
		rdb := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
		t.Cleanup(func() { cleanupBackends(t, cfg, rdb) })

		front := startProcess(t, filepath.Join(bin, "front"), env)
		asg := startProcess(t, filepath.Join(bin, "assigner"), env)
		m1 := startProcess(t, filepath.Join(bin, "matcher"), env)
		m2 := startProcess(t, filepath.Join(bin, "matcher"), env)
		c := newAuthClient(t, []byte(secret))
		walkthrough(t, c, front.url, asg.url)
		front.stopWithHeldPoll(t, c)
		for _, p := range []*process{asg, m1, m2} {
			p.stop(t)
		}
	})
}

type process struct {
	cmd    *exec.Cmd
	url    string
	exited chan error
	log    *strings.Builder
}

func startProcess(t *testing.T, path string, env []string) *process {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(path)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MM_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Env = append(cmd.Env, "MM_HTTP_ADDR="+addr, "MM_SHUTDOWN_TIMEOUT=10s")
	p := &process{cmd: cmd, url: "http://" + addr, exited: make(chan error, 1), log: &strings.Builder{}}
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", filepath.Base(path), p.log)
		}
	})
	testenv.WaitReady(t, p.url)
	return p
}

func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM", p.cmd.Path, err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("%s still running 15s after SIGTERM", p.cmd.Path)
	}
}

// stopWithHeldPoll holds a 60 s long-poll, sends SIGTERM, and checks that
// the poll is answered well before its wait ends and the process exits 0.
func (p *process) stopWithHeldPoll(t *testing.T, c *client) {
	t.Helper()
	tk := c.createTicket(p.url, player("p-held", 100_000))
	answered := make(chan int, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		url := fmt.Sprintf("%s/v1/tickets/%s?wait=60s&after=%d", p.url, tk.ID, tk.Version)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if c.authorize != nil {
			c.authorize(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	p.awaitHeldPolls(t, 1)
	p.stop(t)
	select {
	case code := <-answered:
		if code != http.StatusOK {
			t.Errorf("held poll answered %d at shutdown, want 200", code)
		}
	case <-time.After(5 * time.Second):
		t.Error("held poll not answered within 5s of SIGTERM")
	}
}

// awaitHeldPolls waits until the process reports n ticket long-polls held.
func (p *process) awaitHeldPolls(t *testing.T, n int) {
	t.Helper()
	want := fmt.Sprintf(`mm_long_polls_waiting{kind="ticket"} %d`, n)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(p.url + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), want) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("metrics never showed %q", want)
}

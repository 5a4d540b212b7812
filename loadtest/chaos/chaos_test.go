package main

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/internal/testenv"
)

// TestChaosShort is the short version of `make chaos`, in the test
// command: every phase, 5 s each at 100 players/s with short deadlines,
// about a minute and a half in all. It fails on any violation, and when
// the load tester lacks a feature the checks need.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the distributed mode under faults")
	}
	testenv.Command(t, "redis-server")
	testenv.Command(t, "rabbitmqctl")
	amqp := testenv.AMQPURL(t)
	var stdout bytes.Buffer
	stderr := &lineLogger{t: t}
	code := run(t.Context(), []string{
		"-amqp", amqp,
		"-phase-duration", "5s", "-rate", "100", "-every", "1.5s", "-down", "500ms", "-redis-down", "1s",
		"-max-wait", "6s", "-assign-deadline", "4s", "-retry-delay", "250ms", "-grace", "12s",
		"-servers", "4", "-server-capacity", "24", "-game-length", "1s",
	}, &stdout, stderr)
	stderr.flush()
	t.Logf("\n%s", stdout.String())
	if code != exitPass {
		t.Fatalf("chaos exited %d: see the table above", code)
	}
}

// lineLogger hands the run's progress to t.Log a line at a time.
type lineLogger struct {
	t   *testing.T
	mu  sync.Mutex
	buf []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(strings.TrimRight(string(l.buf[:i]), "\r"))
		l.buf = l.buf[i+1:]
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log(string(l.buf))
		l.buf = nil
	}
}

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{})
	os.Exit(m.Run())
}

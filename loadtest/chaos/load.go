package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// loadReport is the part of the load tester's report.json the run reads.
type loadReport struct {
	Players *struct {
		Tickets      map[string]int64 `json:"tickets"`
		Lost         int64            `json:"lost_tickets"`
		LostAt       map[string]int64 `json:"lost_at"`
		TimeToAssign struct {
			Count int64   `json:"count"`
			P99   float64 `json:"p99_ms"`
		} `json:"time_to_assign"`
		Requests   int64            `json:"requests"`
		ErrorCount int64            `json:"error_count"`
		Errors     map[string]int64 `json:"errors"`
	} `json:"players"`
	Failures []string `json:"failures"`
}

func readLoadReport(path string) (*loadReport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r loadReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	if r.Players == nil {
		return nil, fmt.Errorf("%s has no players report", path)
	}
	return &r, nil
}

// loadRun is one run of the load tester for one phase.
type loadRun struct {
	dir      string // its -out
	outcomes string // its -outcomes file, or empty
	log      string
	cmd      *exec.Cmd
	done     chan error
}

// loadArgs are the load tester's flags for a phase: the pipeline
// scenario at the run's rate over every front, a fleet of small servers
// that end their matches, no cancel at the end (a ticket still open is
// lost, not abandoned) and no gates (the run judges).
func (h *harness) loadArgs(runID, dir, outcomes string, seed uint64) []string {
	c := h.cfg
	fronts := make([]string, len(h.st.fronts))
	for i, p := range h.st.fronts {
		fronts[i] = urlOf(p)
	}
	if !h.caps.MultiFront {
		fronts = fronts[:1]
	}
	args := []string{
		"-scenario", "pipeline",
		"-label", "chaos " + runID,
		"-suite", "distributed",
		"-front", strings.Join(fronts, ","),
		"-assigner", urlOf(h.st.assigners[0]),
		"-queue", queueName,
		"-rate", fmt.Sprint(c.Rate),
		"-duration", c.PhaseDuration.String(),
		"-drain", h.createSpan().String(),
		"-servers", fmt.Sprint(c.Servers),
		"-server-capacity", fmt.Sprint(c.ServerCapacity),
		"-game-length", c.GameLength.String(),
		"-heartbeat", "2s",
		"-cancel-at-end=false",
		"-max-error-rate", "1",
		"-max-unassigned", "1",
		"-progress", "10s",
		"-seed", fmt.Sprint(seed),
		"-run-id", runID,
		"-out", dir,
	}
	if outcomes != "" {
		args = append(args, "-outcomes", outcomes)
	}
	return args
}

// createSpan is the load tester's drain: long enough for the last
// create's retries and then its ticket's whole life.
func (h *harness) createSpan() time.Duration { return h.cfg.drain() }

func (h *harness) startLoad(ctx context.Context, runID string, seed uint64) (*loadRun, error) {
	dir := filepath.Join(h.logs, runID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	lr := &loadRun{dir: dir, log: filepath.Join(h.logs, runID+"-loadtest.log"), done: make(chan error, 1)}
	if h.caps.Outcomes {
		lr.outcomes = filepath.Join(dir, "outcomes.jsonl")
	}
	logf, err := os.Create(lr.log)
	if err != nil {
		return nil, err
	}
	lr.cmd = exec.Command(filepath.Join(h.bin, "loadtest"), h.loadArgs(runID, dir, lr.outcomes, seed)...)
	lr.cmd.Env = append(os.Environ(), "MM_AUTH_HS256_SECRET="+h.st.authSecret)
	lr.cmd.Stdout, lr.cmd.Stderr = logf, logf
	lr.cmd.SysProcAttr = childAttr()
	if err := lr.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting the load tester: %w", err)
	}
	h.loadPid.Store(int64(lr.cmd.Process.Pid))
	go func() {
		err := lr.cmd.Wait()
		logf.Close()
		h.loadPid.Store(0)
		lr.done <- err
	}()
	return lr, nil
}

// wait waits for the load tester to end, at most until its own bound
// passes; then it is killed. Exit 1 (a gate failed) is a normal end: the
// run judges by its own checks.
func (lr *loadRun) wait(ctx context.Context, bound time.Duration) error {
	t := time.NewTimer(bound)
	defer t.Stop()
	var err error
	select {
	case err = <-lr.done:
	case <-ctx.Done():
		_ = syscall.Kill(lr.cmd.Process.Pid, syscall.SIGKILL)
		<-lr.done
		return ctx.Err()
	case <-t.C:
		_ = syscall.Kill(lr.cmd.Process.Pid, syscall.SIGKILL)
		<-lr.done
		return fmt.Errorf("the load tester ran past %s and was killed; see %s", bound, lr.log)
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok && ee.ExitCode() == 1 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("the load tester failed (%v); see %s:\n%s", err, lr.log, tail(lr.log, 8))
	}
	return nil
}

// tail is the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

package services

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

// TestBrokerConnectionDrops closes every RabbitMQ connection of a running
// distributed stack from the server side while players queue. Creates may
// answer 503 during the outage, but every ticket that was accepted still
// ends assigned: consumers reconnect, re-declare and resume (invariant 4.3).
func TestBrokerConnectionDrops(t *testing.T) {
	ctl := testenv.Command(t, "rabbitmqctl") // to close connections from the server side
	s := startStack(t, distributed, stackOptions{matchers: 2})
	c := newClient(t)
	c.registerServer(s.assignerURL, "gs-1", "eu-west", 500)

	const players = 400
	var (
		wg          sync.WaitGroup
		mu          sync.Mutex
		accepted    []string
		unavailable atomic.Int64
		created     atomic.Int64
	)
	dropped := make(chan int, 1)
	go func() {
		for deadline := time.Now().Add(30 * time.Second); created.Load() < players/4 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		dropped <- closeConnections(t, ctl, s.cfg.AMQPPrefix)
	}()
	sem := make(chan struct{}, 8)
	for i := range players {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var tk contracts.Ticket
			code := c.do(http.MethodPost, s.frontURL+"/v1/tickets", player(fmt.Sprintf("p-%d", i), 1500), &tk)
			switch code {
			case http.StatusCreated:
				created.Add(1)
				mu.Lock()
				accepted = append(accepted, tk.ID)
				mu.Unlock()
			case http.StatusServiceUnavailable:
				unavailable.Add(1)
			default:
				t.Errorf("create answered %d", code)
			}
			time.Sleep(2 * time.Millisecond)
		}()
	}
	wg.Wait()
	if n := <-dropped; n < 4 {
		t.Fatalf("closed %d connections, want one per app (4)", n)
	}
	// An odd ticket out has no partner; everyone else must be assigned.
	var unmatched int
	for _, id := range accepted {
		tk := c.awaitTerminal(s.frontURL, id, 40*time.Second)
		switch tk.Status {
		case contracts.StatusAssigned:
		case contracts.StatusExpired:
			unmatched++
		default:
			t.Errorf("ticket %s ended %s (%s)", id, tk.Status, tk.Reason)
		}
	}
	if unmatched > 1 {
		t.Errorf("%d accepted tickets expired unmatched, want at most 1", unmatched)
	}
	t.Logf("%d accepted, %d answered 503 during the outage", len(accepted), unavailable.Load())
}

// closeConnections closes, from the broker's side, every connection whose
// name carries prefix, and returns how many it closed.
func closeConnections(t *testing.T, ctl, prefix string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ctl, "-q", "list_connections", "--no-table-headers", "pid", "name", "client_properties").CombinedOutput()
	if err != nil {
		t.Errorf("rabbitmqctl list_connections: %v\n%s", err, out)
		return 0
	}
	closed := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "prefix="+prefix) {
			continue
		}
		pid, _, _ := strings.Cut(line, "\t")
		if out, err := exec.CommandContext(ctx, ctl, "close_connection", pid, "test: broker connection drop").CombinedOutput(); err != nil {
			t.Errorf("rabbitmqctl close_connection %s: %v\n%s", pid, err, out)
			continue
		}
		closed++
	}
	return closed
}

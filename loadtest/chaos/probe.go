package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// caps are the load tester features the run relies on. Another change
// adds them; until it lands the run refuses to start (or, with -partial,
// runs the checks it can).
type caps struct {
	MultiFront  bool `json:"multi_front"`     // -front URL,URL
	Idempotency bool `json:"idempotency_key"` // one Idempotency-Key per create, reused by its retries
	Outcomes    bool `json:"outcomes"`        // -outcomes FILE
	Notes       []string
}

func (c caps) missing() []string {
	var m []string
	if !c.MultiFront {
		m = append(m, "a comma-separated -front URL,URL")
	}
	if !c.Idempotency {
		m = append(m, "an Idempotency-Key on every create, reused across its retries")
	}
	if !c.Outcomes {
		m = append(m, "-outcomes FILE (one JSON line per logical create)")
	}
	return m
}

// probe finds out what the load tester binary at path can do, by running
// it for two players against a fake suite on loopback that fails each
// player's first create with 503 and accepts the second.
func probe(ctx context.Context, path, dir string) (caps, error) {
	var c caps
	help, _ := exec.CommandContext(ctx, path, "-h").CombinedOutput()
	c.Outcomes = bytes.Contains(help, []byte("-outcomes"))

	fake := &fakeSuite{tries: map[string][]string{}, hits: map[string]int{}}
	a, err := fake.listen()
	if err != nil {
		return c, err
	}
	defer a.Close()
	b, err := fake.listen()
	if err != nil {
		return c, err
	}
	defer b.Close()

	attempt := func(fronts string) (string, int, error) {
		args := []string{"-front", fronts, "-assigner", "http://" + a.Addr().String(),
			"-players", "2", "-rate", "20", "-duration", "5s", "-drain", "5s", "-servers", "1",
			"-game-length", "0", "-progress", "1m", "-max-error-rate", "1", "-cancel-at-end=false",
			"-run-id", "chaosprobe", "-regions", "eu-west=20", "-latency-jitter", "0"}
		if c.Outcomes {
			args = append(args, "-outcomes", filepath.Join(dir, "probe-outcomes.jsonl"))
		}
		pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(pctx, path, args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code, err = ee.ExitCode(), nil
		}
		return string(out), code, err
	}
	both := "http://" + a.Addr().String() + ",http://" + b.Addr().String()
	out, code, err := attempt(both)
	if err != nil {
		return c, fmt.Errorf("probing the load tester: %w", err)
	}
	c.MultiFront = !(code == 2 && strings.Contains(out, "-front"))
	if !c.MultiFront {
		fake.reset()
		if out, code, err = attempt("http://" + a.Addr().String()); err != nil {
			return c, fmt.Errorf("probing the load tester: %w", err)
		}
	}
	if code == 2 {
		return c, fmt.Errorf("the load tester failed against a fake suite:\n%s", out)
	}
	c.Idempotency, c.Notes = fake.idempotent()
	if c.Outcomes {
		outs, err := readOutcomes(filepath.Join(dir, "probe-outcomes.jsonl"))
		switch {
		case err != nil:
			c.Outcomes = false
			c.Notes = append(c.Notes, "-outcomes: "+err.Error())
		case len(outs) != 2:
			c.Outcomes = false
			c.Notes = append(c.Notes, fmt.Sprintf("-outcomes wrote %d lines for 2 creates", len(outs)))
		default:
			for _, o := range outs {
				if o.Fate != "assigned" || o.Ticket == "" || len(o.Players) != 1 {
					c.Outcomes = false
					c.Notes = append(c.Notes, fmt.Sprintf("-outcomes line %+v: want fate assigned, a ticket and one player", o))
				}
			}
		}
	}
	if c.MultiFront && (fake.hitsOf(a) == 0 || fake.hitsOf(b) == 0) {
		c.Notes = append(c.Notes, "the probe's creates all went to one front")
	}
	return c, nil
}

// fakeSuite answers what the load tester asks of a suite, just enough
// for two players and one game server.
type fakeSuite struct {
	mu    sync.Mutex
	tries map[string][]string // player → the Idempotency-Key of each create
	hits  map[string]int      // listener address → creates
}

func (f *fakeSuite) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tries, f.hits = map[string][]string{}, map[string]int{}
}

func (f *fakeSuite) hitsOf(ln net.Listener) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[ln.Addr().String()]
}

func (f *fakeSuite) listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: f.handler(ln.Addr().String()), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return ln, nil
}

func (f *fakeSuite) handler(addr string) http.Handler {
	mux := http.NewServeMux()
	write := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	server := func(id string) map[string]any {
		return map[string]any{"id": id, "address": "x.invalid:1", "region": "eu-west", "capacity": 16,
			"allocated": 0, "draining": false, "expires_at": time.Now().Add(time.Minute), "version": 0}
	}
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { write(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("PUT /v1/servers/{id}", func(w http.ResponseWriter, r *http.Request) { write(w, 200, server(r.PathValue("id"))) })
	mux.HandleFunc("GET /v1/servers/{id}", func(w http.ResponseWriter, r *http.Request) { write(w, 200, server(r.PathValue("id"))) })
	mux.HandleFunc("DELETE /v1/servers/{id}", func(w http.ResponseWriter, r *http.Request) { write(w, 200, server(r.PathValue("id"))) })
	mux.HandleFunc("GET /v1/servers/{id}/allocations", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		write(w, 200, map[string]any{"server_id": r.PathValue("id"), "version": 0, "allocations": []any{}})
	})
	ticket := func(id, player, status string) map[string]any {
		now := time.Now().UTC()
		return map[string]any{"id": id, "queue": queueName, "status": status, "version": 3, "created_at": now,
			"updated_at": now, "players": []map[string]any{{"id": player, "skill": 1500}}, "reason": ""}
	}
	mux.HandleFunc("POST /v1/tickets", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Players []struct {
				ID string `json:"id"`
			} `json:"players"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Players) == 0 {
			write(w, 400, map[string]any{"status": 400, "code": "bad_request"})
			return
		}
		p := req.Players[0].ID
		f.mu.Lock()
		f.tries[p] = append(f.tries[p], r.Header.Get("Idempotency-Key"))
		f.hits[addr]++
		n := len(f.tries[p])
		f.mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "0")
			write(w, 503, map[string]any{"type": "about:blank", "title": "unavailable", "status": 503, "code": "unavailable"})
			return
		}
		write(w, 201, ticket(queueName+".probe-"+p, p, "assigned"))
	})
	mux.HandleFunc("GET /v1/tickets/{id}", func(w http.ResponseWriter, r *http.Request) {
		write(w, 200, ticket(r.PathValue("id"), "unknown", "assigned"))
	})
	return mux
}

// idempotent reports whether every create carried a key and each
// player's retries carried its first key.
func (f *fakeSuite) idempotent() (bool, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.tries) == 0 {
		return false, []string{"the probe saw no create"}
	}
	var notes []string
	for p, keys := range f.tries {
		if len(keys) < 2 {
			notes = append(notes, fmt.Sprintf("player %s was not retried after a 503", p))
			continue
		}
		for _, k := range keys {
			if k == "" || k != keys[0] {
				notes = append(notes, fmt.Sprintf("player %s's creates carried Idempotency-Key %q", p, keys))
				break
			}
		}
	}
	return len(notes) == 0, notes
}

// String says what the probe found.
func (c caps) String() string {
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "NO"
	}
	s := fmt.Sprintf("several -front %s, Idempotency-Key reused across retries %s, -outcomes %s",
		yes(c.MultiFront), yes(c.Idempotency), yes(c.Outcomes))
	if len(c.Notes) > 0 {
		s += " (" + strings.Join(c.Notes, "; ") + ")"
	}
	return s
}

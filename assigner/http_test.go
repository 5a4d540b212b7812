package assigner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/quickmatch/quickmatch/assigner"
	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/longpoll"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
)

const httpTestTTL = 20 * time.Second

// httpClock is a settable clock shared by the API and the test, which
// passes the same times to the store.
type httpClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *httpClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *httpClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// httpEnv is the game-server API over a memstore, with a running hub.
type httpEnv struct {
	store *memstore.Store
	hub   *longpoll.Hub
	clock *httpClock
	srv   *httptest.Server
}

func newHTTPEnv(t *testing.T) *httpEnv {
	t.Helper()
	e := &httpEnv{
		store: memstore.New(memstore.Options{}),
		hub:   longpoll.NewHub(nil),
		clock: &httpClock{now: time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.hub.Run(ctx, e.store) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub: %v", err)
		}
	})
	select {
	case <-e.hub.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("hub never became ready")
	}
	api := assigner.NewHTTP(assigner.HTTPConfig{
		Store:     e.store,
		Poller:    &longpoll.Poller{Hub: e.hub, MaxWait: 30 * time.Second},
		ServerTTL: httpTestTTL,
		Now:       e.clock.Now,
		Auth:      httpapi.Open(),
	})
	r := chi.NewRouter()
	api.Mount(r)
	e.srv = httptest.NewServer(r)
	t.Cleanup(e.srv.Close)
	return e
}

type httpResult struct {
	status int
	header http.Header
	body   []byte
}

// request sends one request; it may run on any goroutine.
func (e *httpEnv) request(method, path, body string) (httpResult, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		return httpResult{}, err
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		return httpResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return httpResult{}, fmt.Errorf("%s %s: reading body: %w", method, path, err)
	}
	return httpResult{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func (e *httpEnv) do(t *testing.T, method, path, body string) httpResult {
	t.Helper()
	res, err := e.request(method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return res
}

// poll starts a GET of path on another goroutine.
func (e *httpEnv) poll(path string) <-chan pollResult {
	done := make(chan pollResult, 1)
	go func() {
		res, err := e.request("GET", path, "")
		done <- pollResult{res, err}
	}()
	return done
}

type pollResult struct {
	httpResult
	err error
}

// awaitPoll waits for the answer of a poll, failing past a generous bound.
func awaitPoll(t *testing.T, done <-chan pollResult, what string) httpResult {
	t.Helper()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		return r.httpResult
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no answer within 5s", what)
	}
	return httpResult{}
}

// decode checks the status and content type of res and decodes its body.
func decode[T any](t *testing.T, res httpResult, status int) T {
	t.Helper()
	var v T
	if res.status != status {
		t.Fatalf("status %d, want %d; body %s", res.status, status, res.body)
	}
	want := "application/json"
	if status >= 400 {
		want = contracts.ProblemContentType
	}
	if ct := res.header.Get("Content-Type"); ct != want {
		t.Fatalf("Content-Type %q, want %q", ct, want)
	}
	if err := json.Unmarshal(res.body, &v); err != nil {
		t.Fatalf("decoding %s: %v", res.body, err)
	}
	return v
}

// wantProblem checks that res is a problem with the given status and code.
func wantProblem(t *testing.T, res httpResult, status int, code string) {
	t.Helper()
	p := decode[contracts.Problem](t, res, status)
	if p.Status != status || p.Code != code || p.Type != contracts.ProblemTypeBase+code {
		t.Fatalf("problem %+v, want status %d and code %s", p, status, code)
	}
}

// allocate forms a duel in the store and places it on a server, as the
// matcher and the match consumer would.
func (e *httpEnv) allocate(t *testing.T, matchID, region string) contracts.Assignment {
	t.Helper()
	ctx := context.Background()
	now := e.clock.Now()
	m := contracts.Match{
		ID:             matchID,
		Queue:          "duel",
		Region:         region,
		CreatedAt:      now,
		AssignDeadline: now.Add(time.Minute),
	}
	for _, side := range []string{"a", "b"} {
		p := contracts.Player{ID: matchID + "-p" + side, Skill: 1500}
		tk := contracts.Ticket{
			ID: matchID + "-t" + side, Queue: "duel", Status: contracts.StatusSearching, Version: 1,
			CreatedAt: now, UpdatedAt: now, Players: []contracts.Player{p},
		}
		if err := e.store.CreateTicket(ctx, tk, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		m.TicketIDs = append(m.TicketIDs, tk.ID)
		m.Players = append(m.Players, p)
		m.Teams = append(m.Teams, []string{p.ID})
	}
	if err := e.store.ClaimMatch(ctx, m, now); err != nil {
		t.Fatal(err)
	}
	a, err := e.store.AssignMatch(ctx, matchID, now)
	if err != nil {
		t.Fatalf("assigning match %s: %v", matchID, err)
	}
	return a
}

func TestHTTPServerLifecycle(t *testing.T) {
	e := newHTTPEnv(t)
	t0 := e.clock.Now()

	srv := decode[contracts.Server](t, e.do(t, "PUT", "/v1/servers/gs-1",
		`{"address":"10.0.0.7:7777","region":"eu-west","capacity":2}`), http.StatusOK)
	want := contracts.Server{ID: "gs-1", Address: "10.0.0.7:7777", Region: "eu-west", Capacity: 2,
		ExpiresAt: t0.Add(httpTestTTL), Version: srv.Version}
	if srv != want {
		t.Fatalf("registered %+v, want %+v", srv, want)
	}
	if got := decode[contracts.Server](t, e.do(t, "GET", "/v1/servers/gs-1", ""), http.StatusOK); got != srv {
		t.Errorf("GET = %+v, want %+v", got, srv)
	}

	// A heartbeat moves the deadline and may change the address.
	e.clock.Advance(5 * time.Second)
	srv = decode[contracts.Server](t, e.do(t, "PUT", "/v1/servers/gs-1",
		`{"address":"10.0.0.8:7777","region":"eu-west","capacity":2}`), http.StatusOK)
	if srv.Address != "10.0.0.8:7777" || !srv.ExpiresAt.Equal(t0.Add(5*time.Second+httpTestTTL)) {
		t.Errorf("after heartbeat %+v", srv)
	}

	allocs := decode[contracts.Allocations](t, e.do(t, "GET", "/v1/servers/gs-1/allocations", ""), http.StatusOK)
	if allocs.ServerID != "gs-1" || allocs.Version != srv.Version || allocs.Allocations == nil || len(allocs.Allocations) != 0 {
		t.Errorf("allocations of an idle server: %+v (raw %v)", allocs, allocs.Allocations == nil)
	}

	if a := e.allocate(t, "m-1", "eu-west"); a.ServerID != "gs-1" {
		t.Fatalf("match placed on %+v", a)
	}
	allocs = decode[contracts.Allocations](t, e.do(t, "GET", "/v1/servers/gs-1/allocations", ""), http.StatusOK)
	if allocs.Version <= srv.Version || len(allocs.Allocations) != 1 {
		t.Fatalf("allocations after a match: %+v", allocs)
	}
	if a := allocs.Allocations[0]; a.MatchID != "m-1" || a.Queue != "duel" || a.Region != "eu-west" ||
		len(a.Players) != 2 || len(a.TicketIDs) != 2 || len(a.Teams) != 2 || !a.AllocatedAt.Equal(e.clock.Now()) {
		t.Errorf("allocation %+v", a)
	}
	if got := decode[contracts.Server](t, e.do(t, "GET", "/v1/servers/gs-1", ""), http.StatusOK); got.Allocated != 1 {
		t.Errorf("server after a match: %+v", got)
	}

	// Ending the match frees its slot and moves the allocations on.
	if res := e.do(t, "DELETE", "/v1/servers/gs-1/matches/m-1", ""); res.status != http.StatusNoContent || len(res.body) != 0 {
		t.Fatalf("end match: %d %s", res.status, res.body)
	}
	ended := decode[contracts.Allocations](t, e.do(t, "GET", "/v1/servers/gs-1/allocations", ""), http.StatusOK)
	if len(ended.Allocations) != 0 || ended.Version <= allocs.Version {
		t.Errorf("allocations after the end: %+v, want none above version %d", ended, allocs.Version)
	}
	if got := decode[contracts.Server](t, e.do(t, "GET", "/v1/servers/gs-1", ""), http.StatusOK); got.Allocated != 0 {
		t.Errorf("server after the end: %+v", got)
	}
	wantProblem(t, e.do(t, "DELETE", "/v1/servers/gs-1/matches/m-1", ""), http.StatusNotFound, contracts.CodeNotFound)

	// Drain: the server stays, takes no new match, and a heartbeat does
	// not undo it.
	for range 2 {
		drained := decode[contracts.Server](t, e.do(t, "DELETE", "/v1/servers/gs-1", ""), http.StatusOK)
		if !drained.Draining || drained.ID != "gs-1" {
			t.Fatalf("drained %+v", drained)
		}
	}
	srv = decode[contracts.Server](t, e.do(t, "PUT", "/v1/servers/gs-1",
		`{"address":"10.0.0.8:7777","region":"eu-west","capacity":2}`), http.StatusOK)
	if !srv.Draining {
		t.Errorf("heartbeat undid the drain: %+v", srv)
	}
	if got := decode[contracts.Server](t, e.do(t, "GET", "/v1/servers/gs-1", ""), http.StatusOK); !got.Draining {
		t.Errorf("GET after drain: %+v", got)
	}
}

func TestHTTPNotFound(t *testing.T) {
	e := newHTTPEnv(t)
	decode[contracts.Server](t, e.do(t, "PUT", "/v1/servers/gs-1",
		`{"address":"h:1","region":"eu","capacity":1}`), http.StatusOK)
	tests := []struct{ method, path string }{
		{"GET", "/v1/servers/nope"},
		{"GET", "/v1/servers/nope/allocations"},
		{"GET", "/v1/servers/nope/allocations?wait=10s&after=0"},
		{"DELETE", "/v1/servers/nope"},
		{"DELETE", "/v1/servers/nope/matches/m-1"},
		{"DELETE", "/v1/servers/gs-1/matches/m-404"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			wantProblem(t, e.do(t, tt.method, tt.path, ""), http.StatusNotFound, contracts.CodeNotFound)
		})
	}
	if _, err := e.store.Server(context.Background(), "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a 404 left server nope behind: %v", err)
	}
}

func TestHTTPBadInput(t *testing.T) {
	e := newHTTPEnv(t)
	good := decode[contracts.Server](t, e.do(t, "PUT", "/v1/servers/gs-1",
		`{"address":"h:1","region":"eu","capacity":1}`), http.StatusOK)
	longID := strings.Repeat("s", contracts.MaxIDLength+1)
	tests := []struct {
		name         string
		method, path string
		body         string
		status       int
		code         string
	}{
		{"malformed JSON", "PUT", "/v1/servers/gs-2", `{"address":"h:1",`, 400, contracts.CodeBadRequest},
		{"not JSON", "PUT", "/v1/servers/gs-2", `address=h:1`, 400, contracts.CodeBadRequest},
		{"empty body", "PUT", "/v1/servers/gs-2", ``, 400, contracts.CodeBadRequest},
		{"trailing data", "PUT", "/v1/servers/gs-2", `{"address":"h:1","region":"eu","capacity":1}{}`, 400, contracts.CodeBadRequest},
		{"oversized", "PUT", "/v1/servers/gs-2",
			`{"address":"h:1","region":"eu","capacity":1,"pad":"` + strings.Repeat("x", contracts.MaxRequestBytes) + `"}`,
			413, contracts.CodeBodyTooLarge},
		{"capacity is a string", "PUT", "/v1/servers/gs-2", `{"address":"h:1","region":"eu","capacity":"1"}`, 400, contracts.CodeBadRequest},
		{"address is a number", "PUT", "/v1/servers/gs-2", `{"address":1,"region":"eu","capacity":1}`, 400, contracts.CodeBadRequest},
		{"capacity 0", "PUT", "/v1/servers/gs-2", `{"address":"h:1","region":"eu","capacity":0}`, 400, contracts.CodeBadRequest},
		{"missing region", "PUT", "/v1/servers/gs-2", `{"address":"h:1","capacity":1}`, 400, contracts.CodeBadRequest},
		{"unknown field", "PUT", "/v1/servers/gs-2", `{"address":"h:1","region":"eu","capacity":1,"tags":[]}`, 400, contracts.CodeBadRequest},
		{"id too long", "PUT", "/v1/servers/" + longID, `{"address":"h:1","region":"eu","capacity":1}`, 400, contracts.CodeBadRequest},
		{"id with a brace", "PUT", "/v1/servers/gs%7B2", `{"address":"h:1","region":"eu","capacity":1}`, 400, contracts.CodeBadRequest},
		{"bad wait", "GET", "/v1/servers/gs-1/allocations?wait=soon", ``, 400, contracts.CodeBadRequest},
		{"wait without unit", "GET", "/v1/servers/gs-1/allocations?wait=30", ``, 400, contracts.CodeBadRequest},
		{"negative wait", "GET", "/v1/servers/gs-1/allocations?wait=-1s", ``, 400, contracts.CodeBadRequest},
		{"bad after", "GET", "/v1/servers/gs-1/allocations?wait=1s&after=-1", ``, 400, contracts.CodeBadRequest},
		{"bad id on get", "GET", "/v1/servers/" + longID, ``, 400, contracts.CodeBadRequest},
		{"bad id on drain", "DELETE", "/v1/servers/" + longID, ``, 400, contracts.CodeBadRequest},
		{"bad id on allocations", "GET", "/v1/servers/" + longID + "/allocations", ``, 400, contracts.CodeBadRequest},
		{"bad match id", "DELETE", "/v1/servers/gs-1/matches/" + longID, ``, 400, contracts.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantProblem(t, e.do(t, tt.method, tt.path, tt.body), tt.status, tt.code)
			for _, id := range []string{"gs-2", longID, "gs%7B2", "gs{2"} {
				if s, err := e.store.Server(context.Background(), id); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("bad input registered %+v (%v)", s, err)
				}
			}
			if got, err := e.store.Server(context.Background(), "gs-1"); err != nil || got != good {
				t.Errorf("bad input changed gs-1 into %+v (%v), want %+v", got, err, good)
			}
		})
	}
}

func TestHTTPAllocationsLongPoll(t *testing.T) {
	e := newHTTPEnv(t)
	srv := decode[contracts.Server](t, e.do(t, "PUT", "/v1/servers/gs-1",
		`{"address":"h:1","region":"eu","capacity":4}`), http.StatusOK)

	t.Run("answers at once when behind", func(t *testing.T) {
		res := awaitPoll(t, e.poll("/v1/servers/gs-1/allocations?wait=20s&after=0"), "a poll behind the current version")
		if got := decode[contracts.Allocations](t, res, http.StatusOK); got.Version != srv.Version {
			t.Errorf("version %d, want %d", got.Version, srv.Version)
		}
	})

	t.Run("held until the wait ends", func(t *testing.T) {
		const wait = 300 * time.Millisecond
		for _, query := range []string{"wait=300ms", "wait=300ms&after=" + itoa(srv.Version)} {
			start := time.Now()
			got := decode[contracts.Allocations](t, e.do(t, "GET", "/v1/servers/gs-1/allocations?"+query, ""), http.StatusOK)
			if elapsed := time.Since(start); elapsed < wait {
				t.Errorf("%s answered after %v, before the wait ended", query, elapsed)
			}
			if got.Version != srv.Version || len(got.Allocations) != 0 {
				t.Errorf("%s: unchanged allocations read %+v", query, got)
			}
		}
	})

	t.Run("woken by an allocation", func(t *testing.T) {
		done := e.poll("/v1/servers/gs-1/allocations?wait=30s&after=" + itoa(srv.Version))
		waitForWaiters(t, e.hub, 1)
		e.allocate(t, "m-1", "eu")
		got := decode[contracts.Allocations](t, awaitPoll(t, done, "poll woken by an allocation"), http.StatusOK)
		if got.Version <= srv.Version || len(got.Allocations) != 1 || got.Allocations[0].MatchID != "m-1" {
			t.Errorf("woken with %+v", got)
		}
		srv.Version = got.Version
	})

	t.Run("woken by the end of a match", func(t *testing.T) {
		done := e.poll("/v1/servers/gs-1/allocations?wait=30s&after=" + itoa(srv.Version))
		waitForWaiters(t, e.hub, 1)
		if res := e.do(t, "DELETE", "/v1/servers/gs-1/matches/m-1", ""); res.status != http.StatusNoContent {
			t.Fatalf("end match: %d %s", res.status, res.body)
		}
		got := decode[contracts.Allocations](t, awaitPoll(t, done, "poll woken by the end of a match"), http.StatusOK)
		if got.Version <= srv.Version || len(got.Allocations) != 0 {
			t.Errorf("woken with %+v", got)
		}
	})
}

// waitForWaiters waits until n polls are held by hub, so that the change a
// test makes next is one the poll must be woken by.
func waitForWaiters(t *testing.T, hub *longpoll.Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for hub.Waiting() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d polls held after 5s, want %d", hub.Waiting(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

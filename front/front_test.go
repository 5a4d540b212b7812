package front_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	dto "github.com/prometheus/client_model/go"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/front"
	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/broker/membroker"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/longpoll"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
)

// clock is the fixed time of every test: created_at and updated_at must be
// exactly what the front's clock said, in UTC.
var clock = time.Date(2030, time.March, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))

// Test queues: duel (1v1), squad (2 teams of 3) and orphan, which the
// broker never declares, so that publishing to it fails for real.
func testQueues(t testing.TB) *queues.Set {
	t.Helper()
	squad := queues.Duel()
	squad.Name, squad.TeamSize = "squad", 3
	orphan := queues.Duel()
	orphan.Name = "orphan"
	set, err := queues.NewSet(queues.Duel(), squad, orphan)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// frontEnv is one front over a store and a broker.
type frontEnv struct {
	t       testing.TB
	store   front.Store
	broker  broker.Broker
	hub     *longpoll.Hub
	stop    chan struct{}
	metrics *metrics.Metrics
	srv     *httptest.Server
	// created records the id of every ticket the front stored.
	created *createLog
}

// createLog sits between the front and the real store to learn the ids of
// the tickets the front creates, which a failed create never tells the
// client.
type createLog struct {
	front.Store
	mu  sync.Mutex
	ids []string
}

func (c *createLog) CreateTicketOnce(ctx context.Context, t contracts.Ticket, expiresAt time.Time, idem store.Idempotency) error {
	c.mu.Lock()
	c.ids = append(c.ids, t.ID)
	c.mu.Unlock()
	return c.Store.CreateTicketOnce(ctx, t, expiresAt, idem)
}

func (c *createLog) IDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ids...)
}

// storeListener is what a store offers the hub.
type storeListener interface {
	front.Store
	longpoll.Listener
}

// newFrontEnv starts a front on s and b, with its hub listening to s.
func newFrontEnv(t testing.TB, s storeListener, b broker.Broker) *frontEnv {
	t.Helper()
	return newFrontEnvWith(t, s, b, func(*front.Config) {})
}

// newFrontEnvWith is newFrontEnv with the front's config changed by opt.
func newFrontEnvWith(t testing.TB, s storeListener, b broker.Broker, opt func(*front.Config)) *frontEnv {
	t.Helper()
	e := &frontEnv{
		t:       t,
		store:   s,
		broker:  b,
		hub:     longpoll.NewHub(nil),
		stop:    make(chan struct{}),
		metrics: metrics.NewUnregistered(),
		created: &createLog{Store: s},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.hub.Run(ctx, s) }()
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
	cfg := front.Config{
		Queues:    testQueues(t),
		Store:     e.created,
		Publisher: b,
		Poller: &longpoll.Poller{
			Hub:      e.hub,
			MaxWait:  10 * time.Second,
			Stopping: e.stop,
			Gauge:    e.metrics.LongPollsWaiting,
		},
		Metrics: e.metrics,
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:     func() time.Time { return clock },
		Auth:    httpapi.Open(),
		Regions: []string{"eu-west", "us-east"},
	}
	opt(&cfg)
	api := front.New(cfg)
	r := chi.NewRouter()
	api.Mount(r)
	e.srv = httptest.NewServer(r)
	t.Cleanup(e.srv.Close)
	return e
}

// newMemEnv is a front on a fresh memstore and membroker with the duel and
// squad ticket queues declared.
func newMemEnv(t testing.TB) *frontEnv {
	t.Helper()
	b := membroker.New(nil)
	t.Cleanup(func() { b.Close() })
	for _, q := range []string{"duel", "squad"} {
		if err := b.Declare(context.Background(), contracts.TicketQueue(q), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return newFrontEnv(t, memstore.New(memstore.Options{}), b)
}

type response struct {
	status   int
	header   http.Header
	body     []byte
	duration time.Duration
}

func (e *frontEnv) do(method, path string, body io.Reader) response {
	e.t.Helper()
	return do(e.t, e.srv.URL, method, path, body)
}

func do(t testing.TB, base, method, path string, body io.Reader) response {
	t.Helper()
	return doWith(t, base, method, path, body, nil)
}

// doWith is do with extra request headers.
func doWith(t testing.TB, base, method, path string, body io.Reader, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b, duration: time.Since(start)}
}

func ticketBody(queue string, players ...string) string {
	ps := make([]string, len(players))
	for i, p := range players {
		ps[i] = fmt.Sprintf(`{"id":%q,"skill":%d}`, p, 1500+i)
	}
	return fmt.Sprintf(`{"queue":%q,"players":[%s],"latencies":{"eu-west":31},"attributes":{"platform":"pc"}}`,
		queue, strings.Join(ps, ","))
}

// create makes a ticket through the API and fails the test unless it is
// accepted.
func (e *frontEnv) create(queue string, players ...string) contracts.Ticket {
	e.t.Helper()
	r := e.do("POST", "/v1/tickets", strings.NewReader(ticketBody(queue, players...)))
	if r.status != http.StatusCreated {
		e.t.Fatalf("create for %v: %d %s", players, r.status, r.body)
	}
	return decodeTicket(e.t, r)
}

func decodeTicket(t testing.TB, r response) contracts.Ticket {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q for %s", ct, r.body)
	}
	var tk contracts.Ticket
	if err := json.Unmarshal(r.body, &tk); err != nil {
		t.Fatalf("decoding ticket %s: %v", r.body, err)
	}
	return tk
}

func decodeProblem(t testing.TB, r response) contracts.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != contracts.ProblemContentType {
		t.Fatalf("Content-Type %q for %d %s", ct, r.status, r.body)
	}
	var p contracts.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("decoding problem %s: %v", r.body, err)
	}
	if p.Status != r.status || p.Type != contracts.ProblemTypeBase+p.Code || p.Title == "" {
		t.Errorf("inconsistent problem %+v for status %d", p, r.status)
	}
	return p
}

// published takes every ticket message on queue's broker queue, waiting up
// to settle after the last one for any straggler, and answers their
// tickets.
func (e *frontEnv) published(queue string, settle time.Duration) []contracts.TicketTry {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu   sync.Mutex
		msgs []contracts.TicketTry
		errs []error
	)
	got := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- e.broker.Consume(ctx, contracts.TicketQueue(queue), broker.ConsumeOptions{Prefetch: 16, Workers: 1},
			func(ctx context.Context, m broker.Message) error {
				msg, rejected, err := contracts.DecodeTicketMessage(m.Body)
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, err)
				case len(rejected) > 0:
					errs = append(errs, rejected[0].Err)
				case msg.V != contracts.SchemaVersion:
					errs = append(errs, fmt.Errorf("message of version %d", msg.V))
				default:
					msgs = append(msgs, msg.Tickets...)
				}
				mu.Unlock()
				select {
				case got <- struct{}{}:
				default:
				}
				return nil
			})
	}()
	quiet := time.NewTimer(settle)
	defer quiet.Stop()
	limit := time.After(5 * time.Second)
wait:
	for {
		select {
		case <-got:
			quiet.Reset(settle)
		case <-quiet.C:
			break wait
		case <-limit:
			e.t.Errorf("messages on %s did not stop coming", queue)
			break wait
		}
	}
	cancel()
	if err := <-done; err != nil {
		e.t.Fatalf("consuming %s: %v", queue, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, err := range errs {
		e.t.Errorf("undecodable ticket message: %v", err)
	}
	return msgs
}

func counter(t testing.TB, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Gauge != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

func TestCreateTicket(t *testing.T) {
	e := newMemEnv(t)
	body := `{"queue":"duel","players":[{"id":"p-1","skill":1520}],"latencies":{"eu-west":31,"us-east":112},"attributes":{"platform":"pc"}}`
	r := e.do("POST", "/v1/tickets", strings.NewReader(body))
	if r.status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	tk := decodeTicket(t, r)
	if loc := r.header.Get("Location"); loc != "/v1/tickets/"+tk.ID {
		t.Errorf("Location = %q for ticket %s", loc, tk.ID)
	}
	now := clock.UTC()
	if tk.ID == "" || tk.Queue != "duel" || tk.Status != contracts.StatusSearching || tk.Version != 1 ||
		!tk.CreatedAt.Equal(now) || !tk.UpdatedAt.Equal(now) || tk.CreatedAt.Location() != time.UTC ||
		len(tk.Players) != 1 || tk.Players[0] != (contracts.Player{ID: "p-1", Skill: 1520}) ||
		tk.Latencies["us-east"] != 112 || tk.Attributes["platform"] != "pc" ||
		tk.Match != nil || tk.Assignment != nil || tk.Reason != "" {
		t.Errorf("created ticket = %+v", tk)
	}
	if !strings.Contains(string(r.body), `"created_at":"2030-03-04T04:06:07Z"`) {
		t.Errorf("created_at not RFC 3339 in UTC: %s", r.body)
	}

	stored, err := e.store.Ticket(context.Background(), tk.ID)
	if err != nil {
		t.Fatalf("stored ticket: %v", err)
	}
	if stored.Version != 1 || stored.Status != contracts.StatusSearching {
		t.Errorf("stored ticket = %+v", stored)
	}

	msgs := e.published("duel", 200*time.Millisecond)
	if len(msgs) != 1 {
		t.Fatalf("%d messages published, want 1", len(msgs))
	}
	if m := msgs[0]; m.Attempt != 0 || m.Ticket.ID != tk.ID ||
		m.Ticket.Queue != "duel" || m.Ticket.Players[0].Skill != 1520 || !m.Ticket.CreatedAt.Equal(now) {
		t.Errorf("message = %+v", m)
	}
	if n := counter(t, e.metrics.TicketsCreated.WithLabelValues("duel")); n != 1 {
		t.Errorf("tickets created metric = %v", n)
	}

	// A party fills one team at most.
	party := e.create("squad", "s-1", "s-2", "s-3")
	if len(party.Players) != 3 || party.Queue != "squad" {
		t.Errorf("party ticket = %+v", party)
	}
}

func TestGetTicket(t *testing.T) {
	e := newMemEnv(t)
	tk := e.create("duel", "p-1")
	r := e.do("GET", "/v1/tickets/"+tk.ID, nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if got := decodeTicket(t, r); got.ID != tk.ID || got.Version != 1 || got.Status != contracts.StatusSearching {
		t.Errorf("got %+v", got)
	}

	tests := []struct {
		name, path string
		status     int
		code       string
	}{
		{"unknown", "/v1/tickets/no-such-ticket", http.StatusNotFound, contracts.CodeNotFound},
		{"braces", "/v1/tickets/%7Bx%7D", http.StatusBadRequest, contracts.CodeBadRequest},
		{"space", "/v1/tickets/a%20b", http.StatusBadRequest, contracts.CodeBadRequest},
		{"quote", "/v1/tickets/a%22b", http.StatusBadRequest, contracts.CodeBadRequest},
		{"too long", "/v1/tickets/" + strings.Repeat("x", contracts.MaxIDLength+1), http.StatusBadRequest, contracts.CodeBadRequest},
	}
	for _, tt := range tests {
		for _, method := range []string{"GET", "DELETE"} {
			t.Run(method+" "+tt.name, func(t *testing.T) {
				r := e.do(method, tt.path, nil)
				if r.status != tt.status {
					t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
				}
				if p := decodeProblem(t, r); p.Code != tt.code {
					t.Errorf("code %q, want %q", p.Code, tt.code)
				}
			})
		}
	}
}

func TestCancelTicket(t *testing.T) {
	e := newMemEnv(t)
	tk := e.create("duel", "p-1")
	for i := range 2 { // repeating the cancel is harmless
		r := e.do("DELETE", "/v1/tickets/"+tk.ID, nil)
		if r.status != http.StatusOK {
			t.Fatalf("cancel #%d: %d %s", i+1, r.status, r.body)
		}
		got := decodeTicket(t, r)
		if got.Status != contracts.StatusCancelled || got.Version != 2 || !got.UpdatedAt.Equal(clock) {
			t.Errorf("cancel #%d: %+v", i+1, got)
		}
	}
	// The player is free again.
	e.create("duel", "p-1")
}

func TestCancelMatchedTicket(t *testing.T) {
	e := newMemEnv(t)
	a, b := e.create("duel", "p-1"), e.create("duel", "p-2")
	m := contracts.Match{
		ID: "m-1", Queue: "duel", Region: "eu-west",
		Teams: [][]string{{"p-1"}, {"p-2"}}, TicketIDs: []string{a.ID, b.ID},
		Players: append(a.Players, b.Players...), CreatedAt: clock, AssignDeadline: clock.Add(time.Minute),
	}
	ms := e.store.(interface {
		ClaimMatch(context.Context, contracts.Match, time.Time) error
	})
	if err := ms.ClaimMatch(context.Background(), m, clock); err != nil {
		t.Fatal(err)
	}
	r := e.do("DELETE", "/v1/tickets/"+a.ID, nil)
	if r.status != http.StatusConflict {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if p := decodeProblem(t, r); p.Code != contracts.CodeTicketMatched {
		t.Errorf("code %q, want %q", p.Code, contracts.CodeTicketMatched)
	}
	got, err := e.store.Ticket(context.Background(), a.ID)
	if err != nil || got.Status != contracts.StatusMatched || got.Version != 2 {
		t.Errorf("after the refused cancel: %+v, %v", got, err)
	}
}

// TestBadInputChangesNothing covers invariant 7 of docs/design.md: every malformed request is
// answered with a problem and leaves nothing behind.
func TestBadInputChangesNothing(t *testing.T) {
	big := fmt.Sprintf(`{"queue":"duel","players":[{"id":"p-1","skill":1}],"attributes":{"x":%q}}`,
		strings.Repeat("a", contracts.MaxRequestBytes))
	tests := []struct {
		name   string
		method string
		// path may hold {id}: the id of a live ticket of another player.
		path   string
		body   string
		status int
		code   string
	}{
		{"malformed JSON", "POST", "/v1/tickets", `{"queue":"duel","players":[{"id":"p-1"`, 400, contracts.CodeBadRequest},
		{"not JSON", "POST", "/v1/tickets", `queue=duel`, 400, contracts.CodeBadRequest},
		{"empty body", "POST", "/v1/tickets", ``, 400, contracts.CodeBadRequest},
		{"trailing data", "POST", "/v1/tickets", ticketBody("duel", "p-1") + `{}`, 400, contracts.CodeBadRequest},
		{"trailing garbage", "POST", "/v1/tickets", ticketBody("duel", "p-1") + ` x`, 400, contracts.CodeBadRequest},
		{"oversized body", "POST", "/v1/tickets", big, 413, contracts.CodeBodyTooLarge},
		{"skill is a string", "POST", "/v1/tickets", `{"queue":"duel","players":[{"id":"p-1","skill":"high"}]}`, 400, contracts.CodeBadRequest},
		{"players is an object", "POST", "/v1/tickets", `{"queue":"duel","players":{"id":"p-1"}}`, 400, contracts.CodeBadRequest},
		{"queue is a number", "POST", "/v1/tickets", `{"queue":7,"players":[{"id":"p-1","skill":1}]}`, 400, contracts.CodeBadRequest},
		{"unknown field", "POST", "/v1/tickets", `{"queue":"duel","mode":"ranked","players":[{"id":"p-1","skill":1}]}`, 400, contracts.CodeBadRequest},
		{"unknown queue", "POST", "/v1/tickets", ticketBody("chess", "p-1"), 400, contracts.CodeUnknownQueue},
		{"missing queue", "POST", "/v1/tickets", `{"players":[{"id":"p-1","skill":1}]}`, 400, contracts.CodeBadRequest},
		{"empty players", "POST", "/v1/tickets", `{"queue":"duel","players":[]}`, 400, contracts.CodeBadRequest},
		{"missing players", "POST", "/v1/tickets", `{"queue":"duel"}`, 400, contracts.CodeBadRequest},
		{"missing player id", "POST", "/v1/tickets", `{"queue":"duel","players":[{"skill":1}]}`, 400, contracts.CodeBadRequest},
		{"party larger than the team", "POST", "/v1/tickets", ticketBody("duel", "p-1", "p-2"), 400, contracts.CodeBadRequest},
		{"party larger than a squad", "POST", "/v1/tickets", ticketBody("squad", "p-1", "p-2", "p-3", "p-4"), 400, contracts.CodeBadRequest},
		{"player twice", "POST", "/v1/tickets", ticketBody("squad", "p-1", "p-1"), 400, contracts.CodeBadRequest},
		{"negative latency", "POST", "/v1/tickets", `{"queue":"duel","players":[{"id":"p-1","skill":1}],"latencies":{"eu-west":-5}}`, 400, contracts.CodeBadRequest},
		{"bad wait", "GET", "/v1/tickets/{id}?wait=soon", "", 400, contracts.CodeBadRequest},
		{"wait without unit", "GET", "/v1/tickets/{id}?wait=30", "", 400, contracts.CodeBadRequest},
		{"negative wait", "GET", "/v1/tickets/{id}?wait=-1s", "", 400, contracts.CodeBadRequest},
		{"bad after", "GET", "/v1/tickets/{id}?wait=1s&after=v2", "", 400, contracts.CodeBadRequest},
		{"negative after", "GET", "/v1/tickets/{id}?after=-1", "", 400, contracts.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newMemEnv(t)
			other := e.create("duel", "other")
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			r := e.do(tt.method, strings.ReplaceAll(tt.path, "{id}", other.ID), body)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			p := decodeProblem(t, r)
			if p.Code != tt.code || p.Detail == "" {
				t.Errorf("problem %+v, want code %q with a detail", p, tt.code)
			}

			// Nothing was stored: the players are free, the other ticket
			// is as it was, and the only messages are of the good tickets.
			mine := e.create("squad", "p-1", "p-2", "p-3")
			if got, err := e.store.Ticket(context.Background(), other.ID); err != nil || got.Version != 1 ||
				got.Status != contracts.StatusSearching {
				t.Errorf("other ticket after the bad request: %+v, %v", got, err)
			}
			if ids := e.created.IDs(); len(ids) != 2 {
				t.Errorf("%d tickets stored, want 2 (the good ones)", len(ids))
			}
			if msgs := e.published("duel", 100*time.Millisecond); len(msgs) != 1 || msgs[0].Ticket.ID != other.ID {
				t.Errorf("duel queue holds %+v, want only the other ticket", msgs)
			}
			if msgs := e.published("squad", 100*time.Millisecond); len(msgs) != 1 || msgs[0].Ticket.ID != mine.ID {
				t.Errorf("squad queue holds %+v, want only the good ticket", msgs)
			}
		})
	}
}

func TestDuplicatePlayer(t *testing.T) {
	e := newMemEnv(t)
	first := e.create("duel", "p-1")
	// The busy player is anywhere in a party.
	r := e.do("POST", "/v1/tickets", strings.NewReader(ticketBody("squad", "p-7", "p-1")))
	if r.status != http.StatusConflict {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	p := decodeProblem(t, r)
	if p.Code != contracts.CodePlayerHasTicket || p.TicketID != first.ID {
		t.Errorf("problem %+v, want %s pointing at %s", p, contracts.CodePlayerHasTicket, first.ID)
	}
	if loc := r.header.Get("Location"); loc != "/v1/tickets/"+first.ID {
		t.Errorf("Location = %q", loc)
	}
	// Neither the refused ticket nor its other player was kept.
	e.create("duel", "p-7")
	if msgs := e.published("squad", 100*time.Millisecond); len(msgs) != 0 {
		t.Errorf("refused ticket was published: %+v", msgs)
	}
	if msgs := e.published("duel", 100*time.Millisecond); len(msgs) != 2 {
		t.Errorf("%d duel messages, want 2", len(msgs))
	}
}

func TestPublishFailure(t *testing.T) {
	tests := []struct {
		name  string
		queue string
		setup func(e *frontEnv)
	}{
		// orphan is a queue of the deployment that the broker lacks.
		{"queue not declared", "orphan", func(*frontEnv) {}},
		{"broker closed", "duel", func(e *frontEnv) { e.broker.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newMemEnv(t)
			tt.setup(e)
			r := e.do("POST", "/v1/tickets", strings.NewReader(ticketBody(tt.queue, "p-1")))
			if r.status != http.StatusServiceUnavailable {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if p := decodeProblem(t, r); p.Code != contracts.CodeUnavailable || p.Detail != "" {
				t.Errorf("problem %+v", p)
			}
			ids := e.created.IDs()
			if len(ids) != 1 {
				t.Fatalf("%d tickets stored, want 1", len(ids))
			}
			if tk, err := e.store.Ticket(context.Background(), ids[0]); err == nil {
				t.Errorf("unannounced ticket left behind: %+v", tk)
			}
			if n := counter(t, e.metrics.TicketsCreated.WithLabelValues(tt.queue)); n != 0 {
				t.Errorf("tickets created metric = %v", n)
			}
			// The player was released: a create that reaches the store
			// is refused for the broker again, not for a busy player.
			r = e.do("POST", "/v1/tickets", strings.NewReader(ticketBody(tt.queue, "p-1")))
			if r.status != http.StatusServiceUnavailable {
				t.Errorf("second create: %d %s", r.status, r.body)
			}
		})
	}
}

// poll runs a GET in the background so that the test can act while it is
// held.
func poll(t testing.TB, base, path string) <-chan response {
	out := make(chan response, 1)
	go func() {
		start := time.Now()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Error(err)
			out <- response{}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Error(err)
		}
		out <- response{status: resp.StatusCode, header: resp.Header, body: b, duration: time.Since(start)}
	}()
	return out
}

func await(t testing.TB, ch <-chan response, within time.Duration) response {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(within):
		t.Fatalf("no answer within %v", within)
		return response{}
	}
}

// held waits until n long-polls are held by e.
func (e *frontEnv) held(n float64) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for counter(e.t, e.metrics.LongPollsWaiting.WithLabelValues("ticket")) != n {
		if time.Now().After(deadline) {
			e.t.Fatalf("long-polls held: %v, want %v", counter(e.t, e.metrics.LongPollsWaiting.WithLabelValues("ticket")), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLongPollUnchanged(t *testing.T) {
	e := newMemEnv(t)
	tk := e.create("duel", "p-1")
	const wait = 300 * time.Millisecond
	r := await(t, poll(t, e.srv.URL, fmt.Sprintf("/v1/tickets/%s?wait=%s&after=1", tk.ID, wait)), 5*time.Second)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if got := decodeTicket(t, r); got.Version != 1 || got.Status != contracts.StatusSearching {
		t.Errorf("got %+v, want the unchanged ticket", got)
	}
	if r.duration < wait {
		t.Errorf("answered after %v, before the wait of %v", r.duration, wait)
	}
}

func TestLongPollAnswersNewerAtOnce(t *testing.T) {
	e := newMemEnv(t)
	tk := e.create("duel", "p-1")
	r := await(t, poll(t, e.srv.URL, "/v1/tickets/"+tk.ID+"?wait=10s&after=0"), time.Second)
	if got := decodeTicket(t, r); r.status != http.StatusOK || got.Version != 1 {
		t.Errorf("got %d %+v", r.status, got)
	}
}

func TestLongPollWokenByCancel(t *testing.T) {
	for _, query := range []string{"?wait=10s&after=1", "?wait=10s"} {
		t.Run(query, func(t *testing.T) {
			e := newMemEnv(t)
			tk := e.create("duel", "p-1")
			res := poll(t, e.srv.URL, "/v1/tickets/"+tk.ID+query)
			e.held(1)
			if r := e.do("DELETE", "/v1/tickets/"+tk.ID, nil); r.status != http.StatusOK {
				t.Fatalf("cancel: %d %s", r.status, r.body)
			}
			r := await(t, res, time.Second)
			if got := decodeTicket(t, r); r.status != http.StatusOK || got.Status != contracts.StatusCancelled || got.Version != 2 {
				t.Errorf("got %d %+v", r.status, got)
			}
			e.held(0)
		})
	}
}

func TestLongPollStopping(t *testing.T) {
	e := newMemEnv(t)
	a, b := e.create("duel", "p-1"), e.create("duel", "p-2")
	held := []<-chan response{
		poll(t, e.srv.URL, "/v1/tickets/"+a.ID+"?wait=10s&after=1"),
		poll(t, e.srv.URL, "/v1/tickets/"+b.ID+"?wait=10s"),
	}
	e.held(2)
	close(e.stop)
	for _, ch := range held {
		r := await(t, ch, time.Second)
		if got := decodeTicket(t, r); r.status != http.StatusOK || got.Version != 1 {
			t.Errorf("got %d %+v", r.status, got)
		}
	}
}

func TestLongPollUnknownTicket(t *testing.T) {
	e := newMemEnv(t)
	r := await(t, poll(t, e.srv.URL, "/v1/tickets/nope?wait=10s"), time.Second)
	if r.status != http.StatusNotFound {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if p := decodeProblem(t, r); p.Code != contracts.CodeNotFound {
		t.Errorf("code %q", p.Code)
	}
}

func BenchmarkCreateTicket(b *testing.B) {
	ms := memstore.New(memstore.Options{})
	mb := membroker.New(nil)
	defer mb.Close()
	if err := mb.Declare(context.Background(), contracts.TicketQueue("duel"), time.Second); err != nil {
		b.Fatal(err)
	}
	api := front.New(front.Config{
		Queues:    testQueues(b),
		Store:     ms,
		Publisher: mb,
		Poller:    &longpoll.Poller{Hub: longpoll.NewHub(nil), MaxWait: time.Second},
		Metrics:   metrics.NewUnregistered(),
		Log:       slog.New(slog.DiscardHandler),
		Now:       time.Now,
		Auth:      httpapi.Open(),
	})
	r := chi.NewRouter()
	api.Mount(r)

	var seq struct {
		sync.Mutex
		n int
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		seq.Lock()
		seq.n++
		worker := seq.n
		seq.Unlock()
		var buf bytes.Buffer
		for i := 0; pb.Next(); i++ {
			buf.Reset()
			fmt.Fprintf(&buf, `{"queue":"duel","players":[{"id":"w%d-p%d","skill":1500}],"latencies":{"eu-west":31}}`, worker, i)
			req := httptest.NewRequest("POST", "/v1/tickets", &buf)
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)
			if rec.Code != http.StatusCreated {
				b.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
		}
	})
}

// heldStore holds every CreateTicket in the store until release is closed,
// and says when one has arrived.
type heldStore struct {
	storeListener
	arrived chan struct{}
	release chan struct{}
}

func (h *heldStore) CreateTicketOnce(ctx context.Context, t contracts.Ticket, expiresAt time.Time, idem store.Idempotency) error {
	h.arrived <- struct{}{}
	<-h.release
	return h.storeListener.CreateTicketOnce(ctx, t, expiresAt, idem)
}

// TestOverloadedCreate fills the front's creates in progress: the next
// create is refused at once with 503 overloaded and Retry-After, leaves
// nothing behind, and once a create finishes the next one is taken.
func TestOverloadedCreate(t *testing.T) {
	b := membroker.New(nil)
	t.Cleanup(func() { b.Close() })
	if err := b.Declare(context.Background(), contracts.TicketQueue("duel"), time.Second); err != nil {
		t.Fatal(err)
	}
	held := &heldStore{storeListener: memstore.New(memstore.Options{}), arrived: make(chan struct{}, 1), release: make(chan struct{})}
	e := newFrontEnvWith(t, held, b, func(c *front.Config) { c.MaxCreates = 1 })

	first := make(chan response, 1)
	go func() { first <- do(t, e.srv.URL, "POST", "/v1/tickets", strings.NewReader(ticketBody("duel", "p-1"))) }()
	<-held.arrived

	r := e.do("POST", "/v1/tickets", strings.NewReader(ticketBody("duel", "p-2")))
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("create past the bound: status %d: %s", r.status, r.body)
	}
	if p := decodeProblem(t, r); p.Code != contracts.CodeOverloaded {
		t.Errorf("problem %+v, want code %s", p, contracts.CodeOverloaded)
	}
	if got := r.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if ids := e.created.IDs(); len(ids) != 1 {
		t.Errorf("%d creates reached the store, want only the one in progress", len(ids))
	}

	close(held.release)
	if r := <-first; r.status != http.StatusCreated {
		t.Fatalf("the create in progress: status %d: %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/tickets", strings.NewReader(ticketBody("duel", "p-2"))); r.status != http.StatusCreated {
		t.Errorf("create after the bound freed: status %d: %s", r.status, r.body)
	}
}

// deliveredThenLost is a publisher whose message reaches a matcher, which
// matches the ticket, but whose confirm is lost with the channel: the
// front is told the publish failed.
type deliveredThenLost struct {
	t     testing.TB
	store *memstore.Store
}

func (p deliveredThenLost) Publish(ctx context.Context, _ string, bodies ...[]byte) error {
	for _, body := range bodies {
		tm, _, err := contracts.DecodeTicketMessage(body)
		if err != nil || len(tm.Tickets) != 1 {
			p.t.Errorf("decoding published ticket: %v, %d tickets", err, len(tm.Tickets))
			continue
		}
		msg := tm.Tickets[0]
		rival := contracts.Ticket{
			ID: store.NewID(msg.Ticket.Queue), Queue: msg.Ticket.Queue, Status: contracts.StatusSearching,
			Version: 1, CreatedAt: clock, UpdatedAt: clock, Players: []contracts.Player{{ID: "rival", Skill: 1500}},
		}
		if err := p.store.CreateTicket(ctx, rival, clock.Add(time.Hour)); err != nil {
			p.t.Errorf("creating rival: %v", err)
		}
		m := contracts.Match{
			ID: store.NewID(msg.Ticket.Queue), Queue: msg.Ticket.Queue,
			Teams:     [][]string{{msg.Ticket.Players[0].ID}, {"rival"}},
			TicketIDs: []string{msg.Ticket.ID, rival.ID},
			Players:   append(slices.Clone(msg.Ticket.Players), rival.Players...),
			CreatedAt: clock, AssignDeadline: clock.Add(time.Minute),
		}
		if err := p.store.ClaimMatch(ctx, m, clock); err != nil {
			p.t.Errorf("claiming match: %v", err)
		}
	}
	return errors.New("channel closed before message 1 of 1 was confirmed")
}

// TestPublishFailedButDelivered: an unconfirmed publish that a matcher
// acted on is a successful create. Before, the front deleted the matched
// ticket and answered 503, and the client's retry made a second match.
func TestPublishFailedButDelivered(t *testing.T) {
	s := memstore.New(memstore.Options{})
	b := membroker.New(nil)
	t.Cleanup(func() { b.Close() })
	e := newFrontEnvWith(t, s, b, func(c *front.Config) { c.Publisher = deliveredThenLost{t: t, store: s} })
	r := e.do("POST", "/v1/tickets", strings.NewReader(ticketBody("duel", "p-1")))
	if r.status != http.StatusCreated {
		t.Fatalf("create whose message was matched: status %d: %s", r.status, r.body)
	}
	var created contracts.Ticket
	if err := json.Unmarshal(r.body, &created); err != nil {
		t.Fatal(err)
	}
	tk, err := s.Ticket(t.Context(), created.ID)
	if err != nil || tk.Status != contracts.StatusMatched || tk.Match == nil {
		t.Fatalf("ticket after the create = %+v, %v; want it kept, matched", tk, err)
	}
	// The player is still held by the matched ticket: a retry is told so.
	r = e.do("POST", "/v1/tickets", strings.NewReader(ticketBody("duel", "p-1")))
	if r.status != http.StatusConflict {
		t.Errorf("retry of the create: status %d: %s; want 409", r.status, r.body)
	}
}

// TestCreateRefusesWhatJSONWouldLetThrough: bodies that encoding/json
// accepts but that are not what they seem are refused, and store nothing.
func TestCreateRefusesWhatJSONWouldLetThrough(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		status      int
		code        string
	}{
		{"form encoded", "application/x-www-form-urlencoded", ticketBody("duel", "p-1"), http.StatusUnsupportedMediaType, contracts.CodeUnsupportedType},
		{"plain text", "text/plain", ticketBody("duel", "p-1"), http.StatusUnsupportedMediaType, contracts.CodeUnsupportedType},
		{"duplicate key", "application/json", `{"queue":"nope","queue":"duel","players":[{"id":"p-1","skill":1}]}`, http.StatusBadRequest, contracts.CodeBadRequest},
		{"invalid UTF-8", "application/json", "{\"queue\":\"duel\",\"players\":[{\"id\":\"p-1\",\"skill\":1}],\"attributes\":{\"k\":\"\xff\"}}", http.StatusBadRequest, contracts.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newMemEnv(t)
			req, err := http.NewRequest("POST", e.srv.URL+"/v1/tickets", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tt.contentType)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != contracts.ProblemContentType {
				t.Fatalf("status %d (%s): %s; want %d problem+json", resp.StatusCode, resp.Header.Get("Content-Type"), body, tt.status)
			}
			if p := decodeProblem(t, response{status: resp.StatusCode, header: resp.Header, body: body}); p.Code != tt.code {
				t.Errorf("code %q; want %q", p.Code, tt.code)
			}
			if ids := e.created.IDs(); len(ids) != 0 {
				t.Errorf("refused create stored tickets %v", ids)
			}
		})
	}
}

// TestCancelCounted: a cancel that ends a ticket counts it finished
// cancelled, once however often it is repeated.
func TestCancelCounted(t *testing.T) {
	b := membroker.New(nil)
	t.Cleanup(func() { b.Close() })
	if err := b.Declare(context.Background(), contracts.TicketQueue("duel"), time.Second); err != nil {
		t.Fatal(err)
	}
	var tick atomic.Int64
	e := newFrontEnvWith(t, memstore.New(memstore.Options{}), b, func(c *front.Config) {
		c.Now = func() time.Time { return clock.Add(time.Duration(tick.Add(1)) * time.Millisecond) }
	})
	tk := e.create("duel", "p-1")
	for range 3 {
		if r := e.do("DELETE", "/v1/tickets/"+tk.ID, nil); r.status != http.StatusOK {
			t.Fatalf("cancel: %d %s", r.status, r.body)
		}
	}
	var m dto.Metric
	if err := e.metrics.TicketsFinished.WithLabelValues("duel", "cancelled").Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Errorf("cancelled tickets counted %v, want 1", got)
	}
}

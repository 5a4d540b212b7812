package contracts_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/go-chi/chi/v5"
	"github.com/golang-jwt/jwt/v5"

	"github.com/quickmatch/quickmatch/assigner"
	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/front"
	"github.com/quickmatch/quickmatch/internal/auth"
	"github.com/quickmatch/quickmatch/internal/auth/authtest"
	"github.com/quickmatch/quickmatch/internal/broker/membroker"
	"github.com/quickmatch/quickmatch/internal/dashboard"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/longpoll"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
	"github.com/quickmatch/quickmatch/internal/testenv"
	"github.com/quickmatch/quickmatch/services"
)

// TestOpenAPI checks openapi.yaml against the real handlers: every request
// the scenario sends and every answer it gets is validated against the
// document, every route the API mounts must be documented, and every status
// the document lists (but 500, which no scenario can provoke) must have been
// seen. Requests that are wrong on purpose must be wrong by the document
// too, so that it is no laxer than the server.
func TestOpenAPI(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("openapi.yaml")
	if err != nil {
		t.Fatalf("loading openapi.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("routing openapi.yaml: %v", err)
	}
	c := &specChecker{router: router, seen: map[string]bool{}}

	api := newSpecAPI(t)
	t.Run("routes documented", func(t *testing.T) {
		err := chi.Walk(api.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
			if doc.Paths.Find(route) == nil || doc.Paths.Find(route).GetOperation(method) == nil {
				t.Errorf("%s %s is served but not documented", method, route)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("player API", func(t *testing.T) { playerScenario(t, c, api) })
	t.Run("game-server API", func(t *testing.T) { serverScenario(t, c, api) })
	t.Run("unavailable", func(t *testing.T) { unavailableScenario(t, c, api) })
	t.Run("auth", func(t *testing.T) { authScenario(t, c, api) })
	t.Run("operations", func(t *testing.T) { opsScenario(t, c) })

	if t.Failed() {
		return
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				if status == "500" {
					continue
				}
				if key := method + " " + path + " " + status; !c.saw(key) {
					t.Errorf("%s is documented but the scenario never saw it", key)
				}
			}
		}
	}
}

// specChecker sends requests and validates them, and their answers,
// against the document.
type specChecker struct {
	router routers.Router

	mu   sync.Mutex
	seen map[string]bool // "METHOD /path/{param} status"
}

// call is one request of a scenario.
type call struct {
	method, path, body string
	header             http.Header
	status             int
	// offSpec marks a request that breaks the document on purpose; the
	// document must reject it as the server does.
	offSpec bool
	// unchecked skips validating the request, for a fault the validator
	// cannot see.
	unchecked bool
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (c *specChecker) saw(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[key]
}

// exchange sends cl to base and checks both sides against the document. It
// may run on any goroutine.
func (c *specChecker) exchange(ctx context.Context, base string, cl call) (answer, error) {
	newReq := func() (*http.Request, error) {
		var body io.Reader
		if cl.body != "" {
			body = strings.NewReader(cl.body)
		}
		req, err := http.NewRequestWithContext(ctx, cl.method, base+cl.path, body)
		if err != nil {
			return nil, err
		}
		for k, v := range cl.header {
			req.Header[k] = v
		}
		if cl.body != "" && req.Header.Get("Content-Type") == "" {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, nil
	}
	what := cl.method + " " + cl.path

	// The validator reads the body, so it gets a request of its own.
	vreq, err := newReq()
	if err != nil {
		return answer{}, err
	}
	route, params, err := c.router.FindRoute(vreq)
	if err != nil {
		return answer{}, fmt.Errorf("%s: not in the document: %w", what, err)
	}
	reqInput := &openapi3filter.RequestValidationInput{
		Request:    vreq,
		PathParams: params,
		Route:      route,
		Options:    &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	reqErr := openapi3filter.ValidateRequest(ctx, reqInput)
	switch {
	case cl.unchecked:
	case cl.offSpec && reqErr == nil:
		return answer{}, fmt.Errorf("%s: the document accepts a request the test means to be wrong", what)
	case !cl.offSpec && reqErr != nil:
		return answer{}, fmt.Errorf("%s: request does not match the document: %w", what, reqErr)
	}

	req, err := newReq()
	if err != nil {
		return answer{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	body, err := readBody(resp)
	if err != nil {
		return answer{}, fmt.Errorf("%s: reading answer: %w", what, err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: body}

	respInput := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqInput,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	respInput.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, respInput); err != nil {
		return a, fmt.Errorf("%s: answer %d %s does not match the document: %w", what, resp.StatusCode, body, err)
	}
	if a.status != cl.status {
		return a, fmt.Errorf("%s: status %d, want %d; body %s", what, a.status, cl.status, body)
	}
	if a.status == http.StatusNoContent && len(body) != 0 {
		return a, fmt.Errorf("%s: 204 with a body %q", what, body)
	}
	c.mu.Lock()
	c.seen[route.Method+" "+route.Path+" "+fmt.Sprint(a.status)] = true
	c.mu.Unlock()
	return a, nil
}

func (c *specChecker) do(t *testing.T, base string, cl call) answer {
	t.Helper()
	a, err := c.exchange(context.Background(), base, cl)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// start sends cl on another goroutine, for a long-poll.
func (c *specChecker) start(base string, cl call) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.exchange(ctx, base, cl)
		done <- err
	}()
	return done
}

func await(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a long-poll was not woken within 5s")
	}
}

func decodeJSON[T any](t *testing.T, a answer) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("decoding %s: %v", a.body, err)
	}
	return v
}

// specAPI is the front and the assigner's HTTP API on one router, over a
// memstore and a membroker, as the all-in-one binary mounts them; and the
// same routes over a store that is down.
type specAPI struct {
	store  *memstore.Store
	hub    *longpoll.Hub
	router chi.Router
	url    string
	// downURL serves the same API over a store that always fails.
	downURL string
	// authURL serves the same API over the same store with auth on:
	// tokens signed with specSecret, one create per player.
	authURL string
}

var specSecret = []byte("the secret of the document's test, 32 bytes or more")

func newSpecAPI(t *testing.T) *specAPI {
	t.Helper()
	ctx := context.Background()
	b := membroker.New(nil)
	t.Cleanup(func() { b.Close() })
	if err := b.Declare(ctx, contracts.TicketQueue("duel"), time.Second); err != nil {
		t.Fatal(err)
	}
	qs, err := queues.NewSet(queues.Duel())
	if err != nil {
		t.Fatal(err)
	}
	api := &specAPI{store: memstore.New(memstore.Options{}), hub: longpoll.NewHub(nil)}
	hubCtx, cancel := context.WithCancel(ctx)
	hubDone := make(chan error, 1)
	go func() { hubDone <- api.hub.Run(hubCtx, api.store) }()
	t.Cleanup(func() {
		cancel()
		if err := <-hubDone; err != nil {
			t.Errorf("hub: %v", err)
		}
	})
	select {
	case <-api.hub.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("hub never became ready")
	}
	log := slog.New(slog.DiscardHandler)
	poller := &longpoll.Poller{Hub: api.hub, MaxWait: 30 * time.Second, Log: log}

	mountWith := func(authn *httpapi.Authenticator, st specStore) chi.Router {
		r := httpapi.NewRouter()
		dash := dashboard.New(dashboard.Config{Queues: qs, Store: st, Auth: authn, Log: log})
		dash.Mount(r)
		front.New(front.Config{Queues: qs, Store: st, Publisher: b, Poller: poller, Log: log, Auth: authn,
			Regions: []string{"eu-west", "us-east"}, PlayerCreates: auth.NewLimiter(0.001, 1, 100), PlayerExplains: auth.NewLimiter(0.001, 1, 100), Waits: dash}).Mount(r)
		assigner.NewHTTP(assigner.HTTPConfig{Store: st, Poller: poller, ServerTTL: time.Minute, Log: log, Auth: authn}).Mount(r)
		return r
	}
	mount := func(st specStore) chi.Router {
		return mountWith(httpapi.Open(), st)
	}
	api.router = mount(api.store)
	v, err := auth.NewVerifier(ctx, auth.Config{HS256Secret: specSecret})
	if err != nil {
		t.Fatal(err)
	}
	authed := httptest.NewServer(mountWith(httpapi.NewAuthenticator(v, nil, log), api.store))
	t.Cleanup(authed.Close)
	api.authURL = authed.URL
	srv := httptest.NewServer(api.router)
	t.Cleanup(srv.Close)
	api.url = srv.URL
	down := httptest.NewServer(mount(downStore{}))
	t.Cleanup(down.Close)
	api.downURL = down.URL
	return api
}

// specStore is what the mounted APIs read and change: the front's and the
// assigner's parts of the store, and the dashboard's.
type specStore interface {
	front.Store
	assigner.ServerStore
	dashboard.Store
}

// waitForPolls waits until n long-polls are held, so that the change made
// next is one they must be woken by.
func (api *specAPI) waitForPolls(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for api.hub.Waiting() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d long-polls held after 5s, want %d", api.hub.Waiting(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var longID = strings.Repeat("x", contracts.MaxIDLength+1)

func ticketRequest(players ...string) string {
	ps := make([]string, len(players))
	for i, p := range players {
		ps[i] = fmt.Sprintf(`{"id":%q,"skill":%d}`, p, 1500+10*i)
	}
	return fmt.Sprintf(`{"queue":"duel","players":[%s],"latencies":{"eu-west":31,"us-east":112},"attributes":{"platform":"pc"}}`,
		strings.Join(ps, ","))
}

func playerScenario(t *testing.T, c *specChecker, api *specAPI) {
	base := api.url
	t1 := decodeJSON[contracts.Ticket](t, c.do(t, base, call{method: "POST", path: "/v1/tickets", body: ticketRequest("p-1"), status: 201}))
	for _, cl := range []call{
		{method: "POST", path: "/v1/tickets", body: ticketRequest("p-1"), status: 409},
		// Within the document, refused by the queue's rules.
		{method: "POST", path: "/v1/tickets", body: ticketRequest("p-8", "p-9"), status: 400},
		{method: "POST", path: "/v1/tickets", body: `{"queue":"chess","players":[{"id":"p-9","skill":1}]}`, status: 400},
		{method: "POST", path: "/v1/tickets", body: `{"queue":"duel","players":[{"id":"p-9","skill":1}],}`, status: 400, offSpec: true},
		{method: "POST", path: "/v1/tickets", body: `{"queue":"duel","players":[{"id":"p-9","skill":1}],"mode":"x"}`, status: 400, offSpec: true},
		{method: "POST", path: "/v1/tickets", body: `{"queue":"duel","players":[{"id":"p-9","skill":"1"}]}`, status: 400, offSpec: true},
		{method: "POST", path: "/v1/tickets", body: `{"queue":"duel","players":[]}`, status: 400, offSpec: true},
		{method: "POST", path: "/v1/tickets", body: `{"queue":"duel","players":[{"id":"p-9","skill":1}],"latencies":{"eu":-5}}`, status: 400, offSpec: true},
		{method: "POST", path: "/v1/tickets", body: ticketRequest("p-9"), status: 415, offSpec: true,
			header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}},
		// A retry with the first create's key replays it; the key with
		// another body is refused.
		{method: "POST", path: "/v1/tickets", body: ticketRequest("p-7"), status: 201,
			header: http.Header{"Idempotency-Key": {"k-7"}}},
		{method: "POST", path: "/v1/tickets", body: ticketRequest("p-7"), status: 201,
			header: http.Header{"Idempotency-Key": {"k-7"}}},
		{method: "POST", path: "/v1/tickets", body: ticketRequest("p-6"), status: 422,
			header: http.Header{"Idempotency-Key": {"k-7"}}},
		{method: "POST", path: "/v1/tickets", status: 413, offSpec: true,
			body: `{"queue":"duel","players":[{"id":"p-9","skill":1}],"pad":"` + strings.Repeat("x", contracts.MaxRequestBytes) + `"}`},
		{method: "GET", path: "/v1/tickets/" + t1.ID, status: 200},
		{method: "GET", path: "/v1/tickets/" + t1.ID + "?wait=100ms", status: 200},
		{method: "GET", path: "/v1/tickets/" + t1.ID + "?wait=0&after=0", status: 200},
		{method: "GET", path: "/v1/tickets/" + t1.ID + "?wait=100ms&until=assigned", status: 200},
		{method: "GET", path: "/v1/tickets/" + t1.ID + "?wait=1s&until=soon", status: 400, offSpec: true},
		{method: "GET", path: "/v1/tickets/" + t1.ID + "?wait=soon", status: 400, offSpec: true},
		{method: "GET", path: "/v1/tickets/" + t1.ID + "?wait=1s&after=-1", status: 400, offSpec: true},
		{method: "GET", path: "/v1/tickets/" + longID, status: 400, offSpec: true},
		{method: "GET", path: "/v1/tickets/t-404", status: 404},
		{method: "GET", path: "/v1/tickets/" + t1.ID + "/explain", status: 200},
		{method: "GET", path: "/v1/tickets/t-404/explain", status: 404},
		{method: "GET", path: "/v1/tickets/" + longID + "/explain", status: 400, offSpec: true},
		{method: "GET", path: "/v1/dashboard", status: 200},
		{method: "GET", path: "/dashboard", status: 200},
		{method: "GET", path: "/dashboard/app.js", status: 200},
		{method: "GET", path: "/dashboard/style.css", status: 200},
		{method: "GET", path: "/dashboard/secrets.txt", status: 404, offSpec: true},
		{method: "DELETE", path: "/v1/tickets/t-404", status: 404},
		{method: "DELETE", path: "/v1/tickets/" + longID, status: 400, offSpec: true},
	} {
		c.do(t, base, cl)
	}

	// A long-poll woken by the match, formed as a matcher would.
	t2 := decodeJSON[contracts.Ticket](t, c.do(t, base, call{method: "POST", path: "/v1/tickets", body: ticketRequest("p-2"), status: 201}))
	done := c.start(base, call{method: "GET", path: fmt.Sprintf("/v1/tickets/%s?wait=20s&after=%d", t1.ID, t1.Version), status: 200})
	api.waitForPolls(t, 1)
	now := time.Now().UTC()
	m := contracts.Match{
		ID: "m-1", Queue: "duel", Region: "eu-west",
		Teams:     [][]string{{"p-1"}, {"p-2"}},
		TicketIDs: []string{t1.ID, t2.ID},
		Players:   append(slices.Clone(t1.Players), t2.Players...),
		CreatedAt: now, AssignDeadline: now.Add(time.Minute),
	}
	if err := api.store.ClaimMatch(context.Background(), m, now); err != nil {
		t.Fatal(err)
	}
	await(t, done)
	got := decodeJSON[contracts.Ticket](t, c.do(t, base, call{method: "GET", path: "/v1/tickets/" + t1.ID, status: 200}))
	if got.Status != contracts.StatusMatched || got.Match == nil {
		t.Fatalf("ticket after the match: %+v", got)
	}
	c.do(t, base, call{method: "DELETE", path: "/v1/tickets/" + t1.ID, status: 409})
	// Matched, waiting for a server: no game server has registered yet.
	x := decodeJSON[contracts.Explanation](t, c.do(t, base, call{method: "GET", path: "/v1/tickets/" + t1.ID + "/explain", status: 200}))
	if x.Status != contracts.StatusMatched || len(x.Blockers) != 1 || x.Blockers[0].Code != contracts.BlockNoServerCapacity {
		t.Errorf("explanation of a matched ticket with no server: %+v", x)
	}

	acceptScenario(t, c, api)

	t3 := decodeJSON[contracts.Ticket](t, c.do(t, base, call{method: "POST", path: "/v1/tickets", body: ticketRequest("p-3"), status: 201}))
	for range 2 {
		cancelled := decodeJSON[contracts.Ticket](t, c.do(t, base, call{method: "DELETE", path: "/v1/tickets/" + t3.ID, status: 200}))
		if cancelled.Status != contracts.StatusCancelled {
			t.Fatalf("cancelled ticket %+v", cancelled)
		}
	}
	// The stream of a cancelled ticket: its last version, and the end.
	a := c.do(t, base, call{method: "GET", path: "/v1/tickets/" + t3.ID + "/events", status: 200})
	if !strings.Contains(string(a.body), "event: ticket\n") || !strings.Contains(string(a.body), `"status":"cancelled"`) {
		t.Errorf("stream of a cancelled ticket: %q", a.body)
	}
	for _, cl := range []call{
		{method: "GET", path: "/v1/tickets/" + t3.ID + "/events?after=soon", status: 400, offSpec: true},
		{method: "GET", path: "/v1/tickets/t-404/events", status: 404},
	} {
		c.do(t, base, cl)
	}
}

// acceptScenario: a match that asks its players, accepted by one and
// declined by the other, who then cancels it again; the bodies the
// document refuses.
func acceptScenario(t *testing.T, c *specChecker, api *specAPI) {
	base := api.url
	a := decodeJSON[contracts.Ticket](t, c.do(t, base, call{method: "POST", path: "/v1/tickets", body: ticketRequest("p-acc-a"), status: 201}))
	b := decodeJSON[contracts.Ticket](t, c.do(t, base, call{method: "POST", path: "/v1/tickets", body: ticketRequest("p-acc-b"), status: 201}))
	accept := func(id string) string { return "/v1/tickets/" + id + "/accept" }
	c.do(t, base, call{method: "POST", path: accept(a.ID), body: `{"accept":true}`, status: 409}) // offered nothing yet
	done := c.start(base, call{method: "GET", path: fmt.Sprintf("/v1/tickets/%s?wait=20s&until=assigned", a.ID), status: 200})
	api.waitForPolls(t, 1)
	now := time.Now().UTC()
	m := contracts.Match{
		ID: "m-acc", Queue: "duel", Region: "eu-west",
		Teams:     [][]string{{"p-acc-a"}, {"p-acc-b"}},
		TicketIDs: []string{a.ID, b.ID},
		Players:   append(slices.Clone(a.Players), b.Players...),
		CreatedAt: now, AcceptDeadline: now.Add(time.Minute), AssignDeadline: now.Add(2 * time.Minute),
	}
	if err := api.store.ClaimMatch(context.Background(), m, now); err != nil {
		t.Fatal(err)
	}
	await(t, done) // until=assigned answers a ticket its player must answer
	x := decodeJSON[contracts.Explanation](t, c.do(t, base, call{method: "GET", path: "/v1/tickets/" + a.ID + "/explain", status: 200}))
	if x.Status != contracts.StatusPendingAcceptance || len(x.Blockers) != 1 || x.Blockers[0].Code != contracts.BlockWaitingForAcceptance {
		t.Errorf("explanation of a ticket offered a match: %+v", x)
	}
	for _, cl := range []call{
		{method: "POST", path: accept(a.ID), body: `{}`, status: 400, offSpec: true},
		{method: "POST", path: accept(a.ID), body: `{"accept":"yes"}`, status: 400, offSpec: true},
		{method: "POST", path: accept(a.ID), body: `{"accept":true,"accept":false}`, status: 400}, // duplicates: beyond the document
		{method: "POST", path: accept(a.ID), body: `{"accept":true,"x":1}`, status: 400, offSpec: true},
		{method: "POST", path: accept(a.ID), body: `{"accept":true}`, status: 415, offSpec: true,
			header: http.Header{"Content-Type": {"text/plain"}}},
		{method: "POST", path: accept(a.ID), body: `{"accept":true,"pad":"` + strings.Repeat("x", contracts.MaxRequestBytes) + `"}`, status: 413, offSpec: true},
		{method: "POST", path: accept("t-404"), body: `{"accept":true}`, status: 404},
		{method: "POST", path: accept(longID), body: `{"accept":true}`, status: 400, offSpec: true},
	} {
		c.do(t, base, cl)
	}
	got := decodeJSON[contracts.Ticket](t, c.do(t, base, call{method: "POST", path: accept(a.ID), body: `{"accept":true}`, status: 200}))
	if got.Status != contracts.StatusPendingAcceptance || got.Acceptance == nil || !got.Acceptance.Accepted {
		t.Errorf("accepted ticket: %+v", got)
	}
	// b cancels while offered: a decline. a searches again.
	got = decodeJSON[contracts.Ticket](t, c.do(t, base, call{method: "DELETE", path: "/v1/tickets/" + b.ID, status: 200}))
	if got.Status != contracts.StatusCancelled || got.Reason != contracts.ReasonDeclined {
		t.Errorf("ticket cancelled while offered a match: %+v", got)
	}
	c.do(t, base, call{method: "POST", path: accept(b.ID), body: `{"accept":false}`, status: 200}) // again: unchanged
	got = decodeJSON[contracts.Ticket](t, c.do(t, base, call{method: "GET", path: "/v1/tickets/" + a.ID, status: 200}))
	if got.Status != contracts.StatusSearching || got.Match != nil || got.Acceptance != nil {
		t.Errorf("the other ticket after the decline: %+v", got)
	}
	c.do(t, base, call{method: "POST", path: accept(a.ID), body: `{"accept":true}`, status: 409})
	c.do(t, base, call{method: "DELETE", path: "/v1/tickets/" + a.ID, status: 200})
}

func serverScenario(t *testing.T, c *specChecker, api *specAPI) {
	base := api.url
	const register = `{"address":"10.0.0.7:7777","region":"eu-west","capacity":2}`
	srv := decodeJSON[contracts.Server](t, c.do(t, base, call{method: "PUT", path: "/v1/servers/gs-1", body: register, status: 200}))
	for _, cl := range []call{
		{method: "PUT", path: "/v1/servers/gs-1", body: register, status: 200},
		{method: "PUT", path: "/v1/servers/gs-2", body: `{"address":"h:1","region":"eu-west","capacity":0}`, status: 400, offSpec: true},
		{method: "PUT", path: "/v1/servers/gs-2", body: `{"address":"h:1","capacity":1}`, status: 400, offSpec: true},
		{method: "PUT", path: "/v1/servers/gs-2", body: `{"address":"h:1","region":"eu-west","capacity":"1"}`, status: 400, offSpec: true},
		// kin-openapi reads the first JSON value of a body and ignores
		// what follows it.
		{method: "PUT", path: "/v1/servers/gs-2", body: `{"address":"h:1","region":"eu-west","capacity":1} {}`, status: 400, unchecked: true},
		{method: "PUT", path: "/v1/servers/" + longID, body: register, status: 400, offSpec: true},
		{method: "PUT", path: "/v1/servers/gs-2", body: register, status: 415, offSpec: true,
			header: http.Header{"Content-Type": {"text/plain"}}},
		{method: "PUT", path: "/v1/servers/gs-2", status: 413, offSpec: true,
			body: `{"address":"h:1","region":"eu-west","capacity":1,"pad":"` + strings.Repeat("x", contracts.MaxRequestBytes) + `"}`},
		{method: "GET", path: "/v1/servers/gs-1", status: 200},
		{method: "GET", path: "/v1/servers/gs-404", status: 404},
		{method: "GET", path: "/v1/servers/" + longID, status: 400, offSpec: true},
		{method: "GET", path: "/v1/servers/gs-1/allocations", status: 200},
		{method: "GET", path: "/v1/servers/gs-1/allocations?wait=50ms", status: 200},
		{method: "GET", path: "/v1/servers/gs-404/allocations", status: 404},
		{method: "GET", path: "/v1/servers/gs-1/allocations?wait=30", status: 400, offSpec: true},
		{method: "GET", path: "/v1/servers/" + longID + "/allocations", status: 400, offSpec: true},
		{method: "GET", path: "/v1/servers/gs-1/allocations/events", status: 200},
		{method: "GET", path: "/v1/servers/gs-1/allocations/events?after=-1", status: 400, offSpec: true},
		{method: "GET", path: "/v1/servers/gs-404/allocations/events", status: 404},
	} {
		c.do(t, base, cl)
	}

	// The allocations long-poll, woken by placing the match the player
	// scenario formed.
	done := c.start(base, call{method: "GET", path: fmt.Sprintf("/v1/servers/gs-1/allocations?wait=20s&after=%d", srv.Version), status: 200})
	api.waitForPolls(t, 1)
	if _, err := api.store.AssignMatch(context.Background(), "m-1", time.Now().UTC()); err != nil {
		t.Fatalf("placing match m-1: %v", err)
	}
	await(t, done)
	allocs := decodeJSON[contracts.Allocations](t, c.do(t, base, call{method: "GET", path: "/v1/servers/gs-1/allocations", status: 200}))
	if len(allocs.Allocations) != 1 {
		t.Fatalf("allocations %+v", allocs)
	}
	// The tickets now show the match and the assignment.
	for _, id := range allocs.Allocations[0].TicketIDs {
		tk := decodeJSON[contracts.Ticket](t, c.do(t, base, call{method: "GET", path: "/v1/tickets/" + id, status: 200}))
		if tk.Status != contracts.StatusAssigned || tk.Assignment == nil || tk.Assignment.ServerID != "gs-1" {
			t.Fatalf("ticket after assignment %+v", tk)
		}
	}

	// A seat opened in the running match, filled as a matcher would.
	bf := "/v1/servers/gs-1/matches/m-1/backfill"
	for _, cl := range []call{
		{method: "POST", path: bf, body: `{"open":[1,0]}`, status: 202},
		{method: "POST", path: bf, body: `{"open":[1]}`, status: 400},   // the match has two teams
		{method: "POST", path: bf, body: `{"open":[2,0]}`, status: 400}, // past the queue's team size
		{method: "POST", path: bf, body: `{"open":[-1,0]}`, status: 400, offSpec: true},
		{method: "POST", path: bf, body: `{"open":[]}`, status: 400, offSpec: true},
		{method: "POST", path: bf, body: `{"open":[1,0],"x":1}`, status: 400, offSpec: true},
		{method: "POST", path: bf, body: `{"open":[1,0]}`, status: 415, offSpec: true, header: http.Header{"Content-Type": {"text/plain"}}},
		{method: "POST", path: bf, body: `{"open":[1,0],"pad":"` + strings.Repeat("x", contracts.MaxRequestBytes) + `"}`, status: 413, offSpec: true},
		{method: "POST", path: "/v1/servers/gs-1/matches/m-404/backfill", body: `{"open":[1,0]}`, status: 404},
		{method: "POST", path: "/v1/servers/gs-404/matches/m-1/backfill", body: `{"open":[1,0]}`, status: 404},
		{method: "POST", path: "/v1/servers/gs-1/matches/" + longID + "/backfill", body: `{"open":[1,0]}`, status: 400, offSpec: true},
	} {
		c.do(t, base, cl)
	}
	joiner := decodeJSON[contracts.Ticket](t, c.do(t, base, call{method: "POST", path: "/v1/tickets", body: ticketRequest("p-bf"), status: 201}))
	ref := contracts.MatchRef{ID: "m-1", Region: "eu-west", Teams: [][]string{{"p-1", "p-bf"}, {"p-2"}}}
	if _, err := api.store.FillBackfill(context.Background(), "m-1", joiner.ID, 0, ref, time.Now().UTC()); err != nil {
		t.Fatalf("filling the backfill: %v", err)
	}
	allocs = decodeJSON[contracts.Allocations](t, c.do(t, base, call{method: "GET", path: "/v1/servers/gs-1/allocations", status: 200}))
	if len(allocs.Allocations) != 1 || !slices.Contains(allocs.Allocations[0].TicketIDs, joiner.ID) {
		t.Errorf("allocations after the backfill %+v", allocs)
	}

	for _, cl := range []call{
		{method: "DELETE", path: "/v1/servers/gs-1/matches/m-1", status: 204},
		{method: "DELETE", path: "/v1/servers/gs-1/matches/m-1", status: 404},
		{method: "DELETE", path: "/v1/servers/gs-404/matches/m-1", status: 404},
		{method: "DELETE", path: "/v1/servers/gs-1/matches/" + longID, status: 400, offSpec: true},
		{method: "DELETE", path: "/v1/servers/gs-1", status: 200},
		{method: "DELETE", path: "/v1/servers/gs-404", status: 404},
		{method: "DELETE", path: "/v1/servers/" + longID, status: 400, offSpec: true},
	} {
		c.do(t, base, cl)
	}
	if s := decodeJSON[contracts.Server](t, c.do(t, base, call{method: "GET", path: "/v1/servers/gs-1", status: 200})); !s.Draining || s.Allocated != 0 {
		t.Errorf("server at the end: %+v", s)
	}
}

// downStore is a store that cannot be reached.
type downStore struct{}

// errDown is what a store answers that cannot be reached at all: nothing
// was changed, so a create is answered unavailable at once.
var errDown = fmt.Errorf("%w: dial tcp 127.0.0.1:1: connection refused", store.ErrUnreachable)

func (downStore) CreateTicketOnce(context.Context, contracts.Ticket, time.Time, store.Idempotency) error {
	return errDown
}
func (downStore) DeleteTicket(context.Context, string) error { return errDown }
func (downStore) Regions(context.Context) ([]string, error)  { return nil, errDown }
func (downStore) Ticket(context.Context, string) (contracts.Ticket, error) {
	return contracts.Ticket{}, errDown
}
func (downStore) WatchTicket(context.Context, string) (contracts.Ticket, error) {
	return contracts.Ticket{}, errDown
}
func (downStore) CancelTicket(context.Context, string, time.Time) (contracts.Ticket, error) {
	return contracts.Ticket{}, errDown
}
func (downStore) AnswerMatch(context.Context, string, bool, time.Time) (store.Answer, error) {
	return store.Answer{}, errDown
}
func (downStore) RequestBackfill(context.Context, contracts.Backfill) (contracts.Backfill, error) {
	return contracts.Backfill{}, errDown
}
func (downStore) RegisterServer(context.Context, string, contracts.ServerRequest, time.Duration, time.Time) (contracts.Server, error) {
	return contracts.Server{}, errDown
}
func (downStore) DrainServer(context.Context, string) (contracts.Server, error) {
	return contracts.Server{}, errDown
}
func (downStore) Server(context.Context, string) (contracts.Server, error) {
	return contracts.Server{}, errDown
}
func (downStore) Allocations(context.Context, string) (contracts.Allocations, error) {
	return contracts.Allocations{}, errDown
}
func (downStore) EndMatch(context.Context, string, string, time.Time) error { return errDown }
func (downStore) Stats(context.Context, time.Time) (store.Stats, error) {
	return store.Stats{}, errDown
}
func (downStore) Candidates(context.Context, string, float64, float64, int) ([]store.PoolEntry, error) {
	return nil, errDown
}

func unavailableScenario(t *testing.T, c *specChecker, api *specAPI) {
	for _, cl := range []call{
		{method: "POST", path: "/v1/tickets", body: ticketRequest("p-5"), status: 503},
		{method: "GET", path: "/v1/tickets/t-1", status: 503},
		{method: "GET", path: "/v1/tickets/t-1?wait=1s", status: 503},
		{method: "DELETE", path: "/v1/tickets/t-1", status: 503},
		{method: "PUT", path: "/v1/servers/gs-1", body: `{"address":"h:1","region":"eu-west","capacity":1}`, status: 503},
		{method: "GET", path: "/v1/servers/gs-1", status: 503},
		{method: "DELETE", path: "/v1/servers/gs-1", status: 503},
		{method: "GET", path: "/v1/servers/gs-1/allocations", status: 503},
		{method: "DELETE", path: "/v1/servers/gs-1/matches/m-1", status: 503},
		{method: "POST", path: "/v1/servers/gs-1/matches/m-1/backfill", body: `{"open":[1]}`, status: 503},
		{method: "GET", path: "/v1/tickets/t-1/events", status: 503},
		{method: "GET", path: "/v1/servers/gs-1/allocations/events", status: 503},
		{method: "GET", path: "/v1/tickets/t-1/explain", status: 503},
		{method: "POST", path: "/v1/tickets/t-1/accept", body: `{"accept":true}`, status: 503},
		{method: "GET", path: "/v1/dashboard", status: 503},
	} {
		p := decodeJSON[contracts.Problem](t, c.do(t, api.downURL, cl))
		if p.Code != contracts.CodeUnavailable || p.Detail != "" {
			t.Errorf("%s %s: problem %+v", cl.method, cl.path, p)
		}
	}
}

// opsScenario checks the operational endpoints of a real embedded
// all-in-one process, including /readyz failing while it drains before
// shutdown.
func opsScenario(t *testing.T, c *specChecker) {
	t.Setenv("MM_HTTP_ADDR", "127.0.0.1:0")
	t.Setenv("MM_AMQP_URL", "")
	t.Setenv("MM_REDIS_ADDR", "")
	// Long enough to see /readyz fail before the listener closes.
	t.Setenv("MM_DRAIN_DELAY", "3s")
	cfg, err := services.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	app, err := services.New(ctx, cfg, services.All, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("starting an embedded matchmaker: %v", err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- app.Run(ctx) }()
	base := "http://" + app.Addr()

	testenv.WaitReady(t, base)
	for _, cl := range []call{
		{method: "GET", path: "/livez", status: 200},
		{method: "GET", path: "/healthz", status: 200},
		{method: "GET", path: "/readyz", status: 200},
		{method: "GET", path: "/metrics", status: 200},
		{method: "GET", path: "/dashboard", status: 200},
		{method: "GET", path: "/dashboard/app.js", status: 200},
		{method: "GET", path: "/v1/dashboard", status: 200},
	} {
		c.do(t, base, cl)
	}

	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		a, err := c.exchange(context.Background(), base, call{method: "GET", path: "/readyz", status: 503})
		if err == nil {
			break
		}
		if a.status != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("/readyz while shutting down: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-runDone:
		if err != nil {
			t.Errorf("embedded matchmaker: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("embedded matchmaker did not shut down within 30s")
	}
}

// authScenario: every route of both APIs without a token (401) and with a
// token of a role that may not call it (403), and a player's create past
// its limit (429).
func authScenario(t *testing.T, c *specChecker, api *specAPI) {
	base := api.authURL
	bearer := func(sub, role string) http.Header {
		t.Helper()
		tok, err := authtest.SignHS256(specSecret, jwt.MapClaims{"sub": sub, "role": role, "exp": time.Now().Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{"Authorization": {"Bearer " + tok}}
	}
	player, server := bearer("p-auth", "player"), bearer("gs-auth", "server")
	tk := decodeJSON[contracts.Ticket](t, c.do(t, base, call{method: "POST", path: "/v1/tickets", body: ticketRequest("p-auth"), header: player, status: 201}))
	const register = `{"address":"10.0.0.9:7777","region":"eu-west","capacity":1}`
	routes := []struct {
		method, path, body string
		wrongRole          http.Header
	}{
		{"POST", "/v1/tickets", ticketRequest("p-auth-2"), server},
		{"GET", "/v1/tickets/" + tk.ID, "", server},
		{"DELETE", "/v1/tickets/" + tk.ID, "", server},
		{"PUT", "/v1/servers/gs-auth", register, player},
		{"GET", "/v1/servers/gs-auth", "", player},
		{"DELETE", "/v1/servers/gs-auth", "", player},
		{"GET", "/v1/servers/gs-auth/allocations", "", player},
		{"DELETE", "/v1/servers/gs-auth/matches/m-1", "", player},
		{"POST", "/v1/servers/gs-auth/matches/m-1/backfill", `{"open":[1]}`, player},
		{"GET", "/v1/tickets/" + tk.ID + "/events", "", server},
		{"GET", "/v1/servers/gs-auth/allocations/events", "", player},
		{"GET", "/v1/tickets/" + tk.ID + "/explain", "", server},
		{"POST", "/v1/tickets/" + tk.ID + "/accept", `{"accept":true}`, server},
		{"GET", "/v1/dashboard", "", player},
	}
	for _, r := range routes {
		a := c.do(t, base, call{method: r.method, path: r.path, body: r.body, status: 401})
		if !strings.Contains(a.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s %s: 401 with WWW-Authenticate %q", r.method, r.path, a.header.Get("WWW-Authenticate"))
		}
		c.do(t, base, call{method: r.method, path: r.path, body: r.body, header: r.wrongRole, status: 403})
	}
	a := c.do(t, base, call{method: "POST", path: "/v1/tickets", body: ticketRequest("p-auth"), header: player, status: 429})
	if a.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	c.do(t, base, call{method: "GET", path: "/v1/tickets/" + tk.ID + "/explain", header: player, status: 200})
	c.do(t, base, call{method: "GET", path: "/v1/tickets/" + tk.ID + "/explain", header: player, status: 429})
}

func init() {
	// The streams' bodies and the dashboard's files are text, checked by
	// the scenarios themselves.
	for _, typ := range []string{"text/event-stream", "text/html", "text/javascript", "text/css"} {
		openapi3filter.RegisterBodyDecoder(typ, openapi3filter.FileBodyDecoder)
	}
}

// readBody reads an answer's body; of an event stream, which may not end,
// the first event.
func readBody(resp *http.Response) ([]byte, error) {
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return io.ReadAll(resp.Body)
	}
	var out []byte
	rd := bufio.NewReader(resp.Body)
	for {
		line, err := rd.ReadBytes('\n')
		out = append(out, line...)
		if err != nil {
			return out, err
		}
		if len(line) == 1 && bytes.Contains(out, []byte("\ndata: ")) {
			return out, nil
		}
	}
}

package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/auth"
	"github.com/quickmatch/quickmatch/internal/auth/authtest"
	"github.com/quickmatch/quickmatch/internal/dashboard"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
	"github.com/quickmatch/quickmatch/internal/store/redisstore"
	"github.com/quickmatch/quickmatch/internal/testenv"
)

var t0 = time.Date(2030, 3, 4, 5, 6, 7, 0, time.UTC)

type env struct {
	t     *testing.T
	st    store.Store // where the test puts tickets and servers
	dash  *dashboard.Dashboard
	url   string
	clock atomic.Int64
	n     int
}

func (e *env) now() time.Time { return time.Unix(0, e.clock.Load()).UTC() }

// newEnv serves a dashboard over read (a memstore if nil).
func newEnv(t *testing.T, authn *httpapi.Authenticator, read dashboard.Store, matches func() map[string]float64) *env {
	t.Helper()
	return newEnvOn(t, memstore.New(memstore.Options{}), authn, read, matches)
}

// newEnvOn is newEnv with the test's tickets and servers in st, which the
// dashboard reads unless read is set.
func newEnvOn(t *testing.T, st store.Store, authn *httpapi.Authenticator, read dashboard.Store, matches func() map[string]float64) *env {
	t.Helper()
	qs, err := queues.NewSet(queues.Duel())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st}
	e.clock.Store(t0.UnixNano())
	if read == nil {
		read = st
	}
	e.dash = dashboard.New(dashboard.Config{Queues: qs, Store: read, Auth: authn, Matches: matches, Now: e.now})
	r := httpapi.NewRouter()
	e.dash.Mount(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// pool stores a searching ticket and puts it in the duel pool.
func (e *env) pool(skill float64, latencies map[string]float64) string {
	e.t.Helper()
	e.n++
	now := e.now()
	tk := contracts.Ticket{ID: "duel.t" + string(rune('a'+e.n)), Queue: "duel", Status: contracts.StatusSearching, Version: 1,
		CreatedAt: now, UpdatedAt: now, Players: []contracts.Player{{ID: "p" + string(rune('a'+e.n)), Skill: skill}}, Latencies: latencies}
	ctx := context.Background()
	if err := e.st.CreateTicket(ctx, tk, now.Add(time.Hour)); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.st.AddToPool(ctx, "duel", store.PoolEntry{TicketID: tk.ID, Skill: skill, Players: 1, CreatedAt: now, Latencies: latencies}); err != nil {
		e.t.Fatal(err)
	}
	return tk.ID
}

func get(t *testing.T, url string, header http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

func (e *env) read() contracts.Dashboard {
	e.t.Helper()
	status, _, body := get(e.t, e.url+"/v1/dashboard", nil)
	if status != http.StatusOK {
		e.t.Fatalf("GET /v1/dashboard: %d %s", status, body)
	}
	var d contracts.Dashboard
	if err := json.Unmarshal(body, &d); err != nil {
		e.t.Fatalf("decoding %s: %v", body, err)
	}
	return d
}

// TestDashboardFigures: the queues by skill band and best region, the
// servers by region, and the rates once tickets have left the pool; on
// both stores, since the whole pool is read through Candidates.
func TestDashboardFigures(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testFigures(t, memstore.New(memstore.Options{})) })
	t.Run("redis", func(t *testing.T) {
		addr, prefix := testenv.Redis(t)
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { c.Close() })
		testFigures(t, redisstore.New(c, redisstore.Options{Prefix: prefix}))
	})
}

func testFigures(t *testing.T, st store.Store) {
	var matched atomic.Int64
	e := newEnvOn(t, st, httpapi.Open(), nil, func() map[string]float64 { return map[string]float64{"duel": float64(matched.Load())} })
	ctx := context.Background()
	if _, err := e.st.RegisterServer(ctx, "gs-1", contracts.ServerRequest{Address: "h:1", Region: "eu-west", Capacity: 3}, time.Hour, e.now()); err != nil {
		t.Fatal(err)
	}
	gone := e.pool(1510, map[string]float64{"eu-west": 30, "us-east": 90})
	e.pool(1590, map[string]float64{"us-east": 20})
	e.pool(1720, nil)

	d := e.read()
	if len(d.Queues) != 1 || len(d.Regions) != 1 {
		t.Fatalf("dashboard %+v", d)
	}
	q := d.Queues[0]
	if q.Name != "duel" || q.Searching != 3 || q.Pooled != 3 || q.PlayersPerMatch != 2 || q.PoolTruncated {
		t.Errorf("queue %+v", q)
	}
	// 210 points of range: bands of 20.
	want := []contracts.SkillBand{
		{From: 1500, To: 1520, Tickets: 1, Players: 1, Regions: map[string]int{"eu-west": 1}},
		{From: 1580, To: 1600, Tickets: 1, Players: 1, Regions: map[string]int{"us-east": 1}},
		{From: 1720, To: 1740, Tickets: 1, Players: 1, Regions: map[string]int{contracts.RegionAny: 1}},
	}
	if got, _ := json.Marshal(q.Bands); string(got) != string(must(json.Marshal(want))) {
		t.Errorf("bands %s, want %s", got, must(json.Marshal(want)))
	}
	if r := d.Regions[0]; r != (contracts.DashboardRegion{Name: "eu-west", Servers: 1, Live: 1, FreeSlots: 3}) {
		t.Errorf("region %+v", r)
	}
	if q.RecentWaits != nil || q.MatchesPerSecond != nil {
		t.Errorf("rates before anything happened: %+v", q)
	}

	// Four seconds later one ticket has gone and a match formed.
	e.clock.Add(int64(4 * time.Second))
	if _, err := e.st.CancelTicket(ctx, gone, e.now()); err != nil {
		t.Fatal(err)
	}
	matched.Add(1)
	q = e.read().Queues[0]
	if q.Pooled != 2 || q.RecentWaits == nil || q.RecentWaits.Count != 1 || q.RecentWaits.P50 != 2 {
		t.Errorf("after a departure: pooled %d, recent waits %+v", q.Pooled, q.RecentWaits)
	}
	if q.PoolDeparturesPerSecond == nil || *q.PoolDeparturesPerSecond != 0.25 || q.MatchesPerSecond == nil || *q.MatchesPerSecond != 0.25 {
		t.Errorf("rates: departures %v, matches %v", q.PoolDeparturesPerSecond, q.MatchesPerSecond)
	}
	if q.WaitingNow == nil || q.WaitingNow.Max != 4 {
		t.Errorf("waiting now %+v", q.WaitingNow)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestDashboardSamplesOnce: reads within the sampling interval share one
// reading of the store.
func TestDashboardSamplesOnce(t *testing.T) {
	cs := &countingStore{Store: memstore.New(memstore.Options{})}
	e := newEnv(t, httpapi.Open(), cs, nil)
	e.read()
	e.read()
	e.clock.Add(int64(dashboard.DefaultEvery))
	e.read()
	if n := cs.stats.Load(); n != 2 {
		t.Errorf("%d readings of the store, want 2", n)
	}
}

type countingStore struct {
	*memstore.Store
	stats atomic.Int64
}

func (c *countingStore) Stats(ctx context.Context, now time.Time) (store.Stats, error) {
	c.stats.Add(1)
	return c.Store.Stats(ctx, now)
}

type downStore struct{ *memstore.Store }

func (downStore) Stats(context.Context, time.Time) (store.Stats, error) {
	return store.Stats{}, errors.New("dial tcp 10.1.2.3:6379: connection refused")
}

var secret = []byte("the secret of the dashboard's tests, 32 bytes or more")

// TestDashboardAccess: the figures are for services only (the anonymous
// principal of auth off is one); the page takes no token.
func TestDashboardAccess(t *testing.T) {
	v, err := auth.NewVerifier(context.Background(), auth.Config{HS256Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, httpapi.NewAuthenticator(v, nil, nil), nil, nil)
	open := newEnv(t, httpapi.Open(), nil, nil)
	none := newEnv(t, nil, nil, nil)
	down := newEnv(t, httpapi.Open(), downStore{memstore.New(memstore.Options{})}, nil)
	bearer := func(sub, role string) http.Header {
		tok, err := authtest.SignHS256(secret, jwt.MapClaims{"sub": sub, "role": role, "exp": time.Now().Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{"Authorization": {"Bearer " + tok}}
	}
	for _, tc := range []struct {
		name   string
		url    string
		header http.Header
		status int
		code   string
	}{
		{"service", e.url + "/v1/dashboard", bearer("backend", "service"), http.StatusOK, ""},
		{"player", e.url + "/v1/dashboard", bearer("p-1", "player"), http.StatusForbidden, contracts.CodeForbidden},
		{"server", e.url + "/v1/dashboard", bearer("gs-1", "server"), http.StatusForbidden, contracts.CodeForbidden},
		{"no token", e.url + "/v1/dashboard", nil, http.StatusUnauthorized, contracts.CodeInvalidToken},
		{"auth off", open.url + "/v1/dashboard", nil, http.StatusOK, ""},
		{"no authenticator", none.url + "/v1/dashboard", nil, http.StatusUnauthorized, contracts.CodeInvalidToken},
		{"store down", down.url + "/v1/dashboard", nil, http.StatusServiceUnavailable, contracts.CodeUnavailable},
		{"the page, without a token", e.url + "/dashboard", nil, http.StatusOK, ""},
		{"its script", e.url + "/dashboard/app.js", nil, http.StatusOK, ""},
		{"its style", e.url + "/dashboard/style.css", nil, http.StatusOK, ""},
		{"no such file", e.url + "/dashboard/secrets.txt", nil, http.StatusNotFound, contracts.CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, header, body := get(t, tc.url, tc.header)
			if status != tc.status {
				t.Fatalf("%d %s, want %d", status, body, tc.status)
			}
			if tc.code != "" {
				var p contracts.Problem
				if err := json.Unmarshal(body, &p); err != nil || p.Code != tc.code {
					t.Errorf("problem %s, want code %s", body, tc.code)
				}
				if status >= 500 && p.Detail != "" {
					t.Errorf("a 5xx tells the client %q", p.Detail)
				}
			}
			if page := !strings.Contains(tc.url, "/v1/"); page && status == http.StatusOK {
				if csp := header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
					t.Errorf("Content-Security-Policy %q", csp)
				}
			}
		})
	}
}

// TestEstimateWait: the front's estimate comes from what the dashboard
// saw leave the pool, and asking keeps the samples coming.
func TestEstimateWait(t *testing.T) {
	e := newEnv(t, httpapi.Open(), nil, nil)
	if _, ok := e.dash.EstimateWait("duel", 1500, 0); ok {
		t.Fatal("an estimate before any sample")
	}
	ctx := context.Background()
	var ids []string
	for i := range 8 {
		ids = append(ids, e.pool(1500+float64(i), nil))
	}
	e.read()
	for _, id := range ids {
		// One leaves between each two samples, 2 s apart.
		e.clock.Add(int64(2 * time.Second))
		if _, err := e.st.CancelTicket(ctx, id, e.now()); err != nil {
			t.Fatal(err)
		}
		e.read()
	}
	est, ok := e.dash.EstimateWait("duel", 1500, 5*time.Second)
	// Counted as leaving midway, they waited 1, 3, ..., 15 s; those past
	// 5 s went on for 2, 4, 6, 8 and 10 s more.
	if !ok || est.BasedOn != 5 || est.RemainingSeconds != 6 || est.P90RemainingSeconds != 10 {
		t.Errorf("estimate %+v, %v", est, ok)
	}
	if _, ok := e.dash.EstimateWait("chess", 1500, 0); ok {
		t.Error("an estimate for a queue the dashboard does not know")
	}
}

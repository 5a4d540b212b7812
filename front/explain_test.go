package front_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/front"
	"github.com/quickmatch/quickmatch/internal/auth"
	"github.com/quickmatch/quickmatch/internal/auth/authtest"
	"github.com/quickmatch/quickmatch/internal/broker/membroker"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
)

// explainEnv is a front over a memstore that it reads directly (the
// explanation reads the pool and the counts, which the front's usual test
// wrapper hides), on a clock the test moves.
type explainEnv struct {
	*frontEnv
	mem   *memstore.Store
	clock atomic.Int64 // Unix nanoseconds
}

func newExplainEnv(t *testing.T, opt func(*front.Config)) *explainEnv {
	t.Helper()
	b := membroker.New(nil)
	t.Cleanup(func() { b.Close() })
	for _, q := range []string{"duel", "squad"} {
		if err := b.Declare(context.Background(), contracts.TicketQueue(q), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	e := &explainEnv{mem: memstore.New(memstore.Options{})}
	e.clock.Store(clock.UnixNano())
	e.frontEnv = newFrontEnvWith(t, e.mem, b, func(cfg *front.Config) {
		cfg.Store = e.mem
		cfg.Now = e.now
		if opt != nil {
			opt(cfg)
		}
	})
	return e
}

func (e *explainEnv) now() time.Time { return time.Unix(0, e.clock.Load()).UTC() }

func (e *explainEnv) advance(d time.Duration) { e.clock.Add(int64(d)) }

// queue makes a ticket of one player through the API, and, if pooled,
// puts it in the pool as a matcher would after a miss.
func (e *explainEnv) queue(queue, player string, skill float64, latencies map[string]float64, pooled bool) contracts.Ticket {
	e.t.Helper()
	body, err := json.Marshal(contracts.TicketRequest{Queue: queue, Players: []contracts.Player{{ID: player, Skill: skill}}, Latencies: latencies})
	if err != nil {
		e.t.Fatal(err)
	}
	r := e.do("POST", "/v1/tickets", strings.NewReader(string(body)))
	if r.status != http.StatusCreated {
		e.t.Fatalf("create for %s: %d %s", player, r.status, r.body)
	}
	tk := decodeTicket(e.t, r)
	if pooled {
		ok, err := e.mem.AddToPool(context.Background(), queue, store.PoolEntry{
			TicketID: tk.ID, Skill: skill, Players: 1, Party: tk.Players, CreatedAt: tk.CreatedAt, Latencies: latencies})
		if err != nil || !ok {
			e.t.Fatalf("pooling %s: %v %v", tk.ID, ok, err)
		}
	}
	return tk
}

// server registers a game server live at the test's clock.
func (e *explainEnv) server(id, region string, capacity int) {
	e.t.Helper()
	if _, err := e.mem.RegisterServer(context.Background(), id, contracts.ServerRequest{Address: "10.0.0.1:7777", Region: region, Capacity: capacity},
		time.Hour, e.now()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *explainEnv) explain(id string, header http.Header) response {
	e.t.Helper()
	return doWith(e.t, e.srv.URL, "GET", "/v1/tickets/"+id+"/explain", nil, header)
}

func decodeExplanation(t *testing.T, r response) contracts.Explanation {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("explain: %d %s", r.status, r.body)
	}
	var x contracts.Explanation
	if err := json.Unmarshal(r.body, &x); err != nil {
		t.Fatalf("decoding explanation %s: %v", r.body, err)
	}
	return x
}

func codes(x contracts.Explanation) []string {
	out := []string{}
	for _, b := range x.Blockers {
		out = append(out, b.Code)
	}
	return out
}

var (
	euWest = map[string]float64{"eu-west": 31}
	usEast = map[string]float64{"us-east": 40}
)

// TestExplainBlockers builds a scenario for each blocker and checks that
// the explanation names it, and only it.
func TestExplainBlockers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(e *explainEnv) contracts.Ticket
		want  []string
		check func(t *testing.T, x contracts.Explanation)
	}{
		{
			name: "nobody near enough",
			setup: func(e *explainEnv) contracts.Ticket {
				e.server("gs-1", "eu-west", 4)
				e.queue("duel", "p-far", 2000, euWest, true)
				self := e.queue("duel", "p-1", 1500, euWest, false)
				e.advance(4 * time.Second) // window 50 + 25 × 4 = 150
				return self
			},
			want: []string{contracts.BlockTooFewInWindow},
			check: func(t *testing.T, x contracts.Explanation) {
				if x.SkillWindow != 150 || x.PlayersNeeded != 2 || x.WaitedSeconds != 4 {
					t.Errorf("window %v, needed %d, waited %v", x.SkillWindow, x.PlayersNeeded, x.WaitedSeconds)
				}
				if x.InReach == nil || x.InReach.Tickets != 0 {
					t.Errorf("in reach %+v", x.InReach)
				}
				if len(x.Nearest) != 1 || x.Nearest[0].SkillGap != 500 || x.Nearest[0].InWindow {
					t.Errorf("nearest %+v", x.Nearest)
				}
				// 500 points need (500 − 50) / 25 = 18 s of waiting, 4 gone.
				if x.WindowCoversInSeconds == nil || *x.WindowCoversInSeconds != 14 {
					t.Errorf("window covers in %v, want 14 s", x.WindowCoversInSeconds)
				}
			},
		},
		{
			name: "near enough but in another region",
			setup: func(e *explainEnv) contracts.Ticket {
				e.server("gs-1", "eu-west", 4)
				e.server("gs-2", "us-east", 4)
				e.queue("duel", "p-2", 1510, usEast, true)
				return e.queue("duel", "p-1", 1500, euWest, false)
			},
			want: []string{contracts.BlockNoSharedRegion},
			check: func(t *testing.T, x contracts.Explanation) {
				if x.InReach == nil || x.InReach.Tickets != 1 || x.InReach.Players != 1 {
					t.Errorf("in reach %+v", x.InReach)
				}
				if len(x.Regions) != 1 || x.Regions[0].Region != "eu-west" || !x.Regions[0].Accepted ||
					x.Regions[0].PlayersInWindow != 1 || x.Regions[0].FreeSlots != 4 {
					t.Errorf("regions %+v", x.Regions)
				}
			},
		},
		{
			name: "a match but no free server",
			setup: func(e *explainEnv) contracts.Ticket {
				e.server("gs-1", "us-east", 4) // the wrong region
				e.queue("duel", "p-2", 1490, euWest, true)
				return e.queue("duel", "p-1", 1500, euWest, false)
			},
			want: []string{contracts.BlockNoServerCapacity},
		},
		{
			name: "matched, waiting for a server",
			setup: func(e *explainEnv) contracts.Ticket {
				other := e.queue("duel", "p-2", 1490, euWest, false)
				self := e.queue("duel", "p-1", 1500, euWest, false)
				now := e.now()
				if err := e.mem.ClaimMatch(context.Background(), contracts.Match{
					ID: "m-1", Queue: "duel", Region: "eu-west", Teams: [][]string{{"p-1"}, {"p-2"}},
					TicketIDs: []string{self.ID, other.ID}, Players: append(slices.Clone(self.Players), other.Players...),
					CreatedAt: now, AssignDeadline: now.Add(time.Minute),
				}, now); err != nil {
					t.Fatal(err)
				}
				return self
			},
			want: []string{contracts.BlockNoServerCapacity},
			check: func(t *testing.T, x contracts.Explanation) {
				if x.Status != contracts.StatusMatched || x.InReach != nil {
					t.Errorf("status %s, in reach %+v", x.Status, x.InReach)
				}
			},
		},
		{
			name: "nothing in the way",
			setup: func(e *explainEnv) contracts.Ticket {
				e.server("gs-1", "eu-west", 4)
				e.queue("duel", "p-2", 1520, euWest, true)
				return e.queue("duel", "p-1", 1500, euWest, false)
			},
			want: []string{},
		},
		{
			name: "a team queue needs every seat",
			setup: func(e *explainEnv) contracts.Ticket {
				e.server("gs-1", "eu-west", 4)
				for i := range 4 {
					e.queue("squad", fmt.Sprintf("p-%d", i+2), 1500+float64(i), euWest, true)
				}
				return e.queue("squad", "p-1", 1500, euWest, false)
			},
			want: []string{contracts.BlockTooFewInWindow},
			check: func(t *testing.T, x contracts.Explanation) {
				if x.PlayersNeeded != 6 || x.InReach.Players != 4 || x.WindowCoversInSeconds != nil {
					t.Errorf("needed %d, in reach %+v, covers %v", x.PlayersNeeded, x.InReach, x.WindowCoversInSeconds)
				}
			},
		},
		{
			name: "cancelled",
			setup: func(e *explainEnv) contracts.Ticket {
				self := e.queue("duel", "p-1", 1500, euWest, false)
				e.advance(3 * time.Second)
				if r := e.do("DELETE", "/v1/tickets/"+self.ID, nil); r.status != http.StatusOK {
					t.Fatalf("cancel: %d %s", r.status, r.body)
				}
				e.advance(time.Minute)
				return self
			},
			want: []string{},
			check: func(t *testing.T, x contracts.Explanation) {
				if x.Status != contracts.StatusCancelled || x.WaitedSeconds != 3 || x.InReach != nil || x.Estimate != nil {
					t.Errorf("cancelled ticket explained as %+v", x)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newExplainEnv(t, nil)
			self := tc.setup(e)
			x := decodeExplanation(t, e.explain(self.ID, nil))
			if got := codes(x); !slices.Equal(got, tc.want) {
				t.Errorf("blockers %v, want %v (%+v)", got, tc.want, x.Blockers)
			}
			for _, b := range x.Blockers {
				if b.Detail == "" {
					t.Errorf("blocker %s without a detail", b.Code)
				}
			}
			if x.TicketID != self.ID || x.Queue != self.Queue {
				t.Errorf("explains %s of %s", x.TicketID, x.Queue)
			}
			if tc.check != nil {
				tc.check(t, x)
			}
		})
	}
}

// fixedWaits is a WaitEstimator that always answers est.
type fixedWaits struct{ est contracts.WaitEstimate }

func (f fixedWaits) EstimateWait(string, float64, time.Duration) (contracts.WaitEstimate, bool) {
	return f.est, true
}

func TestExplainEstimate(t *testing.T) {
	est := contracts.WaitEstimate{RemainingSeconds: 3, P90RemainingSeconds: 9, BasedOn: 40, Method: contracts.EstimateFromPoolDepartures}
	e := newExplainEnv(t, func(cfg *front.Config) { cfg.Waits = fixedWaits{est} })
	self := e.queue("duel", "p-1", 1500, euWest, false)
	x := decodeExplanation(t, e.explain(self.ID, nil))
	if x.Estimate == nil || *x.Estimate != est {
		t.Errorf("estimate %+v, want %+v", x.Estimate, est)
	}
	// Without an estimator there is none, and the rest stands.
	e = newExplainEnv(t, nil)
	self = e.queue("duel", "p-1", 1500, euWest, false)
	if x := decodeExplanation(t, e.explain(self.ID, nil)); x.Estimate != nil {
		t.Errorf("estimate %+v without an estimator", x.Estimate)
	}
}

// failingPool is a memstore whose pool cannot be read.
type failingPool struct{ *memstore.Store }

func (failingPool) Candidates(context.Context, string, float64, float64, int) ([]store.PoolEntry, error) {
	return nil, errors.New("connection refused")
}

func TestExplainStoreFailure(t *testing.T) {
	e := newExplainEnv(t, nil)
	self := e.queue("duel", "p-1", 1500, euWest, false)
	e2 := newExplainEnv(t, func(cfg *front.Config) { cfg.Store = failingPool{e.mem} })
	r := e2.explain(self.ID, nil)
	if p := decodeProblem(t, r); r.status != http.StatusServiceUnavailable || p.Code != contracts.CodeUnavailable || p.Detail != "" {
		t.Errorf("explain over a failing pool: %d %+v", r.status, p)
	}
}

var explainSecret = []byte("the secret of the explanation's tests, 32 bytes or more")

// TestExplainAccess: the rules of a read. The ticket's own player and a
// service may; another player gets the 404 of an unknown ticket, word for
// word; a server 403; no token 401.
func TestExplainAccess(t *testing.T) {
	v, err := auth.NewVerifier(context.Background(), auth.Config{HS256Secret: explainSecret})
	if err != nil {
		t.Fatal(err)
	}
	e := newExplainEnv(t, func(cfg *front.Config) { cfg.Auth = httpapi.NewAuthenticator(v, nil, nil) })
	bearer := func(sub, role string) http.Header {
		t.Helper()
		tok, err := authtest.SignHS256(explainSecret, jwt.MapClaims{"sub": sub, "role": role, "exp": time.Now().Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{"Authorization": {"Bearer " + tok}}
	}
	service := bearer("backend", "service")
	r := doWith(t, e.srv.URL, "POST", "/v1/tickets", strings.NewReader(ticketBody("duel", "p-1")), service)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	tk := decodeTicket(t, r)
	unknown := e.explain("duel.no-such-ticket", service)
	if unknown.status != http.StatusNotFound {
		t.Fatalf("unknown ticket: %d %s", unknown.status, unknown.body)
	}
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
	}{
		{"its player", bearer("p-1", "player"), http.StatusOK},
		{"a service", service, http.StatusOK},
		{"another player", bearer("p-2", "player"), http.StatusNotFound},
		{"a server", bearer("gs-1", "server"), http.StatusForbidden},
		{"no token", nil, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.explain(tk.ID, tc.header)
			if r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status == http.StatusNotFound && string(r.body) != string(unknown.body) {
				t.Errorf("404 %s differs from an unknown ticket's %s", r.body, unknown.body)
			}
			if tc.status == http.StatusOK {
				if x := decodeExplanation(t, r); x.TicketID != tk.ID {
					t.Errorf("explains %s", x.TicketID)
				}
			}
		})
	}
	if r := e.explain(strings.Repeat("x", contracts.MaxIDLength+1), service); r.status != http.StatusBadRequest {
		t.Errorf("an id too long: %d %s", r.status, r.body)
	}
}

// countingStats counts the readings of the store's counts.
type countingStats struct {
	*memstore.Store
	n atomic.Int64
}

func (c *countingStats) Stats(ctx context.Context, now time.Time) (store.Stats, error) {
	c.n.Add(1)
	return c.Store.Stats(ctx, now)
}

// TestExplainReadsCountsOnce: explanations within a second share one
// reading of the counts (store.CachingStats), however often they are asked
// for.
func TestExplainReadsCountsOnce(t *testing.T) {
	e := newExplainEnv(t, nil)
	self := e.queue("duel", "p-1", 1500, euWest, false)
	cs := &countingStats{Store: e.mem}
	// One reading of the counts serves a second, as services wires the
	// front's store.
	e2 := newExplainEnv(t, func(cfg *front.Config) { cfg.Store = store.CachingStats(cs, time.Second) })
	for range 5 {
		decodeExplanation(t, e2.explain(self.ID, nil))
	}
	e2.advance(time.Second)
	decodeExplanation(t, e2.explain(self.ID, nil))
	if n := cs.n.Load(); n != 2 {
		t.Errorf("%d readings of the counts for 6 explanations over a second, want 2", n)
	}
}

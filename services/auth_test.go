package services

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/auth/authtest"
	"github.com/quickmatch/quickmatch/internal/queues"
)

const (
	testIssuer   = "https://studio.example/auth"
	testAudience = "quickmatch-test"
)

// claims are those of a valid token of sub in role; more adds or replaces
// claims, in pairs.
func claims(sub, role string, more ...any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": sub, "role": role, "iss": testIssuer, "aud": testAudience,
		"exp": time.Now().Add(time.Hour).Unix()}
	for i := 0; i+1 < len(more); i += 2 {
		c[more[i].(string)] = more[i+1]
	}
	return c
}

func newKeys(t *testing.T) *authtest.Keys {
	t.Helper()
	k, err := authtest.NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t *testing.T, k *authtest.Keys, alg string, c jwt.MapClaims) string {
	t.Helper()
	tok, err := k.Sign(alg, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// answer is what a request got.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) problem(t *testing.T) contracts.Problem {
	t.Helper()
	var p contracts.Problem
	if ct := a.header.Get("Content-Type"); ct != contracts.ProblemContentType {
		t.Errorf("%d answered with Content-Type %q, want %s: %s", a.status, ct, contracts.ProblemContentType, a.body)
	}
	if err := json.Unmarshal(a.body, &p); err != nil {
		t.Errorf("%d body %q is not a problem: %v", a.status, a.body, err)
	}
	return p
}

// call makes one request with token as its bearer token (none if empty).
func call(t *testing.T, method, url, token string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: raw}
}

func mustStatus(t *testing.T, a answer, want int, what string) {
	t.Helper()
	if a.status != want {
		t.Fatalf("%s: %d %s, want %d", what, a.status, a.body, want)
	}
}

func ticketOf(t *testing.T, a answer) contracts.Ticket {
	t.Helper()
	var tk contracts.Ticket
	if err := json.Unmarshal(a.body, &tk); err != nil {
		t.Fatalf("decoding ticket %q: %v", a.body, err)
	}
	return tk
}

// TestAuthRoutes probes every route of both APIs with every kind of
// credential, in both modes, and checks the status each gets (README
// "Security"): bad tokens 401, a role that may not call a route 403, a
// ticket the caller is not in 404 exactly as an unknown one.
func TestAuthRoutes(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			keys := newKeys(t)
			s := startStack(t, m, stackOptions{auth: keys})
			tok := func(alg string, c jwt.MapClaims) string { return sign(t, keys, alg, c) }

			// Player pb's ticket, which the others try to reach, and
			// server gs-b, for which the others try to speak.
			pb := tok("RS256", claims("pb", "player"))
			mustStatus(t, call(t, http.MethodPut, s.assignerURL+"/v1/servers/gs-b", tok("ES256", claims("gs-b", "server")),
				contracts.ServerRequest{Address: "127.0.0.1:7777", Region: "eu-west", Capacity: 1}), http.StatusOK, "gs-b registers")
			created := call(t, http.MethodPost, s.frontURL+"/v1/tickets", pb, player("pb", 10_000))
			mustStatus(t, created, http.StatusCreated, "pb creates its ticket")
			tb := ticketOf(t, created).ID

			otherSecret := []byte("not the deployment's secret, but as long as one")
			wrongSig, err := authtest.SignHS256(otherSecret, claims("pa", "player"))
			if err != nil {
				t.Fatal(err)
			}
			confused, err := authtest.KeyConfusion(keys, claims("pa", "service"))
			if err != nil {
				t.Fatal(err)
			}
			unknownKID, err := keys.SignWithKID("RS256", "no-such-key", claims("pa", "service"))
			if err != nil {
				t.Fatal(err)
			}
			service := tok("EdDSA", claims("studio-backend", "service"))

			type route struct {
				name, method, path string
				body               any
			}
			routes := []route{
				{"create", http.MethodPost, "/v1/tickets", player("pc", 0)},
				{"read", http.MethodGet, "/v1/tickets/" + tb, nil},
				{"poll", http.MethodGet, "/v1/tickets/" + tb + "?wait=50ms&after=1", nil},
				{"explain", http.MethodGet, "/v1/tickets/" + tb + "/explain", nil},
				{"dashboard", http.MethodGet, "/v1/dashboard", nil},
				{"register", http.MethodPut, "/v1/servers/gs-b", contracts.ServerRequest{Address: "6.6.6.6:7777", Region: "eu-west", Capacity: 1}},
				{"server", http.MethodGet, "/v1/servers/gs-b", nil},
				{"allocations", http.MethodGet, "/v1/servers/gs-b/allocations", nil},
				{"end match", http.MethodDelete, "/v1/servers/gs-b/matches/m-unknown", nil},
				{"backfill", http.MethodPost, "/v1/servers/gs-b/matches/m-unknown/backfill", contracts.BackfillRequest{Open: []int{1}}},
				// tb is searching: offered no match, so a caller
				// allowed to answer finds nothing to answer.
				{"accept", http.MethodPost, "/v1/tickets/" + tb + "/accept", map[string]bool{"accept": true}},
				// Last of the changes a caller may make: it is
				// made once, by the caller allowed to.
				{"cancel", http.MethodDelete, "/v1/tickets/" + tb, nil},
				{"drain", http.MethodDelete, "/v1/servers/gs-b", nil},
			}
			const (
				u = http.StatusUnauthorized
				f = http.StatusForbidden
				n = http.StatusNotFound
			)
			all := func(status int) map[string]int {
				m := map[string]int{}
				for _, r := range routes {
					m[r.name] = status
				}
				return m
			}
			cases := []struct {
				name  string
				token string
				query bool // the token goes in ?access_token= instead
				want  map[string]int
			}{
				{"no token", "", false, all(u)},
				{"expired", tok("HS256", claims("pb", "player", "exp", time.Now().Add(-time.Hour).Unix())), false, all(u)},
				{"no exp", tok("HS256", claims("pb", "player", "exp", nil)), false, all(u)},
				{"not yet valid", tok("HS256", claims("pb", "player", "nbf", time.Now().Add(time.Hour).Unix())), false, all(u)},
				{"wrong signature", wrongSig, false, all(u)},
				{"wrong audience", tok("HS256", claims("pb", "player", "aud", "another-service")), false, all(u)},
				{"wrong issuer", tok("HS256", claims("pb", "player", "iss", "https://attacker.example")), false, all(u)},
				{"alg none", authtest.AlgNone(claims("studio-backend", "service")), false, all(u)},
				{"key confusion", confused, false, all(u)},
				{"unknown kid", unknownKID, false, all(u)},
				{"unknown role", tok("HS256", claims("pb", "admin")), false, all(u)},
				{"token in the query string", pb, true, all(u)},
				{"player on another's ticket and server", tok("HS256", claims("pa", "player")), false, map[string]int{
					"create": f, "read": n, "poll": n, "explain": n, "dashboard": f, "cancel": n, "accept": n,
					"register": f, "server": f, "allocations": f, "end match": f, "backfill": f, "drain": f}},
				{"server on another server and on tickets", tok("ES256", claims("gs-a", "server")), false, all(f)},
				{"the ticket's own player", pb, false, map[string]int{
					"create": f, "read": http.StatusOK, "poll": http.StatusOK, "explain": http.StatusOK, "dashboard": f,
					"accept": http.StatusConflict, "register": f, "server": f, "allocations": f, "end match": f, "backfill": f, "cancel": -1, "drain": f}},
				{"service", service, false, map[string]int{
					"create": http.StatusCreated, "read": http.StatusOK, "poll": http.StatusOK, "explain": http.StatusOK, "dashboard": http.StatusOK,
					"cancel": http.StatusOK, "accept": http.StatusConflict,
					"register": f, "server": f, "allocations": f, "end match": f, "backfill": f, "drain": f}},
				{"the server itself", tok("EdDSA", claims("gs-b", "server")), false, map[string]int{
					"create": f, "read": f, "poll": f, "explain": f, "dashboard": f, "cancel": f, "accept": f,
					"register": http.StatusOK, "server": http.StatusOK, "allocations": http.StatusOK,
					"end match": n, "backfill": n, "drain": http.StatusOK}},
			}
			unknown := call(t, http.MethodGet, s.frontURL+"/v1/tickets/duel-no-such-ticket", service, nil)
			mustStatus(t, unknown, n, "service reads an unknown ticket")
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					for _, r := range routes {
						want := tc.want[r.name]
						if want < 0 {
							continue
						}
						base := s.frontURL
						if strings.HasPrefix(r.path, "/v1/servers") {
							base = s.assignerURL
						}
						url, token := base+r.path, tc.token
						if tc.query {
							sep := "?"
							if strings.Contains(url, "?") {
								sep = "&"
							}
							url, token = url+sep+"access_token="+token, ""
						}
						a := call(t, r.method, url, token, r.body)
						if a.status != want {
							t.Errorf("%s %s: %d %s, want %d", r.method, r.path, a.status, a.body, want)
							continue
						}
						if want < 400 {
							continue
						}
						p := a.problem(t)
						switch want {
						case u:
							if p.Code != contracts.CodeInvalidToken || !strings.Contains(a.header.Get("WWW-Authenticate"), `Bearer`) ||
								!strings.Contains(a.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
								t.Errorf("%s %s: 401 code %q, WWW-Authenticate %q", r.method, r.path, p.Code, a.header.Get("WWW-Authenticate"))
							}
						case f:
							if p.Code != contracts.CodeForbidden {
								t.Errorf("%s %s: 403 code %q", r.method, r.path, p.Code)
							}
						case n:
							if strings.HasPrefix(r.path, "/v1/tickets") && !bytes.Equal(a.body, unknown.body) {
								t.Errorf("%s %s: 404 body %s differs from an unknown ticket's %s", r.method, r.path, a.body, unknown.body)
							}
						}
					}
					if tc.want["drain"] == http.StatusOK {
						return
					}
					// Only gs-b itself may move or drain gs-b.
					var srv contracts.Server
					a := call(t, http.MethodGet, s.assignerURL+"/v1/servers/gs-b", tok("HS256", claims("gs-b", "server")), nil)
					if err := json.Unmarshal(a.body, &srv); err != nil || srv.Address != "127.0.0.1:7777" || srv.Draining {
						t.Errorf("gs-b after the probes: %s (%v), want its own address, not drained", a.body, err)
					}
				})
			}
		})
	}
}

// TestAuthCreateRules checks what a player token lets a player queue:
// itself and its party claim, with the skills its token gives, and the 409
// for a busy player naming the ticket only to that player. Every refused
// create stores nothing.
func TestAuthCreateRules(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			keys := newKeys(t)
			s := startStack(t, m, stackOptions{auth: keys, queue: teamQueue()})
			tok := func(c jwt.MapClaims) string { return sign(t, keys, "HS256", c) }
			service := tok(claims("studio-backend", "service"))
			create := func(token string, req contracts.TicketRequest) answer {
				t.Helper()
				return call(t, http.MethodPost, s.frontURL+"/v1/tickets", token, req)
			}
			party := func(ids ...string) contracts.TicketRequest {
				req := contracts.TicketRequest{Queue: "squad"}
				for _, id := range ids {
					req.Players = append(req.Players, contracts.Player{ID: id, Skill: 1500})
				}
				return req
			}
			// free checks that nothing was stored for id: a service can
			// queue it, and then lets it go again.
			free := func(id string) {
				t.Helper()
				a := create(service, party(id))
				mustStatus(t, a, http.StatusCreated, "service queues "+id+", who must have no ticket")
				mustStatus(t, call(t, http.MethodDelete, s.frontURL+"/v1/tickets/"+ticketOf(t, a).ID, service, nil), http.StatusOK, "cancel")
			}

			leader := tok(claims("lead", "player", "party", []map[string]any{{"id": "mate-1"}, {"id": "mate-2", "skill": 1500}}))
			a := create(leader, party("lead", "mate-1", "stranger"))
			mustStatus(t, a, http.StatusForbidden, "a party with a member outside the claim")
			for _, id := range []string{"lead", "mate-1", "stranger"} {
				free(id)
			}
			mustStatus(t, create(leader, party("mate-1", "mate-2")), http.StatusForbidden, "a party without the player itself")
			free("mate-1")

			skilled := tok(claims("ace", "player", "skill", map[string]float64{"squad": 2100}))
			req := party("ace")
			mustStatus(t, create(skilled, req), http.StatusForbidden, "a body skill that differs from the token's")
			free("ace")
			req.Players[0].Skill = 2100
			a = create(skilled, req)
			mustStatus(t, a, http.StatusCreated, "the token's skill")
			aceTicket := ticketOf(t, a).ID

			// A party mate's skill from the claim holds too.
			mustStatus(t, create(leader, party("lead", "mate-2")), http.StatusCreated, "a party with the claim's skills")

			// Busy: only ace itself learns its ticket.
			friend := tok(claims("friend", "player", "party", []map[string]any{{"id": "ace"}}))
			for _, c := range []struct {
				who      string
				token    string
				req      contracts.TicketRequest
				namesIt  bool
				wantCode int
			}{
				{"ace itself", skilled, func() contracts.TicketRequest { r := party("ace"); r.Players[0].Skill = 2100; return r }(), true, http.StatusConflict},
				{"a player naming ace in its party", friend, party("friend", "ace"), false, http.StatusConflict},
				{"a service", service, party("ace"), false, http.StatusConflict},
			} {
				a := create(c.token, c.req)
				mustStatus(t, a, c.wantCode, c.who+" queues busy ace")
				p := a.problem(t)
				if named := p.TicketID != "" || a.header.Get("Location") != "" || strings.Contains(string(a.body), aceTicket); named != c.namesIt {
					t.Errorf("%s: the 409 names ace's ticket: %v, want %v: %s", c.who, named, c.namesIt, a.body)
				}
			}
		})
	}
}

// teamQueue is a queue of two teams of three, for parties.
func teamQueue() queues.Queue {
	q := testQueue()
	q.Name, q.TeamSize = "squad", 3
	return q
}

// TestAuthRateLimit: a player's creates past its burst are answered 429
// with Retry-After, and store nothing.
func TestAuthRateLimit(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			keys := newKeys(t)
			const burst = 3
			s := startStack(t, m, stackOptions{auth: keys, createBurst: burst, failureBurst: burst})
			p := sign(t, keys, "HS256", claims("eager", "player"))
			service := sign(t, keys, "HS256", claims("studio-backend", "service"))
			for i := range burst {
				a := call(t, http.MethodPost, s.frontURL+"/v1/tickets", p, player("eager", 1500))
				mustStatus(t, a, http.StatusCreated, fmt.Sprintf("create %d", i+1))
				mustStatus(t, call(t, http.MethodDelete, s.frontURL+"/v1/tickets/"+ticketOf(t, a).ID, p, nil), http.StatusOK, "cancel")
			}
			a := call(t, http.MethodPost, s.frontURL+"/v1/tickets", p, player("eager", 1500))
			mustStatus(t, a, http.StatusTooManyRequests, fmt.Sprintf("create %d", burst+1))
			if pr := a.problem(t); pr.Code != contracts.CodeRateLimited || a.header.Get("Retry-After") == "" {
				t.Errorf("429 code %q, Retry-After %q", pr.Code, a.header.Get("Retry-After"))
			}
			// Nothing stored: eager has no live ticket.
			queued := call(t, http.MethodPost, s.frontURL+"/v1/tickets", service, player("eager", 1500))
			mustStatus(t, queued, http.StatusCreated, "a service queues eager after the refused create")

			// Explanations read the pool, and are limited the same way.
			explain := s.frontURL + "/v1/tickets/" + ticketOf(t, queued).ID + "/explain"
			for i := range burst {
				mustStatus(t, call(t, http.MethodGet, explain, p, nil), http.StatusOK, fmt.Sprintf("explain %d", i+1))
			}
			a = call(t, http.MethodGet, explain, p, nil)
			mustStatus(t, a, http.StatusTooManyRequests, fmt.Sprintf("explain %d", burst+1))
			if a.header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			mustStatus(t, call(t, http.MethodGet, explain, service, nil), http.StatusOK, "a service's explanation")
			// Another player has a bucket of its own.
			other := sign(t, keys, "HS256", claims("patient", "player"))
			mustStatus(t, call(t, http.MethodPost, s.frontURL+"/v1/tickets", other, player("patient", 1500)), http.StatusCreated, "another player")

			// Failed authentications from one address: 401 up to the
			// burst, then 429, while a good token still passes.
			for i := range burst {
				mustStatus(t, call(t, http.MethodGet, s.frontURL+"/v1/tickets/x", "garbage", nil), http.StatusUnauthorized, fmt.Sprintf("bad token %d", i+1))
			}
			a = call(t, http.MethodGet, s.frontURL+"/v1/tickets/x", "garbage", nil)
			mustStatus(t, a, http.StatusTooManyRequests, "a bad token past the burst")
			if a.header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			mustStatus(t, call(t, http.MethodGet, s.frontURL+"/v1/tickets/x", service, nil), http.StatusNotFound, "a good token after the limit")
		})
	}
}

// TestAuthRegionsBounded: tickets naming regions the deployment does not
// know are refused 400 unknown_region, and add no metric series; a region a
// server registered in is taken.
func TestAuthRegionsBounded(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			keys := newKeys(t)
			s := startStack(t, m, stackOptions{auth: keys})
			service := sign(t, keys, "HS256", claims("studio-backend", "service"))
			series := func() map[string]bool {
				t.Helper()
				out := map[string]bool{}
				for _, url := range []string{s.frontURL, s.assignerURL} {
					a := call(t, http.MethodGet, url+"/metrics", "", nil)
					for _, line := range strings.Split(string(a.body), "\n") {
						// The requests' own metrics take one series per
						// route and status (and bucket), bounded by the
						// router: every other series counts.
						if strings.HasPrefix(line, "mm_") && !strings.HasPrefix(line, "mm_http_") {
							out[url+" "+line[:strings.LastIndexByte(line, ' ')]] = true
						}
					}
				}
				return out
			}
			before := series()
			for i := range 1000 {
				req := player(fmt.Sprintf("p-%d", i), 1500)
				req.Latencies = map[string]float64{fmt.Sprintf("attacker-made-region-%d", i): 10}
				a := call(t, http.MethodPost, s.frontURL+"/v1/tickets", service, req)
				if a.status != http.StatusBadRequest || a.problem(t).Code != contracts.CodeUnknownRegion {
					t.Fatalf("ticket %d with a made-up region: %d %s, want 400 unknown_region", i, a.status, a.body)
				}
			}
			after := series()
			var added []string
			for s := range after {
				if !before[s] {
					added = append(added, s)
				}
				if strings.Contains(s, "attacker-made-region") {
					t.Errorf("a series names a made-up region: %s", s)
				}
			}
			if len(added) > 0 {
				t.Errorf("1,000 tickets with made-up regions added %d series: %q", len(added), added)
			}

			// A region becomes known when a server registers in it.
			mustStatus(t, call(t, http.MethodPut, s.assignerURL+"/v1/servers/gs-new", sign(t, keys, "HS256", claims("gs-new", "server")),
				contracts.ServerRequest{Address: "127.0.0.1:7777", Region: "ap-south", Capacity: 1}), http.StatusOK, "register in ap-south")
			req := player("p-ap", 1500)
			req.Latencies = map[string]float64{"ap-south": 20}
			deadline := time.Now().Add(5 * time.Second)
			for {
				a := call(t, http.MethodPost, s.frontURL+"/v1/tickets", service, req)
				if a.status == http.StatusCreated {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("a ticket for the registered region: %d %s", a.status, a.body)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// TestAuthRouterProblems: the router's own 404 and 405 are problem details,
// the 405 with Allow, and a 404's detail carries no internal error chain.
func TestAuthRouterProblems(t *testing.T) {
	s := startStack(t, embedded, stackOptions{})
	for _, c := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{http.MethodGet, "/v1/nothing-here", http.StatusNotFound, contracts.CodeNotFound, ""},
		{http.MethodPatch, "/v1/tickets/abc", http.StatusMethodNotAllowed, contracts.CodeMethodNotAllowed, "GET, DELETE"},
		{http.MethodPost, "/v1/servers/gs-1", http.StatusMethodNotAllowed, contracts.CodeMethodNotAllowed, "GET, PUT, DELETE"},
		{http.MethodGet, "/v1/tickets/duel-unknown", http.StatusNotFound, contracts.CodeNotFound, ""},
		{http.MethodGet, "/v1/servers/gs-unknown", http.StatusNotFound, contracts.CodeNotFound, ""},
	} {
		a := call(t, c.method, s.frontURL+c.path, "", nil)
		if a.status != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, a.status, c.status)
			continue
		}
		p := a.problem(t)
		if p.Code != c.code || a.header.Get("Allow") != c.allow {
			t.Errorf("%s %s: code %q Allow %q, want %q and %q", c.method, c.path, p.Code, a.header.Get("Allow"), c.code, c.allow)
		}
		if strings.Contains(p.Detail, ":") {
			t.Errorf("%s %s: detail %q reads like an internal error chain", c.method, c.path, p.Detail)
		}
	}
}

// TestAuthStartup: which configurations start with auth on, which with it
// off, and which are refused.
func TestAuthStartup(t *testing.T) {
	keys := newKeys(t)
	cases := []struct {
		name    string
		cfg     Config
		roles   Role
		wantErr bool
		wantOn  bool
	}{
		{"embedded, no key, loopback", Config{HTTPAddr: "127.0.0.1:8080"}, All, false, false},
		{"embedded, no key, localhost", Config{HTTPAddr: "localhost:8080"}, All, false, false},
		{"embedded, no key, every address", Config{HTTPAddr: ":8080"}, All, true, false},
		{"embedded, no key, a public address", Config{HTTPAddr: "192.0.2.1:8080"}, All, true, false},
		{"embedded, MM_AUTH=off, every address", Config{HTTPAddr: ":8080", Auth: "off"}, All, false, false},
		{"embedded, MM_AUTH=on, no key", Config{HTTPAddr: "127.0.0.1:8080", Auth: "on"}, All, true, false},
		{"embedded with a secret", Config{HTTPAddr: ":8080", AuthHS256Secret: string(keys.Secret())}, All, false, true},
		{"front, no key", Config{AMQPURL: "amqp://x", RedisAddr: "x:1"}, Front, true, false},
		{"matcher, no key", Config{AMQPURL: "amqp://x", RedisAddr: "x:1"}, Matcher, true, false},
		{"assigner, no key", Config{AMQPURL: "amqp://x", RedisAddr: "x:1"}, Assigner, true, false},
		{"distributed matchmaker, no key", Config{AMQPURL: "amqp://x", RedisAddr: "x:1", HTTPAddr: "127.0.0.1:1"}, All, true, false},
		{"front, MM_AUTH=off", Config{AMQPURL: "amqp://x", RedisAddr: "x:1", Auth: "off"}, Front, false, false},
		{"front with a secret", Config{AMQPURL: "amqp://x", RedisAddr: "x:1", AuthHS256Secret: string(keys.Secret())}, Front, false, true},
		{"MM_AUTH=off beside a key", Config{AMQPURL: "amqp://x", RedisAddr: "x:1", Auth: "off", AuthHS256Secret: "s"}, Front, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := newAuthenticator(t.Context(), &c.cfg, c.roles, slog.New(slog.DiscardHandler))
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want an error: %v", err, c.wantErr)
			}
			if err != nil {
				return
			}
			// An anonymous request passes only when auth is off.
			r, _ := http.NewRequest(http.MethodGet, "/", nil)
			rec := &statusRecorder{header: http.Header{}}
			a.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })).ServeHTTP(rec, r)
			if on := rec.status == http.StatusUnauthorized; on != c.wantOn {
				t.Errorf("anonymous request answered %d: auth on %v, want %v", rec.status, on, c.wantOn)
			}
		})
	}
}

type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(status int)      { r.status = status }

// newAuthClient is a client that authenticates as a studio's backend and
// its game servers do: a service token for ticket calls, and each server's
// own token for its calls.
func newAuthClient(t testing.TB, secret []byte) *client {
	c := newClient(t)
	mint := func(sub, role string) string {
		tok, err := authtest.SignHS256(secret, jwt.MapClaims{"sub": sub, "role": role, "exp": time.Now().Add(time.Hour).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	service := mint("studio-backend", "service")
	c.authorize = func(r *http.Request) {
		token := service
		if id, ok := strings.CutPrefix(r.URL.Path, "/v1/servers/"); ok {
			id, _, _ = strings.Cut(id, "/")
			token = mint(id, "server")
		}
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return c
}

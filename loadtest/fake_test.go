package main

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

// fate is how a fake ticket's life goes, chosen by its player's number.
type fate int

const (
	fateUnavailable fate = iota // the create answers 503
	fateAssigned                // matched on the first poll, assigned on the next
	fateExpired                 // expires on the first poll
	fateSearching               // searches until cancelled
	fateStuck                   // matched on the first poll, never assigned
	fateAnswerLost              // created, but the first answer is lost; then as fateAssigned
	numFates
)

// fakeSuite stands in for the suite, so that tests can see how the load
// tester counts every fate.
type fakeSuite struct {
	// fateFor picks a player's fate by its number; by default fate n mod
	// numFates.
	fateFor func(n int) fate
	// ignoreKeys makes the suite one that predates Idempotency-Key: a retry
	// of a create that made its ticket answers 409 player_has_ticket.
	ignoreKeys bool

	mu      sync.Mutex
	tickets map[string]*contracts.Ticket
	fates   map[string]fate
	servers map[string]contracts.Server
	keys    map[string]keyedCreate // by Idempotency-Key
	creates map[string][]seenCreate
}

// keyedCreate is what the suite keeps of a create with a key.
type keyedCreate struct{ ticket, body string }

// seenCreate is one create try as a front received it.
type seenCreate struct{ key, front string }

// frontFault is how one fake front fails, for tests of several fronts;
// every front of a fake suite shares its tickets.
type frontFault int

const (
	frontHealthy   frontFault = iota
	frontDead                 // answers /livez, then drops every other call unanswered: a front that died
	frontRefuses              // answers creates 503
	frontPollsFail            // creates, but answers polls 502
)

// newFakeFronts serves f through one front for each fault.
func newFakeFronts(t *testing.T, f *fakeSuite, faults ...frontFault) (*fakeSuite, []*httptest.Server) {
	t.Helper()
	f.tickets, f.fates, f.servers = map[string]*contracts.Ticket{}, map[string]fate{}, map[string]contracts.Server{}
	f.keys, f.creates = map[string]keyedCreate{}, map[string][]seenCreate{}
	if f.fateFor == nil {
		f.fateFor = func(n int) fate { return fate(n % int(numFates)) }
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("POST /v1/tickets", f.create)
	mux.HandleFunc("GET /v1/tickets/{id}", f.poll)
	mux.HandleFunc("DELETE /v1/tickets/{id}", f.cancel)
	mux.HandleFunc("PUT /v1/servers/{id}", f.register)
	mux.HandleFunc("GET /v1/servers/{id}", f.server)
	mux.HandleFunc("DELETE /v1/servers/{id}", f.server)
	var srvs []*httptest.Server
	for _, fault := range faults {
		srv := httptest.NewServer(f.front(fault, mux))
		t.Cleanup(srv.Close)
		srvs = append(srvs, srv)
	}
	return f, srvs
}

// front notes every create try it receives, then fails as fault says or
// hands the call to the suite.
func (f *fakeSuite) front(fault frontFault, suite http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isCreate := r.Method == http.MethodPost && r.URL.Path == "/v1/tickets"
		if isCreate {
			f.note(r)
		}
		switch {
		case r.URL.Path == "/livez" || fault == frontHealthy:
		case fault == frontDead:
			dropAnswer(w)
			return
		case fault == frontRefuses && isCreate:
			problem(w, http.StatusServiceUnavailable, contracts.CodeUnavailable)
			return
		case fault == frontPollsFail && r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/tickets/"):
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		suite.ServeHTTP(w, r)
	})
}

// note records a create try by its first player, and leaves the body for
// the suite to read.
func (f *fakeSuite) note(r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var req contracts.TicketRequest
	if json.Unmarshal(body, &req) != nil || len(req.Players) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := req.Players[0].ID
	f.creates[id] = append(f.creates[id], seenCreate{key: r.Header.Get("Idempotency-Key"), front: "http://" + r.Host})
}

// seen is the create tries of each player, by its id.
func (f *fakeSuite) seen() map[string][]seenCreate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.creates)
}

// dropAnswer closes the connection without an answer.
func dropAnswer(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func problem(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", contracts.ProblemContentType)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(contracts.Problem{Status: status, Code: code, Title: http.StatusText(status)})
}

func (f *fakeSuite) create(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req contracts.TicketRequest
	if err := json.Unmarshal(body, &req); err != nil || len(req.Players) == 0 {
		problem(w, http.StatusBadRequest, contracts.CodeBadRequest)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if f.replay(w, key, body) {
		return
	}
	id := req.Players[0].ID
	n, _ := strconv.Atoi(id[strings.LastIndexAny(id, "p")+1:])
	fa := f.fateFor(n)
	if fa == fateUnavailable {
		problem(w, http.StatusServiceUnavailable, contracts.CodeUnavailable)
		return
	}
	t := &contracts.Ticket{ID: "t-" + id, Queue: req.Queue, Status: contracts.StatusSearching, Version: 1, Players: req.Players}
	f.mu.Lock()
	if old, ok := f.tickets[t.ID]; ok && !old.Status.Terminal() {
		f.mu.Unlock()
		w.Header().Set("Content-Type", contracts.ProblemContentType)
		w.WriteHeader(http.StatusConflict)
		json.NewEncoder(w).Encode(contracts.Problem{Status: http.StatusConflict, Code: contracts.CodePlayerHasTicket, TicketID: old.ID})
		return
	}
	f.tickets[t.ID], f.fates[t.ID] = t, fa
	if key != "" && !f.ignoreKeys {
		f.keys[key] = keyedCreate{ticket: t.ID, body: string(body)}
	}
	out := *t
	f.mu.Unlock()
	if fa == fateAnswerLost {
		// The ticket exists; the client never hears of it.
		dropAnswer(w)
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

// replay answers a create whose key an earlier create used, as the suite
// does: that create's ticket as it is now, or 422 for another body.
func (f *fakeSuite) replay(w http.ResponseWriter, key string, body []byte) bool {
	f.mu.Lock()
	k, ok := f.keys[key]
	var t contracts.Ticket
	if ok {
		t = *f.tickets[k.ticket]
	}
	f.mu.Unlock()
	switch {
	case !ok:
		return false
	case k.body != string(body):
		problem(w, http.StatusUnprocessableEntity, contracts.CodeIdempotencyMismatch)
	default:
		w.Header().Set("Idempotent-Replayed", "true")
		writeJSON(w, http.StatusCreated, t)
	}
	return true
}

// advance moves a ticket on as its fate says, once per poll.
func (f *fakeSuite) advance(t *contracts.Ticket, fa fate) {
	set := func(s contracts.Status) { t.Status, t.Version = s, t.Version+1 }
	if fa == fateAnswerLost {
		fa = fateAssigned
	}
	switch {
	case fa == fateAssigned && t.Status == contracts.StatusSearching,
		fa == fateStuck && t.Status == contracts.StatusSearching:
		set(contracts.StatusMatched)
	case fa == fateAssigned && t.Status == contracts.StatusMatched:
		set(contracts.StatusAssigned)
	case fa == fateExpired && t.Status == contracts.StatusSearching:
		set(contracts.StatusExpired)
	}
}

func (f *fakeSuite) poll(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wait, _ := time.ParseDuration(r.URL.Query().Get("wait"))
	after, _ := strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	f.mu.Lock()
	t, ok := f.tickets[id]
	if ok {
		f.advance(t, f.fates[id])
	}
	f.mu.Unlock()
	if !ok {
		problem(w, http.StatusNotFound, contracts.CodeNotFound)
		return
	}
	// Hold until the version passes after (a cancel), the wait ends or the
	// client leaves; bounded by the wait.
	deadline := time.Now().Add(wait)
	for {
		f.mu.Lock()
		out := *t
		f.mu.Unlock()
		if out.Version > after || !time.Now().Before(deadline) || r.Context().Err() != nil {
			writeJSON(w, http.StatusOK, out)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fakeSuite) cancel(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tickets[r.PathValue("id")]
	switch {
	case !ok:
		problem(w, http.StatusNotFound, contracts.CodeNotFound)
	case t.Status == contracts.StatusSearching:
		t.Status, t.Version = contracts.StatusCancelled, t.Version+1
		writeJSON(w, http.StatusOK, *t)
	case t.Status == contracts.StatusCancelled:
		writeJSON(w, http.StatusOK, *t)
	case t.Status == contracts.StatusMatched || t.Status == contracts.StatusAssigned:
		problem(w, http.StatusConflict, contracts.CodeTicketMatched)
	default:
		problem(w, http.StatusConflict, contracts.CodeConflict)
	}
}

func (f *fakeSuite) register(w http.ResponseWriter, r *http.Request) {
	var req contracts.ServerRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		problem(w, http.StatusBadRequest, contracts.CodeBadRequest)
		return
	}
	s := contracts.Server{ID: r.PathValue("id"), Address: req.Address, Region: req.Region, Capacity: req.Capacity}
	f.mu.Lock()
	f.servers[s.ID] = s
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, s)
}

func (f *fakeSuite) server(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	s, ok := f.servers[r.PathValue("id")]
	f.mu.Unlock()
	if !ok {
		problem(w, http.StatusNotFound, contracts.CodeNotFound)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

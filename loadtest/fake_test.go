package main

import (
	"encoding/json"
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
	mu      sync.Mutex
	tickets map[string]*contracts.Ticket
	fates   map[string]fate
	servers map[string]contracts.Server
}

// newFakeSuite serves the player and game-server APIs; player n (the number
// ending its id) meets fate n mod numFates.
func newFakeSuite(t *testing.T) *httptest.Server {
	t.Helper()
	f := &fakeSuite{tickets: map[string]*contracts.Ticket{}, fates: map[string]fate{}, servers: map[string]contracts.Server{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("POST /v1/tickets", f.create)
	mux.HandleFunc("GET /v1/tickets/{id}", f.poll)
	mux.HandleFunc("DELETE /v1/tickets/{id}", f.cancel)
	mux.HandleFunc("PUT /v1/servers/{id}", f.register)
	mux.HandleFunc("GET /v1/servers/{id}", f.server)
	mux.HandleFunc("DELETE /v1/servers/{id}", f.server)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
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
	var req contracts.TicketRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Players) == 0 {
		problem(w, http.StatusBadRequest, contracts.CodeBadRequest)
		return
	}
	id := req.Players[0].ID
	n, _ := strconv.Atoi(id[strings.LastIndexAny(id, "p")+1:])
	fa := fate(n % int(numFates))
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
	out := *t
	f.mu.Unlock()
	if fa == fateAnswerLost {
		// The ticket exists; the client never hears of it.
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	writeJSON(w, http.StatusCreated, out)
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

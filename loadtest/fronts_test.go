package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/services"
)

// TestSeveralFronts spreads players over fronts of one fake suite, some of
// which fail, and checks that no player stalls on a failing front: each
// create retry goes to the next front with the same Idempotency-Key, a
// failed poll moves on too, and the outcomes name the front and tries.
func TestSeveralFronts(t *testing.T) {
	tests := []struct {
		name    string
		fronts  []frontFault
		fate    string // every player's
		retried int64  // creates that took more than one try
		errors  map[string]int64
	}{
		{"all healthy", []frontFault{frontHealthy, frontHealthy}, "assigned", 0, nil},
		{"one refuses creates", []frontFault{frontRefuses, frontHealthy}, "assigned", 6,
			map[string]int64{"create: 503 unavailable": 6}},
		{"one fails polls", []frontFault{frontHealthy, frontPollsFail}, "assigned", 0,
			map[string]int64{"poll: 502": 6}},
		{"one died", []frontFault{frontHealthy, frontDead, frontHealthy}, "assigned", 4, nil},
		// Every try dropped: the creates may have made tickets, so they are
		// not told failed.
		{"all died", []frontFault{frontDead, frontDead}, "create_unanswered", 12, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, srvs := newFakeFronts(t, &fakeSuite{fateFor: func(int) fate { return fateAssigned }},
				append(tt.fronts, frontHealthy)...)
			var fronts []string
			for _, s := range srvs[:len(tt.fronts)] {
				fronts = append(fronts, s.URL)
			}
			out := t.TempDir()
			outcomes := filepath.Join(out, "outcomes.jsonl")
			code, text := runCmd(t, "-front", strings.Join(fronts, ","), "-assigner", srvs[len(tt.fronts)].URL,
				"-run-id", "x", "-rate", "400", "-players", "12", "-duration", "1s", "-drain", "6s",
				"-servers", "1", "-game-length", "0", "-regions", "eu-west=10", "-max-error-rate", "1",
				"-out", out, "-outcomes", outcomes)
			r := loadReport(t, out)
			p := r.Players
			if !slices.Equal(r.Fronts, fronts) || r.Front != fronts[0] {
				t.Errorf("report fronts %q, front %q; want %q", r.Fronts, r.Front, fronts)
			}
			if p.Tickets[tt.fate] != 12 || p.Lost != 0 || p.CreatesRetried != tt.retried {
				t.Errorf("tickets %v, creates retried %d; want 12 %s, %d retried\n%s", p.Tickets, p.CreatesRetried, tt.fate, tt.retried, text)
			}
			if tt.fate == "assigned" && code != exitPass {
				t.Errorf("exit %d, want a pass\n%s", code, text)
			}
			for k, n := range tt.errors {
				if p.Errors[k] != n {
					t.Errorf("errors %v: want %d × %s", p.Errors, n, k)
				}
			}
			checkFrontLines(t, readOutcomes(t, outcomes), fake.seen(), fronts, tt.fate)
		})
	}
}

// checkFrontLines checks each player's outcome line against the create
// tries the fronts received: one key, a UUID v4, for all of a player's
// tries and no other player's; each try on the front after the last one's;
// and the line naming the last try's front and the number of tries.
func checkFrontLines(t *testing.T, lines map[string]outcomeLine, seen map[string][]seenCreate, fronts []string, fate string) {
	t.Helper()
	if len(lines) != 12 || len(seen) != 12 {
		t.Fatalf("%d outcome lines, %d players seen; want 12", len(lines), len(seen))
	}
	starts := map[string]int{}
	keys := map[string]string{}
	for id, tries := range seen {
		l := lines[id]
		if l.Fate != fate || l.Tries != len(tries) || l.Front != tries[len(tries)-1].front {
			t.Errorf("%s: outcome %+v, tries %+v", id, l, tries)
		}
		if want := "t-" + id; fate == "assigned" && l.Ticket != want || fate != "assigned" && l.Ticket != "" {
			t.Errorf("%s: outcome ticket %q", id, l.Ticket)
		}
		k, err := uuid.Parse(tries[0].key)
		if err != nil || k.Version() != 4 || keys[tries[0].key] != "" {
			t.Errorf("%s: key %q is not a fresh UUID v4 (%v; also %s's)", id, tries[0].key, err, keys[tries[0].key])
		}
		keys[tries[0].key] = id
		at := slices.Index(fronts, tries[0].front)
		starts[tries[0].front]++
		for i, try := range tries {
			if want := fronts[(at+i)%len(fronts)]; try.key != tries[0].key || try.front != want {
				t.Errorf("%s: try %d went to %s with key %q; want %s with the first try's %q", id, i+1, try.front, try.key, want, tries[0].key)
			}
		}
	}
	// Round robin: each front is the first of 12 / len(fronts) players.
	for _, f := range fronts {
		if starts[f] != 12/len(fronts) {
			t.Errorf("first tries by front %v, want an even spread over %q", starts, fronts)
		}
	}
}

// TestCreateTicket checks one create try: the key and body it sends, and
// how it reads the answer.
func TestCreateTicket(t *testing.T) {
	tests := []struct {
		name     string
		answer   func(w http.ResponseWriter)
		replayed bool
		code     string // the error's problem code; "" for none
	}{
		{"created", func(w http.ResponseWriter) { writeJSON(w, http.StatusCreated, contracts.Ticket{ID: "t-1"}) }, false, ""},
		{"replayed", func(w http.ResponseWriter) {
			w.Header().Set("Idempotent-Replayed", "true")
			writeJSON(w, http.StatusCreated, contracts.Ticket{ID: "t-1"})
		}, true, ""},
		{"mismatch", func(w http.ResponseWriter) {
			problem(w, http.StatusUnprocessableEntity, contracts.CodeIdempotencyMismatch)
		}, false, contracts.CodeIdempotencyMismatch},
		{"refused", func(w http.ResponseWriter) {
			w.Header().Set("Idempotent-Replayed", "true")
			problem(w, http.StatusServiceUnavailable, contracts.CodeUnavailable)
		}, false, contracts.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string // key and body of each try
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got = append(got, r.Header.Get("Idempotency-Key"), string(b))
				tt.answer(w)
			}))
			defer srv.Close()
			client := newClient(http.DefaultTransport.(*http.Transport), []string{srv.URL + "/"}, srv.URL)
			cr, err := newCreateRequest(&contracts.TicketRequest{Queue: "duel", Players: []contracts.Player{{ID: "p-1", Skill: 1500}},
				Latencies: map[string]float64{"us-east": 110, "eu-west": 30}})
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				tk, replayed, err := client.CreateTicket(context.Background(), client.Front(0), cr)
				ae, _ := errors.AsType[*apiError](err)
				if replayed != tt.replayed || (tt.code == "") != (err == nil) || err != nil && ae.Code != tt.code {
					t.Errorf("CreateTicket = %+v, %v, %v; want replayed %v, code %q", tk, replayed, err, tt.replayed, tt.code)
				}
				if err == nil && tk.ID != "t-1" {
					t.Errorf("ticket %q, want t-1", tk.ID)
				}
			}
			if len(got) != 4 || got[0] == "" || got[0] != got[2] || got[1] != got[3] {
				t.Errorf("tries sent %q: want the same key and body twice", got)
			}
		})
	}
}

// TestConflictOnRetry: only a retry's 409 player_has_ticket naming a
// ticket is an earlier try's ticket.
func TestConflictOnRetry(t *testing.T) {
	conflict := &apiError{Op: "create", Status: 409, Code: contracts.CodePlayerHasTicket, TicketID: "t-1"}
	tests := []struct {
		err  error
		try  int
		want string
	}{
		{conflict, 1, "t-1"},
		{conflict, 0, ""},
		{&apiError{Op: "create", Status: 409, Code: contracts.CodePlayerHasTicket}, 1, ""},
		{&apiError{Op: "create", Status: 409, Code: contracts.CodeConflict, TicketID: "t-1"}, 1, ""},
		{errors.New("odd"), 1, ""},
	}
	for _, tt := range tests {
		if got, ok := conflictOnRetry(tt.err, tt.try); got != tt.want || ok != (tt.want != "") {
			t.Errorf("conflictOnRetry(%v, %d) = %q, %v; want %q", tt.err, tt.try, got, ok, tt.want)
		}
	}
}

// TestAbandonMovesOn: the cancel at the end goes to the next front when
// the ticket's own does not answer.
func TestAbandonMovesOn(t *testing.T) {
	_, srvs := newFakeFronts(t, &fakeSuite{fateFor: func(int) fate { return fateSearching }}, frontDead, frontHealthy)
	client := newClient(http.DefaultTransport.(*http.Transport), []string{srvs[0].URL, srvs[1].URL}, srvs[1].URL)
	ctx := context.Background()
	tk, _, err := client.CreateTicket(ctx, client.Front(1), mustCreateRequest(t, "x-p3"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p := &player{client: client, rec: NewRecorder(now, now)}
	status, _ := p.abandon(ctx, &ticketRun{front: 0, ticketID: tk.ID}, contracts.StatusSearching)
	if status != statusAbandoned {
		t.Errorf("abandon = %s, want abandoned", status)
	}
	if errs := p.rec.snapshot().errors; len(errs) != 1 {
		t.Errorf("errors %v: want the dead front's one", errs)
	}
}

func mustCreateRequest(t *testing.T, player string) *createRequest {
	t.Helper()
	cr, err := newCreateRequest(&contracts.TicketRequest{Queue: "duel", Players: []contracts.Player{{ID: player}}})
	if err != nil {
		t.Fatal(err)
	}
	return cr
}

// TestCreateTriesAreTheCallers: the transport would send a keyed POST again
// by itself when a reused connection drops without an answer; every try
// must be the player's own, counted and sent to the front it picks.
func TestCreateTriesAreTheCallers(t *testing.T) {
	var creates atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			creates.Add(1)
			_, _ = io.ReadAll(r.Body)
			dropAnswer(w)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := newClient(tr, []string{srv.URL}, srv.URL)
	ctx := context.Background()
	// The create goes on the connection this call leaves idle.
	if err := client.Get(ctx, "livez", srv.URL, "/livez"); err != nil {
		t.Fatal(err)
	}
	_, _, err := client.CreateTicket(ctx, client.Front(0), mustCreateRequest(t, "x-p1"))
	if err == nil || answered(err) || creates.Load() != 1 || client.Requests() != 2 {
		t.Errorf("create = %v after %d tries received, %d requests sent; want one unanswered try", err, creates.Load(), client.Requests())
	}
}

// TestTwoFrontsAgainstDistributed runs the pipeline scenario over two
// fronts of the distributed mode, on the real RabbitMQ and Redis, and
// checks the outcomes: every create assigned, each ticket once, the players
// spread evenly. A create sent again to the other front is answered with
// the same ticket, marked replayed.
func TestTwoFrontsAgainstDistributed(t *testing.T) {
	front, assigner := startDistributed(t)
	fronts := []string{front, startApp(t, services.Front)}
	out := t.TempDir()
	outcomes := filepath.Join(out, "outcomes.jsonl")
	code, text := runCmd(t, "-front", strings.Join(fronts, ","), "-assigner", assigner, "-scenario", "pipeline",
		"-rate", "200", "-duration", "1s", "-out", out, "-outcomes", outcomes)
	if code != exitPass {
		t.Fatalf("exit %d\n%s", code, text)
	}
	p := loadReport(t, out).Players
	lines := readOutcomes(t, outcomes)
	byFront := map[string]int{}
	tickets := map[string]bool{}
	for id, l := range lines {
		if l.Fate != "assigned" || l.Tries != 1 || l.Ticket == "" || tickets[l.Ticket] || !slices.Contains(fronts, l.Front) {
			t.Errorf("%s: outcome %+v", id, l)
		}
		tickets[l.Ticket] = true
		byFront[l.Front]++
	}
	if int64(len(lines)) != p.Tickets["assigned"] || p.CreatesReplayed != 0 || byFront[fronts[0]]-byFront[fronts[1]] > 1 || byFront[fronts[1]]-byFront[fronts[0]] > 1 {
		t.Errorf("%d outcome lines by front %v, tickets %v, %d replayed; want one per ticket, spread evenly", len(lines), byFront, p.Tickets, p.CreatesReplayed)
	}

	client := newClient(http.DefaultTransport.(*http.Transport), fronts, assigner)
	if err := client.authenticate(os.Getenv("MM_AUTH_HS256_SECRET")); err != nil {
		t.Fatal(err)
	}
	cr := mustCreateRequest(t, "x-replay")
	ctx := context.Background()
	first, replayed, err := client.CreateTicket(ctx, client.Front(0), cr)
	if err != nil || replayed {
		t.Fatalf("first create = %+v, replayed %v, %v", first, replayed, err)
	}
	again, replayed, err := client.CreateTicket(ctx, client.Front(1), cr)
	if err != nil || !replayed || again.ID != first.ID {
		t.Errorf("create again through the other front = %+v, replayed %v, %v; want %s replayed", again, replayed, err, first.ID)
	}
	if _, err := client.CancelTicket(ctx, client.Front(1), first.ID); err != nil {
		t.Error(err)
	}
}

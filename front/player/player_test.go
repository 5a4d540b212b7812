package player_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/front/player"
	"github.com/quickmatch/quickmatch/internal/apiclient/apiclienttest"
)

// seenRequest is what a fake front noted of a request.
type seenRequest struct {
	front, method, path, query string
	header                     http.Header
}

// reqLog notes the requests of the fake fronts of a test.
type reqLog struct {
	mu   sync.Mutex
	reqs []seenRequest
}

func (l *reqLog) note(front string, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, seenRequest{front, r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone()})
}

func (l *reqLog) all() []seenRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]seenRequest(nil), l.reqs...)
}

func ticketAt(v int64, s contracts.Status) contracts.Ticket {
	return contracts.Ticket{ID: "t-1", Queue: "duel", Status: s, Version: v, Players: []contracts.Player{{ID: "p-1", Skill: 1}}}
}

// TestCreateBacksOff: a create refused with 503 and 429 waits at least
// their Retry-After (on a fake clock) and moves past the front that
// answered 503, not past the one that answered 429; every try carries the
// same Idempotency-Key and a fresh token from the callback.
func TestCreateBacksOff(t *testing.T) {
	var (
		l     reqLog
		tries atomic.Int64
	)
	handler := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			l.note(name, r)
			switch tries.Add(1) {
			case 1:
				apiclienttest.WriteProblem(w, http.StatusServiceUnavailable, contracts.CodeOverloaded, 2)
			case 2:
				apiclienttest.WriteProblem(w, http.StatusTooManyRequests, contracts.CodeRateLimited, 3)
			default:
				apiclienttest.WriteJSON(w, http.StatusCreated, ticketAt(1, contracts.StatusSearching))
			}
		}
	}
	a, b := httptest.NewServer(handler("a")), httptest.NewServer(handler("b"))
	defer a.Close()
	defer b.Close()
	clock := &apiclienttest.Clock{}
	var minted atomic.Int64
	p, err := player.New(player.Config{Fronts: []string{a.URL, b.URL}, Retry: player.RetryPolicy{Sleep: clock.Sleep},
		Token: func(context.Context) (string, error) { return fmt.Sprintf("tok-%d", minted.Add(1)), nil }})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := p.Create(t.Context(), duel("p-1", 1))
	if err != nil || tk.ID != "t-1" {
		t.Fatalf("Create = %+v, %v", tk, err)
	}
	waits := clock.Waits()
	if len(waits) != 2 || waits[0] < 2*time.Second || waits[1] < 3*time.Second {
		t.Errorf("waits %v; want at least the Retry-After of each: 2s, 3s", waits)
	}
	reqs := l.all()
	if len(reqs) != 3 {
		t.Fatalf("%d tries; want 3", len(reqs))
	}
	key := reqs[0].header.Get("Idempotency-Key")
	for i, r := range reqs {
		if got := r.header.Get("Idempotency-Key"); got != key || key == "" {
			t.Errorf("try %d: Idempotency-Key %q; want %q on every try", i+1, got, key)
		}
		if got, want := r.header.Get("Authorization"), fmt.Sprintf("Bearer tok-%d", i+1); got != want {
			t.Errorf("try %d: Authorization %q; want %q", i+1, got, want)
		}
	}
	if fronts := reqs[0].front + reqs[1].front + reqs[2].front; fronts != "abb" {
		t.Errorf("tries went to fronts %q; want a, then b for the 429 and its retry", fronts)
	}
	// A second create is another logical create: another key.
	if _, err := p.Create(t.Context(), duel("p-1", 1)); err != nil {
		t.Fatal(err)
	}
	if got := l.all()[3].header.Get("Idempotency-Key"); got == key {
		t.Errorf("a new create reused the key %q", key)
	}
}

// streamFront serves the event stream of ticket t-1 from a script: it
// sends the versions past the request's cursor, then drops the connection
// if drop, or closes the stream after a terminal version, as the suite
// does.
func streamFront(name string, l *reqLog, versions []contracts.Ticket, drop bool) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.note(name, r)
		if r.URL.Path != "/v1/tickets/t-1/events" {
			apiclienttest.WriteProblem(w, http.StatusNotFound, contracts.CodeNotFound, 0)
			return
		}
		var after int64
		if v := r.Header.Get("Last-Event-ID"); v != "" {
			after, _ = strconv.ParseInt(v, 10, 64)
			// This front replays the last version the client has: a
			// client must not hand it on twice.
			after--
		} else {
			after, _ = strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for _, t := range versions {
			if t.Version <= after {
				continue
			}
			b, _ := json.Marshal(t)
			fmt.Fprintf(w, "id: %d\nevent: ticket\ndata: %s\n\n: ping\n\n", t.Version, b)
			rc.Flush()
			if t.Status.Terminal() {
				return
			}
		}
		if drop {
			if conn, _, err := rc.Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		<-r.Context().Done()
	}))
}

// TestWatchResumesOnAnotherFront: the stream drops after version 2; the
// watch resumes on the second front with Last-Event-ID 2, hands on each
// version once though that front sends 2 again, and ends after the
// terminal version.
func TestWatchResumesOnAnotherFront(t *testing.T) {
	var l reqLog
	all := []contracts.Ticket{ticketAt(1, contracts.StatusSearching), ticketAt(2, contracts.StatusMatched), ticketAt(3, contracts.StatusAssigned)}
	a := streamFront("a", &l, all[:2], true)
	b := streamFront("b", &l, all, false)
	defer a.Close()
	defer b.Close()
	p, err := player.New(player.Config{Fronts: []string{a.URL, b.URL}, Retry: player.RetryPolicy{Sleep: (&apiclienttest.Clock{}).Sleep}})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	err = p.Watch(t.Context(), "t-1", 0, func(t contracts.Ticket) error {
		got = append(got, t.Version)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("versions handed on %v; want [1 2 3], each once", got)
	}
	reqs := l.all()
	if len(reqs) != 2 || reqs[0].front != "a" || reqs[1].front != "b" {
		t.Fatalf("requests %+v; want one to each front", reqs)
	}
	if reqs[0].query != "after=0" || reqs[0].header.Get("Last-Event-ID") != "" {
		t.Errorf("first request ?%s, Last-Event-ID %q; want after=0", reqs[0].query, reqs[0].header.Get("Last-Event-ID"))
	}
	if got := reqs[1].header.Get("Last-Event-ID"); got != "2" {
		t.Errorf("resumed with Last-Event-ID %q; want 2", got)
	}
}

// TestWaitFallsBack: a suite that does not serve the stream (404, 405) is
// long-polled instead, with the stage as ?until.
func TestWaitFallsBack(t *testing.T) {
	tests := []struct {
		name      string
		refusal   int
		until     contracts.Status
		wantUntil string
		answers   []contracts.Ticket // the polls' answers, in turn
	}{
		{"404 until assigned", http.StatusNotFound, contracts.StatusAssigned, "assigned",
			[]contracts.Ticket{ticketAt(3, contracts.StatusAssigned)}},
		{"405 until matched", http.StatusMethodNotAllowed, contracts.StatusMatched, "matched",
			[]contracts.Ticket{ticketAt(2, contracts.StatusMatched)}},
		{"a poll that times out is polled again", http.StatusNotFound, contracts.StatusAssigned, "assigned",
			[]contracts.Ticket{ticketAt(1, contracts.StatusSearching), ticketAt(1, contracts.StatusSearching), ticketAt(4, contracts.StatusExpired)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				l     reqLog
				polls atomic.Int64
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				l.note("a", r)
				if r.URL.Path != "/v1/tickets/t-1" {
					apiclienttest.WriteProblem(w, tt.refusal, contracts.CodeNotFound, 0)
					return
				}
				n := polls.Add(1)
				apiclienttest.WriteJSON(w, http.StatusOK, tt.answers[min(int(n), len(tt.answers))-1])
			}))
			defer srv.Close()
			p, err := player.New(player.Config{Fronts: []string{srv.URL}, PollWait: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			tk, err := p.Wait(t.Context(), "t-1", tt.until)
			want := tt.answers[len(tt.answers)-1]
			if err != nil || tk.Version != want.Version || tk.Status != want.Status {
				t.Fatalf("Wait = %+v, %v; want version %d", tk, err, want.Version)
			}
			reqs := l.all()
			if len(reqs) != 1+len(tt.answers) {
				t.Fatalf("%d requests; want the stream and %d polls", len(reqs), len(tt.answers))
			}
			for i, r := range reqs[1:] {
				q, _ := parseQuery(r.query)
				wantAfter := "0"
				if i > 0 {
					wantAfter = "1"
				}
				if q["until"] != tt.wantUntil || q["wait"] != "5s" || q["after"] != wantAfter {
					t.Errorf("poll %d: ?%s; want until=%s, wait=5s, after=%s", i+1, r.query, tt.wantUntil, wantAfter)
				}
			}
		})
	}
}

func parseQuery(raw string) (map[string]string, error) {
	out := map[string]string{}
	req, err := http.NewRequest(http.MethodGet, "/?"+raw, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range req.URL.Query() {
		out[k] = v[0]
	}
	return out, nil
}

package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/store"
)

func TestWriteProblem(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     int
		code       string
		ticketID   string
		wantDetail bool
	}{
		{"bad request", fmt.Errorf("%w: players must list at least one player", contracts.ErrBadRequest), 400, contracts.CodeBadRequest, "", true},
		{"unknown queue", fmt.Errorf("%w: %q", ErrUnknownQueue, "chess"), 400, contracts.CodeUnknownQueue, "", true},
		{"body too large", fmt.Errorf("reading body: %w", &http.MaxBytesError{Limit: 10}), 413, contracts.CodeBodyTooLarge, "", true},
		{"not found", fmt.Errorf("reading ticket: %w", store.ErrNotFound), 404, contracts.CodeNotFound, "", true},
		{"player busy", fmt.Errorf("creating ticket: %w", &store.PlayerBusyError{PlayerID: "p-1", TicketID: "t-9"}), 409, contracts.CodePlayerHasTicket, "t-9", true},
		{"matched", &store.ConflictError{TicketID: "t-1", Status: contracts.StatusMatched}, 409, contracts.CodeTicketMatched, "", true},
		{"assigned", fmt.Errorf("cancelling: %w", &store.ConflictError{TicketID: "t-1", Status: contracts.StatusAssigned}), 409, contracts.CodeTicketMatched, "", true},
		{"expired", &store.ConflictError{TicketID: "t-1", Status: contracts.StatusExpired}, 409, contracts.CodeConflict, "", true},
		{"plain conflict", store.ErrConflict, 409, contracts.CodeConflict, "", true},
		{"unavailable", fmt.Errorf("%w: publishing: dial tcp 10.0.0.1:5672: refused", ErrUnavailable), 503, contracts.CodeUnavailable, "", false},
		{"internal", errors.New("redis: unexpected reply from 10.0.0.2"), 500, contracts.CodeInternal, "", false},
		{"outcome unknown", fmt.Errorf("%w: creating ticket: EOF from 10.0.0.2:6379", ErrOutcomeUnknown), 503, contracts.CodeOutcomeUnknown, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			r := chi.NewRouter()
			r.Get("/v1/things/{id}", func(w http.ResponseWriter, r *http.Request) {
				WriteProblem(w, r, log, tt.err)
			})
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/things/x", nil))

			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d", rec.Code, tt.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != contracts.ProblemContentType {
				t.Errorf("Content-Type = %q", ct)
			}
			var p contracts.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if p.Code != tt.code || p.Type != contracts.ProblemTypeBase+tt.code || p.Status != tt.status ||
				p.Title != http.StatusText(tt.status) || p.TicketID != tt.ticketID {
				t.Errorf("problem = %+v", p)
			}
			if got := p.Detail != ""; got != tt.wantDetail {
				t.Errorf("detail = %q, want detail shown: %v", p.Detail, tt.wantDetail)
			}
			if loc := rec.Header().Get("Location"); tt.ticketID != "" && loc != "/v1/tickets/"+tt.ticketID {
				t.Errorf("Location = %q", loc)
			}
			if tt.status >= 500 {
				if !strings.Contains(logs.String(), "method=GET") || !strings.Contains(logs.String(), "route=/v1/things/{id}") {
					t.Errorf("log lacks method and route: %s", logs.String())
				}
			} else if logs.Len() != 0 {
				t.Errorf("client error logged: %s", logs.String())
			}
		})
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSON(rec, http.StatusCreated, map[string]int{"a": 1})
	if rec.Code != http.StatusCreated || rec.Header().Get("Content-Type") != "application/json" ||
		strings.TrimSpace(rec.Body.String()) != `{"a":1}` {
		t.Errorf("got %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
}

func TestParsePoll(t *testing.T) {
	const maxWait = 30 * time.Second
	tests := []struct {
		query string
		want  Poll
		bad   bool
	}{
		{"", Poll{}, false},
		{"wait=10s", Poll{Wait: 10 * time.Second}, false},
		{"wait=0s", Poll{}, false},
		{"wait=1h", Poll{Wait: maxWait}, false},
		{"wait=1500ms&after=7", Poll{Wait: 1500 * time.Millisecond, After: 7, HasAfter: true}, false},
		{"after=0", Poll{HasAfter: true}, false},
		{"wait=10", Poll{}, true},
		{"wait=soon", Poll{}, true},
		{"wait=", Poll{}, true},
		{"wait=-1s", Poll{}, true},
		{"after=-1", Poll{}, true},
		{"after=1.5", Poll{}, true},
		{"after=x", Poll{}, true},
		{"after=", Poll{}, true},
		{"after=99999999999999999999", Poll{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			got, err := ParsePoll(httptest.NewRequest("GET", "/x?"+tt.query, nil), maxWait)
			if tt.bad {
				if !errors.Is(err, contracts.ErrBadRequest) {
					t.Fatalf("err = %v, want a bad request", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestCountRequests(t *testing.T) {
	m := metrics.NewUnregistered()
	r := chi.NewRouter()
	r.Use(CountRequests(m.HTTPRequests, m.HTTPDuration))
	r.Get("/v1/tickets/{id}", func(w http.ResponseWriter, r *http.Request) {
		if chi.URLParam(r, "id") == "missing" {
			WriteProblem(w, r, nil, store.ErrNotFound)
			return
		}
		w.Write([]byte("ok"))
	})
	for _, path := range []string{"/v1/tickets/a", "/v1/tickets/b", "/v1/tickets/missing", "/nowhere"} {
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	// A method no API knows is labelled other, so that clients cannot add
	// series.
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("BREW", "/v1/tickets/a", nil))
	tests := []struct {
		route, code string
		want        float64
	}{
		{"/v1/tickets/{id}", "200", 2},
		{"/v1/tickets/{id}", "404", 1},
		{"unmatched", "404", 1},
		{"unmatched", "405", 1},
	}
	for _, tt := range tests {
		if got := counterValue(t, m.HTTPRequests.WithLabelValues(tt.route, tt.code)); got != tt.want {
			t.Errorf("%s %s = %v, want %v", tt.route, tt.code, got, tt.want)
		}
	}
	ch := make(chan prometheus.Metric, 10)
	m.HTTPRequests.Collect(ch)
	if n := len(ch); n != len(tests) {
		t.Errorf("%d series, want %d", n, len(tests))
	}
	for _, s := range []struct {
		route, method, code string
		want                uint64
	}{
		{"/v1/tickets/{id}", "GET", "200", 2},
		{"unmatched", "other", "405", 1},
	} {
		var d dto.Metric
		if err := m.HTTPDuration.WithLabelValues(s.route, s.method, s.code).(prometheus.Histogram).Write(&d); err != nil {
			t.Fatal(err)
		}
		if got := d.GetHistogram().GetSampleCount(); got != s.want {
			t.Errorf("duration of %s %s %s: %d samples, want %d", s.method, s.route, s.code, got, s.want)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestStatusWriterUnwraps(t *testing.T) {
	// Long-polls extend their write deadline through the middleware.
	errc := make(chan error, 1)
	h := CountRequests(metrics.NewUnregistered().HTTPRequests, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		errc <- http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute))
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := <-errc; err != nil {
		t.Errorf("SetWriteDeadline through CountRequests: %v", err)
	}
}

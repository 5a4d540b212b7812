package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/assigner/gameserver"
	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/apiclient/apiclienttest"
)

// TestEndMatchRetries: a match whose DELETE fails is ended once the
// assigner answers again, and every failed try is counted. Before, the
// fleet forgot it, and under faults the leaked slots filled every server.
func TestEndMatchRetries(t *testing.T) {
	tests := []struct {
		name     string
		failures int64
		final    int // the answer once the failures are over
	}{
		{"assigner back after an outage", 3, http.StatusNoContent},
		{"an earlier try ended it", 2, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodDelete || r.URL.Path != "/v1/servers/gs-1/matches/m-1" {
					t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
				}
				if calls.Add(1) <= tt.failures {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.WriteHeader(tt.final)
			}))
			defer srv.Close()
			client := newClient(http.DefaultTransport.(*http.Transport), []string{srv.URL}, srv.URL)
			f := &fleet{client: client, retrySleep: (&apiclienttest.Clock{}).Sleep}
			rec := NewRecorder(time.Now(), time.Now())
			f.rec.Store(rec)
			gs, err := f.serverClient("gs-1", contracts.ServerRequest{})
			if err != nil {
				t.Fatal(err)
			}
			f.endMatch(t.Context(), gs, "m-1")
			if got, want := calls.Load(), tt.failures+1; got != want {
				t.Errorf("%d DELETEs; want %d", got, want)
			}
			if f.ended.Load() != 1 {
				t.Errorf("matches ended = %d; want 1", f.ended.Load())
			}
			if got := client.Requests(); got != tt.failures+1 {
				t.Errorf("%d requests counted; want %d", got, tt.failures+1)
			}
			if got := rec.snapshot().errors["end match: 503"]; got != tt.failures {
				t.Errorf("errors %v; want %d of kind \"end match: 503\"", rec.snapshot().errors, tt.failures)
			}
		})
	}
}

func TestFleetError(t *testing.T) {
	refused := &gameserver.APIError{Method: http.MethodPut, Path: "/v1/servers/gs-1", Err: errors.New("dial: connection refused")}
	tests := []struct {
		err  error
		want string
	}{
		{&gameserver.APIError{Method: http.MethodPut, Path: "/v1/servers/gs-1", Status: 503, Code: contracts.CodeUnavailable}, "register: 503 unavailable"},
		{&gameserver.APIError{Method: http.MethodGet, Path: "/v1/servers/gs-1/allocations/events?after=3", Status: 401, Code: contracts.CodeInvalidToken}, "allocations: 401 invalid_token"},
		{&gameserver.APIError{Method: http.MethodGet, Path: "/v1/servers/gs-1/allocations?wait=30s&after=3", Status: 502}, "allocations: 502"},
		{&gameserver.APIError{Method: http.MethodDelete, Path: "/v1/servers/gs-1/matches/m-1", Status: 503}, "end match: 503"},
		{&gameserver.APIError{Method: http.MethodDelete, Path: "/v1/servers/gs-1", Status: 404, Code: contracts.CodeNotFound}, "drain: 404 not_found"},
		{&gameserver.APIError{Method: http.MethodGet, Path: "/v1/servers/gs-1", Err: context.DeadlineExceeded}, "server: timeout"},
		{refused, "register: transport"},
	}
	for _, tt := range tests {
		if got := errorKind(fleetError(tt.err)); got != tt.want {
			t.Errorf("kind of %v = %q; want %q", tt.err, got, tt.want)
		}
	}
}

package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestEndMatchRetries: a match whose DELETE fails is ended once the
// assigner answers again. Before, the fleet forgot it, and under faults
// the leaked slots filled every server.
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
			f := &fleet{
				client: newClient(http.DefaultTransport.(*http.Transport), []string{srv.URL}, srv.URL),
				rec:    NewRecorder(time.Now(), time.Now()),
			}
			if !f.endMatch(t.Context(), "gs-1", "m-1") {
				t.Fatal("endMatch gave up with a live context")
			}
			if got, want := calls.Load(), tt.failures+1; got != want {
				t.Errorf("%d DELETEs; want %d", got, want)
			}
			if f.ended.Load() != 1 {
				t.Errorf("matches ended = %d; want 1", f.ended.Load())
			}
		})
	}
}

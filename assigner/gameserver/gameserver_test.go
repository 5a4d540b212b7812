package gameserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/assigner/gameserver"
	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/apiclient/apiclienttest"
)

// fakeAssigner serves the game-server API for gs-1: registrations that
// last ttl, an allocations stream from a script, and drains and ends it
// counts.
type fakeAssigner struct {
	name string
	ttl  time.Duration
	// versions are the allocations the stream sends past the request's
	// cursor; then it drops the connection if drop, or stays open.
	versions []contracts.Allocations
	drop     bool
	// register, if set, answers the registrations instead.
	register func(w http.ResponseWriter, n int64) bool

	registers, drains atomic.Int64
	mu                sync.Mutex
	streams           []http.Header
	ended             []string
}

func (f *fakeAssigner) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPut && r.URL.Path == "/v1/servers/gs-1":
		n := f.registers.Add(1)
		if f.register != nil && f.register(w, n) {
			return
		}
		var req contracts.ServerRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Capacity != 2 {
			apiclienttest.WriteProblem(w, http.StatusBadRequest, contracts.CodeBadRequest, 0)
			return
		}
		apiclienttest.WriteJSON(w, http.StatusOK, contracts.Server{ID: "gs-1", Address: req.Address, Region: req.Region, Capacity: req.Capacity,
			ExpiresAt: time.Now().Add(f.ttl)})
	case r.Method == http.MethodDelete && r.URL.Path == "/v1/servers/gs-1":
		f.drains.Add(1)
		apiclienttest.WriteJSON(w, http.StatusOK, contracts.Server{ID: "gs-1", Draining: true})
	case r.Method == http.MethodDelete:
		f.mu.Lock()
		f.ended = append(f.ended, r.URL.Path)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/v1/servers/gs-1/allocations/events":
		f.stream(w, r)
	default:
		apiclienttest.WriteProblem(w, http.StatusNotFound, contracts.CodeNotFound, 0)
	}
}

func (f *fakeAssigner) stream(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.streams = append(f.streams, r.Header.Clone())
	f.mu.Unlock()
	var after int64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		after, _ = strconv.ParseInt(v, 10, 64)
		after-- // a front that sends the last version again
	} else {
		after, _ = strconv.ParseInt(r.URL.Query().Get("after"), 10, 64)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	for _, a := range f.versions {
		if a.Version > after {
			b, _ := json.Marshal(a)
			fmt.Fprintf(w, "id: %d\nevent: allocations\ndata: %s\n\n", a.Version, b)
		}
	}
	fmt.Fprint(w, ": ping\n\n")
	rc.Flush()
	if f.drop {
		apiclienttest.DropConn(w)
		return
	}
	<-r.Context().Done()
}

func allocs(v int64, matches ...string) contracts.Allocations {
	a := contracts.Allocations{ServerID: "gs-1", Version: v, Allocations: []contracts.Allocation{}}
	for _, m := range matches {
		a.Allocations = append(a.Allocations, contracts.Allocation{MatchID: m, Queue: "duel"})
	}
	return a
}

var registration = contracts.ServerRequest{Address: "10.0.0.7:7777", Region: "eu-west", Capacity: 2}

// TestRunDeliversEachMatchOnce: matches come over the stream; it drops
// after version 2 and resumes on the second assigner with Last-Event-ID
// 2, which sends version 2 again. Each match reaches the Handler once,
// including one that ended and one seen again in a later version; when
// Run stops, the server is drained.
func TestRunDeliversEachMatchOnce(t *testing.T) {
	all := []contracts.Allocations{allocs(1, "m-1"), allocs(2, "m-1", "m-2"), allocs(3, "m-2"), allocs(4, "m-2", "m-3")}
	a := &fakeAssigner{name: "a", ttl: time.Minute, versions: all[:2], drop: true}
	b := &fakeAssigner{name: "b", ttl: time.Minute, versions: all}
	sa, sb := httptest.NewServer(a), httptest.NewServer(b)
	defer sa.Close()
	defer sb.Close()
	var (
		mu   sync.Mutex
		got  []string
		done = make(chan struct{})
	)
	gs, err := gameserver.New(gameserver.Config{ID: "gs-1", URLs: []string{sa.URL, sb.URL}, Registration: registration,
		Retry: gameserver.RetryPolicy{Sleep: (&apiclienttest.Clock{}).Sleep},
		Handler: func(ctx context.Context, al contracts.Allocation) {
			mu.Lock()
			got = append(got, al.MatchID)
			if len(got) == 3 {
				close(done)
			}
			mu.Unlock()
			<-ctx.Done() // the game runs until the server stops
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	runDone := make(chan error, 1)
	go func() { runDone <- gs.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not get three matches")
	}
	time.Sleep(50 * time.Millisecond) // room for a duplicate to show
	stop()
	if err := <-runDone; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got) // each Handler runs in a goroutine of its own
	if fmt.Sprint(got) != "[m-1 m-2 m-3]" {
		t.Errorf("handled %v; want m-1, m-2, m-3, each once", got)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.streams) != 1 || b.streams[0].Get("Last-Event-ID") != "2" {
		t.Errorf("second assigner's streams %v; want one resumed with Last-Event-ID 2", b.streams)
	}
	if n := a.drains.Load() + b.drains.Load(); n != 1 {
		t.Errorf("%d drains; want 1", n)
	}
}

// TestRunHeartbeats: with no Heartbeat set, Run heartbeats at a third of
// the TTL the answers show, and without a Handler it does not watch.
func TestRunHeartbeats(t *testing.T) {
	f := &fakeAssigner{ttl: 300 * time.Millisecond}
	srv := httptest.NewServer(f)
	defer srv.Close()
	gs, err := gameserver.New(gameserver.Config{ID: "gs-1", URLs: []string{srv.URL}, Registration: registration})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithTimeout(t.Context(), time.Second)
	defer stop()
	if err := gs.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// About ten in a second at 100 ms; a loaded machine may make fewer,
	// but a heartbeat at the TTL would make three.
	if n := f.registers.Load(); n < 6 || n > 12 {
		t.Errorf("%d registrations in a second with a TTL of 300 ms; want about 10", n)
	}
	if f.drains.Load() != 1 || len(f.streams) != 0 {
		t.Errorf("%d drains, %d streams; want one drain and no stream", f.drains.Load(), len(f.streams))
	}
}

// TestRunFirstRegistration: a suite that is not up yet is waited for
// (with backoff, on the fake clock, honouring its Retry-After); one that
// refuses the server for good ends Run at once.
func TestRunFirstRegistration(t *testing.T) {
	tests := []struct {
		name      string
		answer    func(w http.ResponseWriter, n int64) bool
		wantErr   error
		wantWaits int
	}{
		{"waits for the suite", func(w http.ResponseWriter, n int64) bool {
			if n <= 10 { // past the default 8 tries: Run does not give up
				apiclienttest.WriteProblem(w, http.StatusServiceUnavailable, contracts.CodeUnavailable, 1)
				return true
			}
			return false
		}, nil, 10},
		{"a bad token ends it", func(w http.ResponseWriter, n int64) bool {
			apiclienttest.WriteProblem(w, http.StatusUnauthorized, contracts.CodeInvalidToken, 0)
			return true
		}, gameserver.ErrUnauthorized, 0},
		{"another server's token ends it", func(w http.ResponseWriter, n int64) bool {
			apiclienttest.WriteProblem(w, http.StatusForbidden, contracts.CodeForbidden, 0)
			return true
		}, gameserver.ErrForbidden, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeAssigner{ttl: time.Minute, register: tt.answer}
			srv := httptest.NewServer(f)
			defer srv.Close()
			clock := &apiclienttest.Clock{}
			var reported atomic.Int64
			gs, err := gameserver.New(gameserver.Config{ID: "gs-1", URLs: []string{srv.URL}, Registration: registration,
				Retry: gameserver.RetryPolicy{Sleep: clock.Sleep}, OnError: func(error) { reported.Add(1) }})
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(t.Context())
			defer stop()
			runDone := make(chan error, 1)
			go func() { runDone <- gs.Run(ctx) }()
			if tt.wantErr != nil {
				if err := <-runDone; !errors.Is(err, tt.wantErr) {
					t.Errorf("Run = %v; want %v", err, tt.wantErr)
				}
				return
			}
			// Run is still trying past the retry policy's 8 tries.
			deadline := time.Now().Add(5 * time.Second)
			for f.registers.Load() <= 10 && time.Now().Before(deadline) {
				select {
				case err := <-runDone:
					t.Fatalf("Run gave up after %d registrations: %v", f.registers.Load(), err)
				case <-time.After(time.Millisecond):
				}
			}
			stop()
			if err := <-runDone; err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v", err)
			}
			waits := clock.Waits()
			if len(waits) < tt.wantWaits {
				t.Fatalf("waits %v; want %d", waits, tt.wantWaits)
			}
			for _, w := range waits[:tt.wantWaits] {
				if w < time.Second {
					t.Errorf("waited %v, less than the Retry-After", w)
				}
			}
			if reported.Load() < int64(tt.wantWaits) {
				t.Errorf("%d failures reported; want every one of the %d", reported.Load(), tt.wantWaits)
			}
		})
	}
}

// TestEnd: a lost answer followed by a 404 is the lost try's success; a
// 404 otherwise is ErrNotFound; a 503 is retried.
func TestEnd(t *testing.T) {
	tests := []struct {
		name    string
		answers []int // 0: drop the connection
		wantErr error
	}{
		{"ended", []int{204}, nil},
		{"after an outage", []int{503, 503, 204}, nil},
		{"the lost try ended it", []int{0, 404}, nil},
		{"not hosted", []int{404}, gameserver.ErrNotFound},
		{"not hosted, after a refusal", []int{503, 404}, gameserver.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodDelete || r.URL.Path != "/v1/servers/gs-1/matches/m-1" {
					t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
				}
				switch s := tt.answers[min(int(n.Add(1)), len(tt.answers))-1]; s {
				case 0:
					apiclienttest.DropConn(w)
				case 204:
					w.WriteHeader(s)
				default:
					apiclienttest.WriteProblem(w, s, "", 0)
				}
			}))
			defer srv.Close()
			gs, err := gameserver.New(gameserver.Config{ID: "gs-1", URLs: []string{srv.URL}, Retry: gameserver.RetryPolicy{Sleep: (&apiclienttest.Clock{}).Sleep}})
			if err != nil {
				t.Fatal(err)
			}
			err = gs.End(t.Context(), "m-1")
			if (tt.wantErr == nil) != (err == nil) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Errorf("End = %v; want %v", err, tt.wantErr)
			}
			if got := n.Load(); got != int64(len(tt.answers)) {
				t.Errorf("%d tries; want %d", got, len(tt.answers))
			}
		})
	}
}

// TestWatchAllocationsFallsBack: a suite without the stream is
// long-polled from the last version seen.
func TestWatchAllocationsFallsBack(t *testing.T) {
	var (
		mu      sync.Mutex
		queries []string
	)
	versions := []contracts.Allocations{allocs(1, "m-1"), allocs(1, "m-1"), allocs(2)}
	var polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/servers/gs-1/allocations" {
			apiclienttest.WriteProblem(w, http.StatusNotFound, contracts.CodeNotFound, 0)
			return
		}
		mu.Lock()
		queries = append(queries, r.URL.Query().Get("after"))
		mu.Unlock()
		apiclienttest.WriteJSON(w, http.StatusOK, versions[min(int(polls.Add(1)), len(versions))-1])
	}))
	defer srv.Close()
	gs, err := gameserver.New(gameserver.Config{ID: "gs-1", URLs: []string{srv.URL}, PollWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	stop := errors.New("stop")
	err = gs.WatchAllocations(t.Context(), 0, func(a contracts.Allocations) error {
		got = append(got, a.Version)
		if a.Version == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("WatchAllocations = %v, versions %v; want 1, 2 and fn's error", err, got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(queries, []string{"0", "1", "1"}) {
		t.Errorf("polls after %v; want 0, 1, 1", queries)
	}
}

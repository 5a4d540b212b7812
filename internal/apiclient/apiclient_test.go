package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/apiclient/apiclienttest"
)

// answer is one scripted answer of a test server.
type answer struct {
	status     int
	code       string
	retryAfter int
	drop       bool // close the connection without answering
}

// script serves its answers in turn, the last one for ever after, and
// records the requests.
type script struct {
	mu      sync.Mutex
	answers []answer
	got     []*http.Request
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	a := s.answers[min(len(s.got), len(s.answers)-1)]
	s.got = append(s.got, r.Clone(context.Background()))
	s.mu.Unlock()
	switch {
	case a.drop:
		apiclienttest.DropConn(w)
	case a.status == http.StatusOK:
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"t-1","status":"searching","version":1}`))
	default:
		if a.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(a.retryAfter))
		}
		w.Header().Set("Content-Type", contracts.ProblemContentType)
		w.WriteHeader(a.status)
		json.NewEncoder(w).Encode(contracts.Problem{Status: a.status, Code: a.code, Detail: "scripted"})
	}
}

func (s *script) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.got...)
}

func newTestClient(t *testing.T, clock *apiclienttest.Clock, tries int, bases ...string) *Client {
	t.Helper()
	c, err := New(Config{Bases: bases, Retry: RetryPolicy{Tries: tries, Sleep: clock.Sleep},
		Token: func(context.Context) (string, error) { return "tok", nil }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDoRetries: what is retried, how long each wait is at least, and
// what the caller gets in the end.
func TestDoRetries(t *testing.T) {
	tests := []struct {
		name      string
		answers   []answer
		tries     int
		wantTries int
		wantErr   error // nil: success
		// minWaits are the least each wait may be: the Retry-After.
		minWaits []time.Duration
	}{
		{"at once", []answer{{status: 200}}, 0, 1, nil, nil},
		{"503 then ok", []answer{{status: 503, code: "unavailable"}, {status: 200}}, 0, 2, nil, []time.Duration{0}},
		{"Retry-After honoured", []answer{{status: 503, code: "overloaded", retryAfter: 3}, {status: 429, code: "rate_limited", retryAfter: 2}, {status: 200}}, 0, 3, nil,
			[]time.Duration{3 * time.Second, 2 * time.Second}},
		{"connection lost then ok", []answer{{drop: true}, {drop: true}, {status: 200}}, 0, 3, nil, []time.Duration{0, 0}},
		{"502 and 504 too", []answer{{status: 502}, {status: 504}, {status: 200}}, 0, 3, nil, []time.Duration{0, 0}},
		{"400 is not retried", []answer{{status: 400, code: "bad_request"}}, 0, 1, ErrBadRequest, nil},
		{"401 is not retried", []answer{{status: 401, code: "invalid_token"}}, 0, 1, ErrUnauthorized, nil},
		{"500 is not retried", []answer{{status: 500, code: "internal"}}, 0, 1, nil, nil},
		{"tries run out", []answer{{status: 503, code: "unavailable"}}, 3, 3, ErrUnavailable, []time.Duration{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{answers: tt.answers}
			srv := httptest.NewServer(s)
			defer srv.Close()
			clock := &apiclienttest.Clock{}
			c := newTestClient(t, clock, tt.tries, srv.URL)
			var out struct{ ID string }
			res, err := c.Do(t.Context(), Call{Method: http.MethodGet, Path: "/v1/tickets/t-1", Want: http.StatusOK}, &out)
			last := tt.answers[len(tt.answers)-1]
			switch {
			case last.status == http.StatusOK:
				if err != nil || out.ID != "t-1" || res.Tries != tt.wantTries {
					t.Fatalf("Do = %+v, %v, %+v; want t-1 after %d tries", res, err, out, tt.wantTries)
				}
			case err == nil:
				t.Fatal("Do succeeded; want an error")
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("error %v; want %v", err, tt.wantErr)
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status != last.status || e.Code != last.code {
					t.Errorf("error %#v; want an *Error of %d %s", err, last.status, last.code)
				}
			}
			if got := len(s.requests()); got != tt.wantTries {
				t.Errorf("%d requests; want %d", got, tt.wantTries)
			}
			waits := clock.Waits()
			if len(waits) != len(tt.minWaits) {
				t.Fatalf("waits %v; want %d of them", waits, len(tt.minWaits))
			}
			for i, w := range waits {
				if w < tt.minWaits[i] || w > max(tt.minWaits[i], DefaultCap) {
					t.Errorf("wait %d = %v; want at least %v (and at most the cap)", i, w, tt.minWaits[i])
				}
			}
			for _, r := range s.requests() {
				if r.Header.Get("Authorization") != "Bearer tok" {
					t.Errorf("Authorization %q", r.Header.Get("Authorization"))
				}
			}
		})
	}
}

// TestDoMovesOn: a base that does not answer or answers 5xx sends the
// call, and the next calls, to the next base; a 429 does not, since the
// limit is the caller's wherever it goes.
func TestDoMovesOn(t *testing.T) {
	tests := []struct {
		name      string
		first     answer
		wantFirst int // requests the first base gets, over two calls
	}{
		{"503 moves on", answer{status: 503}, 1},
		{"no answer moves on", answer{drop: true}, 1},
		{"429 stays", answer{status: 429, retryAfter: 1}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &script{answers: []answer{tt.first, {status: 200}}}
			b := &script{answers: []answer{{status: 200}}}
			sa, sb := httptest.NewServer(a), httptest.NewServer(b)
			defer sa.Close()
			defer sb.Close()
			c := newTestClient(t, &apiclienttest.Clock{}, 0, sa.URL, sb.URL)
			for range 2 {
				if _, err := c.Do(t.Context(), Call{Method: http.MethodGet, Path: "/x", Want: http.StatusOK}, nil); err != nil {
					t.Fatal(err)
				}
			}
			if got := len(a.requests()); got != tt.wantFirst {
				t.Errorf("first base got %d requests, second %d; want %d on the first", got, len(b.requests()), tt.wantFirst)
			}
		})
	}
}

func TestDoRefusedBase(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // connection refused
	live := &script{answers: []answer{{status: 200}}}
	srv := httptest.NewServer(live)
	defer srv.Close()
	c := newTestClient(t, &apiclienttest.Clock{}, 0, dead.URL, srv.URL)
	var errs atomic.Int64
	c.onError = func(error) { errs.Add(1) }
	res, err := c.Do(t.Context(), Call{Method: http.MethodGet, Path: "/x", Want: http.StatusOK}, nil)
	if err != nil || res.Front != srv.URL || res.Tries != 2 || errs.Load() != 1 {
		t.Errorf("Do = %+v, %v, %d errors reported; want the live base on the second try, one error", res, err, errs.Load())
	}
}

// TestGoneAfterLoss: a 404 answering the retry of a try that got no
// answer is the lost try's success; a 404 after answered tries is not.
func TestGoneAfterLoss(t *testing.T) {
	tests := []struct {
		name    string
		answers []answer
		wantErr bool
	}{
		{"lost, then gone", []answer{{drop: true}, {status: 404, code: "not_found"}}, false},
		{"refused, then gone", []answer{{status: 503}, {status: 404, code: "not_found"}}, true},
		{"gone at once", []answer{{status: 404, code: "not_found"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(&script{answers: tt.answers})
			defer srv.Close()
			c := newTestClient(t, &apiclienttest.Clock{}, 0, srv.URL)
			_, err := c.Do(t.Context(), Call{Method: http.MethodDelete, Path: "/m", Want: http.StatusNoContent, GoneAfterLoss: true}, nil)
			if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrNotFound)) {
				t.Errorf("Do = %v; want error %v", err, tt.wantErr)
			}
		})
	}
}

// TestDoContextEnds: a caller whose context ends gets its error, with no
// retry and no report.
func TestDoContextEnds(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := newTestClient(t, &apiclienttest.Clock{}, 0, srv.URL)
	reported := false
	c.onError = func(error) { reported = true }
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Do(ctx, Call{Method: http.MethodGet, Path: "/x", Want: http.StatusOK}, nil)
	if !errors.Is(err, context.DeadlineExceeded) || Retryable(err) || reported {
		t.Errorf("Do = %v (retryable %v, reported %v); want the context's deadline, not retryable, unreported", err, Retryable(err), reported)
	}
}

func TestTokenFailure(t *testing.T) {
	s := &script{answers: []answer{{status: 200}}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	boom := errors.New("the studio's login is down")
	c, err := New(Config{Bases: []string{srv.URL}, Token: func(context.Context) (string, error) { return "", boom }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(t.Context(), Call{Method: http.MethodGet, Path: "/x", Want: http.StatusOK}, nil)
	if !errors.Is(err, boom) || len(s.requests()) != 0 {
		t.Errorf("Do = %v after %d requests; want the token's error and no request", err, len(s.requests()))
	}
}

func TestNewChecksBases(t *testing.T) {
	for _, bases := range [][]string{nil, {"localhost:8080"}, {"ftp://x"}, {"http://x?y=1"}} {
		if _, err := New(Config{Bases: bases}); err == nil {
			t.Errorf("New(%q) took it", bases)
		}
	}
	c, err := New(Config{Bases: []string{"http://x/prefix/"}})
	if err != nil || c.bases[0] != "http://x/prefix" {
		t.Errorf("New = %v, %v", c, err)
	}
}

func TestErrorIs(t *testing.T) {
	tests := []struct {
		e    *Error
		is   []error
		isnt []error
	}{
		{&Error{Status: 409, Code: contracts.CodePlayerHasTicket, TicketID: "t-1"}, []error{ErrPlayerHasTicket}, []error{ErrTicketMatched, ErrConflict, ErrNotFound}},
		{&Error{Status: 409, Code: contracts.CodeTicketMatched}, []error{ErrTicketMatched}, []error{ErrPlayerHasTicket}},
		{&Error{Status: 404, Code: contracts.CodeNotFound}, []error{ErrNotFound}, []error{ErrUnavailable}},
		{&Error{Status: 503, Code: contracts.CodeOverloaded}, []error{ErrUnavailable}, []error{ErrRateLimited}},
		{&Error{Status: 502}, []error{ErrUnavailable}, nil},
		{&Error{Status: 0, Err: context.Canceled}, []error{context.Canceled}, []error{ErrUnavailable, ErrNotFound}},
	}
	for _, tt := range tests {
		for _, target := range tt.is {
			if !errors.Is(tt.e, target) {
				t.Errorf("%v is not %v", tt.e, target)
			}
		}
		for _, target := range tt.isnt {
			if errors.Is(tt.e, target) {
				t.Errorf("%v is %v", tt.e, target)
			}
		}
	}
}

package player_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/quickmatch/quickmatch/internal/auth/authtest"
	"github.com/quickmatch/quickmatch/services"
)

// testSecret signs the tokens of the suites the tests start.
var testSecret = []byte("front-player-test-secret-0123456789abcdef")

// startEmbedded runs the embedded matchmaker, with auth on, inside the
// test process and returns its base URL.
func startEmbedded(t *testing.T) string {
	t.Helper()
	return startEmbeddedWith(t, "")
}

// startEmbeddedWith is startEmbedded with the queues of queuesFile.
func startEmbeddedWith(t *testing.T, queuesFile string) string {
	t.Helper()
	t.Setenv("MM_HTTP_ADDR", "127.0.0.1:0")
	t.Setenv("MM_AMQP_URL", "")
	t.Setenv("MM_REDIS_ADDR", "")
	t.Setenv("MM_QUEUES_FILE", queuesFile)
	t.Setenv("MM_AUTH", "")
	t.Setenv("MM_AUTH_HS256_SECRET", string(testSecret))
	t.Setenv("MM_AUTH_FAILURE_RATE", "0")
	cfg, err := services.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := services.New(ctx, cfg, services.All, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("matchmaker: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the matchmaker did not stop within 30 s")
		}
	})
	return "http://" + app.Addr()
}

// token returns a token callback for sub in role, as a studio's backend
// would mint it.
func token(t *testing.T, sub, role string) func(context.Context) (string, error) {
	t.Helper()
	tok, err := authtest.SignHS256(testSecret, jwt.MapClaims{"sub": sub, "role": role, "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return func(context.Context) (string, error) { return tok, nil }
}

// transport is a transport of the test's own, so that its connections
// are closed with it.
func transport(t *testing.T) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// recorder is a transport that notes each request's method, path and
// status, so that a test can tell a stream from a long-poll.
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	r.mu.Lock()
	r.seen = append(r.seen, fmt.Sprintf("%s %s %d", req.Method, req.URL.RequestURI(), status))
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// recording is an HTTP client whose requests rec notes.
func recording(t *testing.T, rec *recorder) *http.Client {
	c := transport(t)
	rec.base = c.Transport
	return &http.Client{Transport: rec}
}

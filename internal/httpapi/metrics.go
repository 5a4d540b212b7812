package httpapi

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// CountRequests is middleware that counts every answered request in c
// (metrics.HTTPRequests) by chi route pattern and status code, both bounded.
// Use it on the router itself, so that the route is known once the handler
// returns.
func CountRequests(c *prometheus.CounterVec) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			status := sw.status
			if status == 0 {
				// The handler wrote nothing, which net/http answers
				// with 200.
				status = http.StatusOK
			}
			c.WithLabelValues(Route(r), strconv.Itoa(status)).Inc()
		})
	}
}

// statusWriter remembers the status a handler sent. Unwrap lets
// http.ResponseController reach the connection beneath for write deadlines
// and flushes.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CountRequests is middleware that counts every answered request in c
// (metrics.HTTPRequests) by chi route pattern and status code, and, if d is
// set, observes its duration in d (metrics.HTTPDuration) by route, method
// and status; all bounded. Use it on the router itself, so that the route
// is known once the handler returns.
func CountRequests(c *prometheus.CounterVec, d *prometheus.HistogramVec) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			status := sw.status
			if status == 0 {
				// The handler wrote nothing, which net/http answers
				// with 200.
				status = http.StatusOK
			}
			route, code := Route(r), strconv.Itoa(status)
			c.WithLabelValues(route, code).Inc()
			if d != nil {
				d.WithLabelValues(route, methodLabel(r.Method), code).Observe(time.Since(start).Seconds())
			}
		})
	}
}

// methodLabel is r's method as a label: one of the methods the APIs know,
// or "other", since a client may send any word.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
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

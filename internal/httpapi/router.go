package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
)

var (
	errNoRoute   = &NotFoundError{What: "route"}
	errNoMethod  = errors.New("method not allowed")
	routeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
)

// NewRouter is a chi router whose own answers, for a path it does not route
// and for a method a path does not take, are problem details like every
// other error of the APIs; chi's are plain text and an empty body.
func NewRouter() *chi.Mux {
	r := chi.NewRouter()
	r.NotFound(func(w http.ResponseWriter, req *http.Request) { WriteProblem(w, req, nil, errNoRoute) })
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		// chi tells a custom handler nothing of the methods that would
		// have matched, so they are found again, for the Allow header
		// that RFC 9110 requires of a 405.
		var allowed []string
		for _, m := range routeMethods {
			if r.Match(chi.NewRouteContext(), m, req.URL.Path) {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
		}
		WriteProblem(w, req, nil, errNoMethod)
	})
	return r
}

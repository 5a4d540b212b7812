package dashboard

import (
	"embed"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/quickmatch/quickmatch/internal/auth"
	"github.com/quickmatch/quickmatch/internal/httpapi"
)

// page is the dashboard itself: plain HTML, CSS and JavaScript, embedded
// as they are written, with nothing to build.
//
//go:embed page
var page embed.FS

// assets are the files the page loads, by their name under /dashboard/,
// with their types.
var assets = map[string]string{
	"app.js":    "text/javascript; charset=utf-8",
	"style.css": "text/css; charset=utf-8",
}

// contentSecurity lets the page run only its own script and style and
// talk only to its own origin, so that nothing a ticket or a server
// record holds can run in it, and no other site can frame it.
const contentSecurity = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Mount adds the dashboard's routes to r: the page and its assets, which
// hold no data and take no token, and GET /v1/dashboard, for services
// only (with auth off, everyone is the anonymous service).
func (d *Dashboard) Mount(r chi.Router) {
	r.Get("/dashboard", d.serveFile("index.html", "text/html; charset=utf-8"))
	r.Get("/dashboard/{asset}", func(w http.ResponseWriter, req *http.Request) {
		name := chi.URLParam(req, "asset")
		typ, ok := assets[name]
		if !ok {
			httpapi.WriteProblem(w, req, d.log, &httpapi.NotFoundError{What: "dashboard file"})
			return
		}
		d.serveFile(name, typ)(w, req)
	})
	r.Group(func(r chi.Router) {
		if d.cfg.Auth != nil {
			r.Use(d.cfg.Auth.Handler)
		}
		r.Get("/v1/dashboard", d.serveData)
	})
}

func (d *Dashboard) serveFile(name, typ string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := page.ReadFile("page/" + name)
		if err != nil {
			httpapi.WriteProblem(w, r, d.log, fmt.Errorf("reading the embedded %s: %w", name, err))
			return
		}
		h := w.Header()
		h.Set("Content-Type", typ)
		h.Set("Content-Security-Policy", contentSecurity)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// A new build may change the page: the browser asks again.
		h.Set("Cache-Control", "no-cache")
		w.Write(body)
	}
}

func (d *Dashboard) serveData(w http.ResponseWriter, r *http.Request) {
	if _, err := httpapi.Caller(r, auth.RoleService); err != nil {
		httpapi.WriteProblem(w, r, d.log, err)
		return
	}
	view, err := d.read(r.Context())
	if err != nil {
		httpapi.WriteProblem(w, r, d.log, fmt.Errorf("%w: %w", httpapi.ErrUnavailable, err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, view)
}

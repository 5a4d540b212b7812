// Package httpapi is the HTTP plumbing the player and game-server APIs share:
// one table that turns errors into RFC 9457 problem details, JSON answers,
// the long-poll query parameters, and request metrics.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

var (
	// ErrUnknownQueue: the request names a matchmaking queue the
	// deployment does not offer.
	ErrUnknownQueue = errors.New("unknown queue")
	// ErrUnavailable: a backing service (broker or store) could not do its
	// part; the client may retry later.
	ErrUnavailable = errors.New("service unavailable")
	// ErrOverloaded: the service has as much work in progress as it takes;
	// the client may retry after a pause.
	ErrOverloaded = errors.New("overloaded")
)

// retryAfter is the pause an overloaded service asks of its clients, in
// seconds.
const retryAfter = "1"

// rule maps the errors that match to a status and problem code. The extra
// hook fills in what depends on the particular error.
type rule struct {
	match  func(error) bool
	status int
	code   string
	extra  func(err error, w http.ResponseWriter, p *contracts.Problem)
}

func is(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

// rules is the one place that decides how an error is answered. The first
// rule that matches wins, so the more specific errors come first.
var rules = []rule{
	{
		// Before bad_request: the decoder reports an oversized body as a
		// read error, which must not read as a malformed request.
		match: func(err error) bool {
			var mb *http.MaxBytesError
			return errors.As(err, &mb)
		},
		status: http.StatusRequestEntityTooLarge,
		code:   contracts.CodeBodyTooLarge,
	},
	{match: is(contracts.ErrBadRequest), status: http.StatusBadRequest, code: contracts.CodeBadRequest},
	{match: is(contracts.ErrUnsupportedMediaType), status: http.StatusUnsupportedMediaType, code: contracts.CodeUnsupportedType},
	{match: is(ErrUnknownQueue), status: http.StatusBadRequest, code: contracts.CodeUnknownQueue},
	{match: is(store.ErrNotFound), status: http.StatusNotFound, code: contracts.CodeNotFound},
	{
		match: func(err error) bool {
			var r *store.ReplayError
			return errors.As(err, &r) && r.Mismatch
		},
		status: http.StatusUnprocessableEntity,
		code:   contracts.CodeIdempotencyMismatch,
	},
	{
		match:  is(store.ErrPlayerBusy),
		status: http.StatusConflict,
		code:   contracts.CodePlayerHasTicket,
		extra: func(err error, w http.ResponseWriter, p *contracts.Problem) {
			var busy *store.PlayerBusyError
			if errors.As(err, &busy) && busy.TicketID != "" {
				p.TicketID = busy.TicketID
				w.Header().Set("Location", TicketPath(busy.TicketID))
			}
		},
	},
	{
		match:  is(store.ErrConflict),
		status: http.StatusConflict,
		code:   contracts.CodeConflict,
		extra: func(err error, w http.ResponseWriter, p *contracts.Problem) {
			var c *store.ConflictError
			if errors.As(err, &c) && (c.Status == contracts.StatusMatched || c.Status == contracts.StatusAssigned) {
				p.Code = contracts.CodeTicketMatched
				p.Type = contracts.ProblemTypeBase + p.Code
			}
		},
	},
	{match: is(ErrUnavailable), status: http.StatusServiceUnavailable, code: contracts.CodeUnavailable},
	{
		match:  is(ErrOverloaded),
		status: http.StatusServiceUnavailable,
		code:   contracts.CodeOverloaded,
		extra: func(_ error, w http.ResponseWriter, _ *contracts.Problem) {
			w.Header().Set("Retry-After", retryAfter)
		},
	},
}

// TicketPath is the URL path of ticket id in the player API.
func TicketPath(id string) string { return "/v1/tickets/" + id }

// Problem builds the problem details that answer err, and sets any header
// that goes with them on w. It is what WriteProblem sends.
func Problem(w http.ResponseWriter, err error) contracts.Problem {
	for _, r := range rules {
		if !r.match(err) {
			continue
		}
		p := contracts.Problem{
			Type:   contracts.ProblemTypeBase + r.code,
			Title:  http.StatusText(r.status),
			Status: r.status,
			Code:   r.code,
			Detail: err.Error(),
		}
		if r.extra != nil {
			r.extra(err, w, &p)
		}
		if r.status >= 500 {
			// Whatever failed behind the service is not the client's
			// business, and may name internal hosts.
			p.Detail = ""
		}
		return p
	}
	return contracts.Problem{
		Type:   contracts.ProblemTypeBase + contracts.CodeInternal,
		Title:  http.StatusText(http.StatusInternalServerError),
		Status: http.StatusInternalServerError,
		Code:   contracts.CodeInternal,
	}
}

// WriteProblem answers r with the problem details for err. Server-side
// failures (5xx) are logged with the request's method and route, since their
// detail is hidden from the client.
func WriteProblem(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p := Problem(w, err)
	if p.Status >= 500 && log != nil {
		level := slog.LevelError
		if p.Status == http.StatusServiceUnavailable {
			level = slog.LevelWarn
		}
		if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
			// The client went away; nobody reads this answer.
			level = slog.LevelDebug
		}
		log.LogAttrs(r.Context(), level, "request failed",
			slog.String("method", r.Method),
			slog.String("route", Route(r)),
			slog.Int("status", p.Status),
			slog.Any("err", err))
	}
	body, merr := json.Marshal(p)
	if merr != nil {
		// A Problem holds only strings and an int.
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contracts.ProblemContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(p.Status)
	w.Write(append(body, '\n'))
}

// WriteJSON answers with v as JSON and the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only a programming error makes the suite's own types fail to
		// encode; say so rather than send half a body.
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// Route is the chi route pattern r matched, such as "/v1/tickets/{id}", or
// "unmatched" when no route did. Unlike the path, it is a bounded label.
func Route(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" {
			return p
		}
	}
	return "unmatched"
}

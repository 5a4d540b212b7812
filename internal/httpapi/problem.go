// Package httpapi is the HTTP plumbing the player and game-server APIs share:
// one table that turns errors into RFC 9457 problem details, JSON answers,
// the long-poll query parameters, and request metrics.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/auth"
	"github.com/quickmatch/quickmatch/internal/store"
)

var (
	// ErrUnknownQueue: the request names a matchmaking queue the
	// deployment does not offer.
	ErrUnknownQueue = errors.New("unknown queue")
	// ErrUnavailable: a backing service (broker or store) could not do its
	// part; the client may retry later.
	ErrUnavailable = errors.New("service unavailable")
	// ErrOutcomeUnknown: a change may or may not have been made, and the
	// backing store could not be asked in time (503, outcome_unknown).
	ErrOutcomeUnknown = errors.New("outcome unknown")
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
	// detail is what the client is told; the error's own text when nil,
	// which only errors written for the client may use: a store's error
	// chain says what the service was doing and must not reach a client.
	detail func(err error) string
	extra  func(err error, w http.ResponseWriter, p *contracts.Problem)
}

func fixed(detail string) func(error) string { return func(error) string { return detail } }

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
		detail: fixed("the request body is too large"),
	},
	{
		match:  is(auth.ErrInvalidToken),
		status: http.StatusUnauthorized,
		code:   contracts.CodeInvalidToken,
		detail: describe,
		extra: func(_ error, w http.ResponseWriter, _ *contracts.Problem) {
			w.Header().Set("WWW-Authenticate", wwwAuthenticate)
		},
	},
	{match: is(ErrForbidden), status: http.StatusForbidden, code: contracts.CodeForbidden},
	{
		match:  is(ErrRateLimited),
		status: http.StatusTooManyRequests,
		code:   contracts.CodeRateLimited,
		extra: func(err error, w http.ResponseWriter, _ *contracts.Problem) {
			w.Header().Set("Retry-After", retryAfterSeconds(err))
		},
	},
	{match: is(contracts.ErrBadRequest), status: http.StatusBadRequest, code: contracts.CodeBadRequest},
	{match: is(contracts.ErrUnsupportedMediaType), status: http.StatusUnsupportedMediaType, code: contracts.CodeUnsupportedType},
	{match: is(ErrUnknownQueue), status: http.StatusBadRequest, code: contracts.CodeUnknownQueue},
	{match: is(ErrUnknownRegion), status: http.StatusBadRequest, code: contracts.CodeUnknownRegion},
	{
		match:  is(store.ErrNotFound),
		status: http.StatusNotFound,
		code:   contracts.CodeNotFound,
		detail: func(err error) string {
			var nf *NotFoundError
			if errors.As(err, &nf) {
				return nf.Error()
			}
			return "not found"
		},
	},
	{
		match: func(err error) bool {
			var r *store.ReplayError
			return errors.As(err, &r) && r.Mismatch
		},
		status: http.StatusUnprocessableEntity,
		code:   contracts.CodeIdempotencyMismatch,
		detail: fixed("this Idempotency-Key was used before for a different request"),
	},
	{
		match:  is(store.ErrPlayerBusy),
		status: http.StatusConflict,
		code:   contracts.CodePlayerHasTicket,
		detail: func(err error) string {
			var busy *store.PlayerBusyError
			if errors.As(err, &busy) {
				return fmt.Sprintf("player %s already has a live ticket", busy.PlayerID)
			}
			return "a player already has a live ticket"
		},
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
		detail: func(err error) string {
			var c *store.ConflictError
			if errors.As(err, &c) {
				return fmt.Sprintf("the ticket is %s", c.Status)
			}
			return "the change conflicts with the state it would change"
		},
		extra: func(err error, w http.ResponseWriter, p *contracts.Problem) {
			var c *store.ConflictError
			if errors.As(err, &c) && (c.Status == contracts.StatusMatched || c.Status == contracts.StatusAssigned) {
				p.Code = contracts.CodeTicketMatched
				p.Type = contracts.ProblemTypeBase + p.Code
			}
		},
	},
	{match: is(errNoMethod), status: http.StatusMethodNotAllowed, code: contracts.CodeMethodNotAllowed},
	{
		match:  is(ErrOutcomeUnknown),
		status: http.StatusServiceUnavailable,
		code:   contracts.CodeOutcomeUnknown,
		detail: func(error) string {
			return "the store stopped answering during the create, so whether the ticket was made is not known; retry with the same Idempotency-Key to learn it"
		},
		extra: func(_ error, w http.ResponseWriter, _ *contracts.Problem) {
			w.Header().Set("Retry-After", retryAfter)
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

// NotFoundError says what was not found, in words a client may read. It
// matches store.ErrNotFound under errors.Is.
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string { return "no such " + e.What }

func (e *NotFoundError) Is(target error) bool { return target == store.ErrNotFound }

// TicketPath is the URL path of ticket id in the player API.
func TicketPath(id string) string { return "/v1/tickets/" + id }

// Problem builds the problem details that answer err, and sets any header
// that goes with them on w. It is what WriteProblem sends.
func Problem(w http.ResponseWriter, err error) contracts.Problem {
	for _, r := range rules {
		if !r.match(err) {
			continue
		}
		detail := r.detail
		if detail == nil {
			detail = error.Error
		}
		p := contracts.Problem{
			Type:   contracts.ProblemTypeBase + r.code,
			Title:  http.StatusText(r.status),
			Status: r.status,
			Code:   r.code,
			Detail: detail(err),
		}
		if r.extra != nil {
			r.extra(err, w, &p)
		}
		if r.status >= 500 && r.detail == nil {
			// Whatever failed behind the service is not the client's
			// business, and may name internal hosts; a rule's own detail
			// is written for the client.
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

// ReadJSON reads r's body with decode: a body declared as anything but
// JSON is refused, and one over contracts.MaxRequestBytes cut off, before
// decode sees a byte. Its errors are for WriteProblem.
func ReadJSON[T any](w http.ResponseWriter, r *http.Request, decode func(io.Reader) (T, error)) (T, error) {
	if err := contracts.CheckJSONContentType(r.Header.Get("Content-Type")); err != nil {
		var zero T
		return zero, err
	}
	return decode(http.MaxBytesReader(w, r.Body, contracts.MaxRequestBytes))
}

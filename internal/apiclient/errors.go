package apiclient

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

// Error is a call that failed: the suite's answer, an RFC 9457 problem
// with its stable code, or no answer at all (Status 0: the connection
// failed or timed out, and Err says how). A call that got no answer may
// have been carried out all the same.
type Error struct {
	// Method and Path are the call's ("PUT", "/v1/servers/gs-1"), Front
	// the base URL it went to.
	Method, Path, Front string
	// Status is the HTTP status, 0 when no answer came.
	Status int
	// Code is the problem's stable code (contracts.Code*), "" when the
	// answer was not a problem (a proxy's, say).
	Code string
	// Detail is the problem's words, for people.
	Detail string
	// TicketID is the caller's live ticket, on a 409 player_has_ticket
	// (only when the caller is that player).
	TicketID string
	// RetryAfter is the answer's Retry-After, 0 when it had none.
	RetryAfter time.Duration
	// Err is the failure that left no answer, when Status is 0.
	Err error
}

func (e *Error) Error() string {
	call := e.Method + " " + e.Path
	if e.Status == 0 {
		return fmt.Sprintf("quickmatch: %s: no answer from %s: %v", call, e.Front, e.Err)
	}
	s := fmt.Sprintf("quickmatch: %s: %d %s", call, e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches the sentinel errors below.
func (e *Error) Is(target error) bool {
	s, ok := target.(*sentinel)
	return ok && s.match(e)
}

// Answered reports whether the suite (or a proxy) answered the call.
func (e *Error) Answered() bool { return e.Status != 0 }

// sentinel is an error that errors.Is finds in an *Error it matches.
type sentinel struct {
	msg   string
	match func(*Error) bool
}

func (s *sentinel) Error() string { return s.msg }

func status(codes ...int) func(*Error) bool {
	return func(e *Error) bool {
		for _, c := range codes {
			if e.Status == c {
				return true
			}
		}
		return false
	}
}

func code(c string) func(*Error) bool { return func(e *Error) bool { return e.Code == c } }

// Sentinels that errors.Is finds in an *Error.
var (
	ErrBadRequest      error = &sentinel{"quickmatch: bad request", status(http.StatusBadRequest)}
	ErrUnauthorized    error = &sentinel{"quickmatch: unauthorized", status(http.StatusUnauthorized)}
	ErrForbidden       error = &sentinel{"quickmatch: forbidden", status(http.StatusForbidden)}
	ErrNotFound        error = &sentinel{"quickmatch: not found", status(http.StatusNotFound)}
	ErrRateLimited     error = &sentinel{"quickmatch: rate limited", status(http.StatusTooManyRequests)}
	ErrUnavailable     error = &sentinel{"quickmatch: unavailable", status(http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout)}
	ErrPlayerHasTicket error = &sentinel{"quickmatch: a player already has a live ticket", code(contracts.CodePlayerHasTicket)}
	ErrTicketMatched   error = &sentinel{"quickmatch: the ticket is matched", code(contracts.CodeTicketMatched)}
	ErrConflict        error = &sentinel{"quickmatch: conflict", code(contracts.CodeConflict)}
)

// Retryable reports whether a call that failed with err may succeed if
// sent again: no answer came (and not because the caller's context
// ended), the suite was unavailable or overloaded (502, 503, 504), or it
// limited the caller's rate (429).
func Retryable(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Status {
	case 0:
		return e.Err != nil && !errors.Is(e.Err, errCallerDone) && !errors.Is(e.Err, errNoToken)
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// errCallerDone marks a try cut short because the caller's context ended,
// which no retry can help.
var errCallerDone = errors.New("the caller's context ended")

// movesOn reports whether a try that failed with e should send the next
// call to the next base URL: one that did not answer, or answered 5xx, may
// be down or going.
func movesOn(e *Error) bool { return e.Status == 0 || e.Status >= 500 }

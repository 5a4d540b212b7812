package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quickmatch/quickmatch/internal/auth"
)

var (
	// ErrForbidden: the caller is who it says, but its role may not make
	// this request.
	ErrForbidden = errors.New("forbidden")
	// ErrRateLimited: the caller has made too many requests of this kind;
	// a RateLimitedError says when to come back.
	ErrRateLimited = errors.New("rate limited")
	// ErrUnknownRegion: a ticket names a region the deployment does not
	// know.
	ErrUnknownRegion = errors.New("unknown region")
)

// RateLimitedError says what was limited and when the next request of that
// kind will be taken. It matches ErrRateLimited under errors.Is.
type RateLimitedError struct {
	What       string
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string { return "too many " + e.What + "; retry later" }

func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// retryAfterSeconds is the Retry-After of a limited request: whole seconds,
// rounded up, and at least one, so that a client that honours it finds a
// token waiting.
func retryAfterSeconds(err error) string {
	var rl *RateLimitedError
	if !errors.As(err, &rl) {
		return retryAfter
	}
	return strconv.Itoa(max(1, int(math.Ceil(rl.RetryAfter.Seconds()))))
}

// anonymous is every caller's principal when the deployment turned auth off:
// it may do anything, as a service may, and has no name.
var anonymous = auth.Principal{Role: auth.RoleService}

// Anonymous reports whether p is the principal of a deployment without
// auth. Verified principals always have a subject.
func Anonymous(p auth.Principal) bool { return p.Subject == "" }

// Authenticator establishes who sent each request of the APIs: it verifies
// the bearer token and puts its principal in the request's context, or
// answers 401 itself. Handlers read the principal with Caller, so a handler
// mounted without an Authenticator refuses every request.
type Authenticator struct {
	verifier *auth.Verifier
	// failures limits failed authentications by client address, so that
	// one client cannot make the service verify garbage as fast as it can
	// send it; past the limit it is answered 429.
	failures *auth.Limiter
	log      *slog.Logger
	now      func() time.Time
}

// NewAuthenticator builds an Authenticator that verifies tokens with v and
// limits each client address's failures with failures (no limit if nil).
func NewAuthenticator(v *auth.Verifier, failures *auth.Limiter, log *slog.Logger) *Authenticator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{verifier: v, failures: failures, log: log, now: time.Now}
}

// Open is the Authenticator of a deployment that turned auth off: every
// request is the anonymous principal, which may do anything.
func Open() *Authenticator { return &Authenticator{} }

// Handler wraps next so that it runs only for authenticated requests.
func (a *Authenticator) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.verifier == nil {
			next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), anonymous)))
			return
		}
		p, err := a.authenticate(r)
		if err != nil {
			if a.failures != nil {
				if ok, after := a.failures.Allow(clientAddr(r), a.now()); !ok {
					err = &RateLimitedError{What: "failed authentications from this address", RetryAfter: after}
				}
			}
			WriteProblem(w, r, a.log, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), p)))
	})
}

// queryTokenParams are where clients put tokens when they should not: URLs
// end up in logs, proxies and browser history.
var queryTokenParams = []string{"access_token", "token", "jwt"}

func (a *Authenticator) authenticate(r *http.Request) (auth.Principal, error) {
	if r.URL.RawQuery != "" {
		q := r.URL.Query()
		if slices.ContainsFunc(queryTokenParams, q.Has) {
			return auth.Principal{}, fmt.Errorf("%w: a token is taken only from the Authorization header, never from the URL", auth.ErrInvalidToken)
		}
	}
	token, err := auth.BearerToken(r.Header.Get("Authorization"))
	if err != nil {
		return auth.Principal{}, err
	}
	return a.verifier.Verify(token)
}

// clientAddr is the address a request came from, without its port: the key
// of the failed-authentication limit. Behind a proxy it is the proxy's.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Caller is the principal of r, as its Authenticator established it, if its
// role is one of roles (any role when none is given). A request that went
// through no Authenticator gets ErrInvalidToken: it is refused rather than
// served as anyone.
func Caller(r *http.Request, roles ...auth.Role) (auth.Principal, error) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		return auth.Principal{}, fmt.Errorf("%w: the request was not authenticated", auth.ErrInvalidToken)
	}
	if len(roles) > 0 && !slices.Contains(roles, p.Role) {
		return auth.Principal{}, fmt.Errorf("%w: a %s token may not call %s %s", ErrForbidden, p.Role, r.Method, Route(r))
	}
	return p, nil
}

// wwwAuthenticate is the challenge of every 401 (RFC 6750 section 3).
const wwwAuthenticate = `Bearer realm="quickmatch", error="invalid_token"`

// describe is the part of a token error a client may see: the reason the
// verifier gives, without the words every such error starts with.
func describe(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, auth.ErrInvalidToken.Error()+": "); ok {
		return rest
	}
	return msg
}

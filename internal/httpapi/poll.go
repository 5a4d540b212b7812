package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

// Poll is what a long-poll asks for: ?wait=<Go duration>&after=<version>.
type Poll struct {
	// Wait is how long to hold the request for a change, already capped
	// by the server; 0 answers at once.
	Wait time.Duration
	// After is the version the client has seen; a record at a higher
	// version is answered at once.
	After int64
	// HasAfter tells an explicit after=0 from none given.
	HasAfter bool
}

// ParsePoll reads the long-poll parameters of r, capping wait at maxWait.
// A malformed value is an error wrapping contracts.ErrBadRequest.
func ParsePoll(r *http.Request, maxWait time.Duration) (Poll, error) {
	var p Poll
	q := r.URL.Query()
	if q.Has("wait") {
		s := q.Get("wait")
		d, err := time.ParseDuration(s)
		if err != nil {
			return Poll{}, fmt.Errorf("%w: wait must be a duration such as 30s, not %q", contracts.ErrBadRequest, s)
		}
		if d < 0 {
			return Poll{}, fmt.Errorf("%w: wait must not be negative, got %s", contracts.ErrBadRequest, s)
		}
		p.Wait = min(d, max(maxWait, 0))
	}
	if q.Has("after") {
		s := q.Get("after")
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return Poll{}, fmt.Errorf("%w: after must be a non-negative integer version, not %q", contracts.ErrBadRequest, s)
		}
		p.After, p.HasAfter = v, true
	}
	return p, nil
}

// Package apiclient is the plumbing the suite's two Go clients share,
// front/player for game clients and assigner/gameserver for game servers:
// base URLs tried in turn, a bearer token from a callback on every call,
// retries with backoff and full jitter that honour Retry-After, problem
// details decoded into errors, and Server-Sent Event watches that resume
// on another base URL from the last version seen. It knows the API's
// conventions, not its routes: those are the two clients'.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

// Defaults of a Config's zero fields.
const (
	// DefaultRequestTimeout bounds one try of a call the suite does not
	// hold.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultPollWait is the wait each long-poll asks for when the suite
	// does not serve a stream; the suite caps it (MM_POLL_MAX).
	DefaultPollWait = 30 * time.Second
	// holdMargin is added to a long-poll's wait for its try's deadline:
	// the suite answers at the end of the wait, plus the time to send.
	holdMargin = 15 * time.Second
	// maxAnswer bounds a success body read: a server's allocations with
	// thousands of matches fit well inside.
	maxAnswer = 32 << 20
	// maxProblem bounds an error body read.
	maxProblem = 64 << 10
)

// Config is what a Client is built from.
type Config struct {
	// Bases are the base URLs of the API (http or https, with or without
	// a path prefix). Calls go to one until it fails as if it were down
	// (no answer, or a 5xx), then to the next, round the list.
	Bases []string
	// Token returns the bearer token of the next request; it is called
	// before every request, so that it may refresh the token before it
	// expires. Nil: requests carry no Authorization (a suite with auth
	// off).
	Token func(ctx context.Context) (string, error)
	// HTTPClient sends the requests; http.DefaultClient if nil. Its
	// Timeout must be zero, or it would cut streams: each call has a
	// deadline of its own.
	HTTPClient *http.Client
	// Retry is the retry policy; the zero value is the default.
	Retry RetryPolicy
	// RequestTimeout bounds one try of a call the suite does not hold;
	// DefaultRequestTimeout if zero.
	RequestTimeout time.Duration
	// OnError, if set, is called with the error of every failed try and
	// every lost stream, including those retried, for logs and metrics.
	// It is not called for failures caused by the caller's context
	// ending. It must not block.
	OnError func(error)
}

// Client makes calls to the API under a Config. It is safe for
// concurrent use.
type Client struct {
	bases   []string
	cur     atomic.Uint64 // index of the base calls go to, round the list
	token   func(ctx context.Context) (string, error)
	http    *http.Client
	retry   RetryPolicy
	timeout time.Duration
	onError func(error)
}

// New checks cfg and builds a Client.
func New(cfg Config) (*Client, error) {
	c := &Client{token: cfg.Token, http: cfg.HTTPClient, retry: cfg.Retry, timeout: cfg.RequestTimeout, onError: cfg.OnError}
	if len(cfg.Bases) == 0 {
		return nil, errors.New("quickmatch: no base URL")
	}
	for _, b := range cfg.Bases {
		u, err := url.Parse(b)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("quickmatch: base URL %q: want http(s)://host[:port][/prefix]", b)
		}
		c.bases = append(c.bases, strings.TrimRight(b, "/"))
	}
	if c.http == nil {
		c.http = http.DefaultClient
	}
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	return c, nil
}

// Retry is the client's retry policy.
func (c *Client) Retry() RetryPolicy { return c.retry }

// base returns the base calls go to now, and its index.
func (c *Client) base() (string, uint64) {
	i := c.cur.Load()
	return c.bases[i%uint64(len(c.bases))], i
}

// moveOn sends the next calls past base i, unless another call has moved
// them already.
func (c *Client) moveOn(i uint64) { c.cur.CompareAndSwap(i, i+1) }

func (c *Client) report(ctx context.Context, err error) {
	if c.onError != nil && ctx.Err() == nil {
		c.onError(err)
	}
}

// Call is one call of the API.
type Call struct {
	Method string
	// Path is the escaped path, with its query if any.
	Path string
	// Body is the JSON body, or nil.
	Body   []byte
	Header http.Header
	// Want is the status of success.
	Want int
	// Hold is how long the suite may hold the call (a long-poll's wait);
	// it lengthens the try's deadline.
	Hold time.Duration
	// GoneAfterLoss: a 404 answering a retry after a try that got no
	// answer means that try did the work (a match it ended), and is a
	// success.
	GoneAfterLoss bool
}

// Result is what a successful call leaves beside its decoded body.
type Result struct {
	Header http.Header
	Front  string
	Tries  int
}

// Do makes call, trying it again under the retry policy while it fails in
// a way a retry may mend (see Retryable), and decodes the JSON of a
// successful answer into out (unless out is nil). Every call the clients
// make may be retried: reads, long-polls, PUTs and DELETEs are idempotent,
// and creates carry an Idempotency-Key. The error is an *Error.
func (c *Client) Do(ctx context.Context, call Call, out any) (Result, error) {
	unanswered := false
	for n := 1; ; n++ {
		front, i := c.base()
		h, err := c.try(ctx, front, call, out)
		if err == nil {
			return Result{Header: h, Front: front, Tries: n}, nil
		}
		e := err.(*Error)
		if ctx.Err() != nil {
			if e.Status == 0 {
				e.Err = fmt.Errorf("%w: %w", errCallerDone, ctx.Err())
			}
			return Result{}, e
		}
		if call.GoneAfterLoss && unanswered && e.Status == http.StatusNotFound {
			return Result{Header: h, Front: front, Tries: n}, nil
		}
		unanswered = unanswered || e.Status == 0
		c.report(ctx, e)
		if movesOn(e) {
			c.moveOn(i)
		}
		if !Retryable(e) {
			return Result{}, e
		}
		ok, serr := c.retry.Wait(ctx, n, e.RetryAfter)
		if serr != nil {
			return Result{}, &Error{Method: e.Method, Path: e.Path, Front: e.Front,
				Err: fmt.Errorf("%w: %w (the last try: %w)", errCallerDone, serr, e)}
		}
		if !ok {
			return Result{}, e
		}
	}
}

// try sends call to front once.
func (c *Client) try(ctx context.Context, front string, call Call, out any) (http.Header, error) {
	timeout := c.timeout
	if call.Hold > 0 {
		timeout = call.Hold + holdMargin
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := c.send(ctx, front, call.Method, call.Path, call.Body, call.Header)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != call.Want {
		return resp.Header, problemOf(resp, call.Method, call.Path, front)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		// The answer was cut short: as good as none.
		return resp.Header, &Error{Method: call.Method, Path: call.Path, Front: front, Err: fmt.Errorf("reading the answer: %w", err)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.Header, &Error{Method: call.Method, Path: call.Path, Front: front, Status: resp.StatusCode,
				Detail: "the answer is not the JSON expected", Err: err}
		}
	}
	return resp.Header, nil
}

// send makes one request of path to front, with the token of the moment.
// A failure to send or to get an answer is an *Error of Status 0.
func (c *Client) send(ctx context.Context, front, method, path string, body []byte, header http.Header) (*http.Response, error) {
	fail := func(err error) error { return &Error{Method: method, Path: path, Front: front, Err: err} }
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, front+path, rd)
	if err != nil {
		return nil, fail(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != nil {
		tok, err := c.token(ctx)
		if err != nil {
			return nil, &Error{Method: method, Path: path, Front: front, Err: fmt.Errorf("%w: %w", errNoToken, err)}
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fail(err)
	}
	return resp, nil
}

// errNoToken marks a call the token callback failed, which is not the
// API's doing and is not retried.
var errNoToken = errors.New("getting a token")

// problemOf reads the problem of an answer that is not a success.
func problemOf(resp *http.Response, method, path, front string) *Error {
	e := &Error{Method: method, Path: path, Front: front, Status: resp.StatusCode,
		RetryAfter: RetryAfter(resp.Header, time.Now())}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxProblem))
	var p contracts.Problem
	if json.Unmarshal(raw, &p) == nil {
		e.Code, e.Detail, e.TicketID = p.Code, p.Detail, p.TicketID
	} else if s := strings.TrimSpace(string(raw)); len(s) <= 200 {
		e.Detail = s
	}
	return e
}

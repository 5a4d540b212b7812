package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/quickmatch/quickmatch/contracts"
)

// requestTimeout bounds a request that is not a long-poll.
const requestTimeout = 10 * time.Second

// pollMargin is added to a long-poll's wait for its deadline: the server
// answers at the end of the wait, plus the time to read and send.
const pollMargin = 15 * time.Second

// sourceAddrs lists n loopback source addresses, 127.0.0.1 upward. Linux
// routes all of 127.0.0.0/8 to the loopback interface, and each source
// address has its own ~28k ephemeral ports per destination.
func sourceAddrs(n int) []net.IP {
	out := make([]net.IP, 0, n)
	for i := range min(n, 250) {
		out = append(out, net.IPv4(127, 0, 0, byte(1+i)))
	}
	return out
}

// spreadDialer dials from each source address in turn.
type spreadDialer struct {
	sources []net.IP
	next    atomic.Uint64
	timeout time.Duration
}

func (d *spreadDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	dialer := net.Dialer{Timeout: d.timeout, KeepAlive: 30 * time.Second}
	if len(d.sources) > 1 {
		src := d.sources[int(d.next.Add(1)%uint64(len(d.sources)))]
		dialer.LocalAddr = &net.TCPAddr{IP: src}
		// The sources are IPv4: a name must resolve to IPv4 too.
		network = "tcp4"
	}
	return dialer.DialContext(ctx, network, addr)
}

// newTransport is tuned so that the client does not throttle the load:
// every connection is kept for reuse, none is limited per host, and nothing
// is compressed.
func newTransport(sources int, maxConns int) *http.Transport {
	d := &spreadDialer{sources: sourceAddrs(max(1, sources)), timeout: 5 * time.Second}
	return &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConns:        0, // no limit
		MaxIdleConnsPerHost: max(maxConns, 1024),
		MaxConnsPerHost:     0,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     4 << 10,
		ReadBufferSize:      8 << 10,
	}
}

// Client speaks the suite's public HTTP APIs. Player calls name the front
// they go to, so that each player can move to another front when one fails.
type Client struct {
	http     *http.Client
	fronts   []string
	assigner string
	requests atomic.Int64
	// tokens authenticates each request when the suite has auth on.
	tokens *tokens
}

func newClient(t *http.Transport, fronts []string, assigner string) *Client {
	c := &Client{http: &http.Client{Transport: t}, assigner: trimSlash(assigner)}
	for _, f := range fronts {
		c.fronts = append(c.fronts, trimSlash(f))
	}
	return c
}

// Front is front i of the list, counted round it.
func (c *Client) Front(i int) string { return c.fronts[i%len(c.fronts)] }

// Fronts is how many fronts the client spreads players over.
func (c *Client) Fronts() int { return len(c.fronts) }

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// Requests is how many requests the client has sent.
func (c *Client) Requests() int64 { return c.requests.Load() }

// apiError is a failed call; its Kind groups failures in the report.
type apiError struct {
	Op     string // "create", "poll", ...
	Status int    // 0 when no HTTP answer came
	Code   string // the problem's code, or the transport failure
	// TicketID is the player's live ticket, on a player_has_ticket conflict.
	TicketID string
	Err      error
}

func (e *apiError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s: HTTP %d %s", e.Op, e.Status, e.Code)
	}
	return fmt.Sprintf("%s: %s: %v", e.Op, e.Code, e.Err)
}

func (e *apiError) Unwrap() error { return e.Err }

// Kind is the bounded name of the failure: op, status and code.
func (e *apiError) Kind() string {
	if e.Status != 0 {
		if e.Code == "" {
			return fmt.Sprintf("%s: %d", e.Op, e.Status)
		}
		return fmt.Sprintf("%s: %d %s", e.Op, e.Status, e.Code)
	}
	return e.Op + ": " + e.Code
}

// retryable reports whether a call that failed with err may be tried again:
// no answer came, or the suite said it could not serve the call now.
func retryable(err error) bool {
	ae, ok := errors.AsType[*apiError](err)
	if !ok {
		return false
	}
	if ae.Status == 0 {
		return ae.Code != "cancelled"
	}
	return ae.Status >= 500
}

// answered reports whether a failed call got an HTTP answer. One that got
// none may have been carried out all the same: a create may have made its
// ticket.
func answered(err error) bool {
	ae, ok := errors.AsType[*apiError](err)
	return ok && ae.Status != 0
}

// outcomeUnknown reports whether a failed call was answered that the suite
// does not know whether it made its change (503 outcome_unknown): for a
// create, as if it got no answer, a ticket may exist.
func outcomeUnknown(err error) bool {
	ae, ok := errors.AsType[*apiError](err)
	return ok && ae.Code == contracts.CodeOutcomeUnknown
}

// errorKind names any error for the report.
func errorKind(err error) string {
	if ae, ok := errors.AsType[*apiError](err); ok {
		return ae.Kind()
	}
	return "other: " + transportCode(err)
}

// transportCode names a failure that left no HTTP answer.
func transportCode(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "out of source ports"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	return "transport"
}

// call is one request: body is JSON already encoded, or nil.
type call struct {
	op, method, url string
	body            []byte
	header          http.Header
	want            int
}

// do sends one request and decodes a 2xx JSON answer into out. Any other
// answer is an *apiError carrying the problem's code.
func (c *Client) do(ctx context.Context, op, method, u string, body any, out any, want int) error {
	cl := call{op: op, method: method, url: u, want: want}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return &apiError{Op: op, Code: "encode", Err: err}
		}
		cl.body = b
	}
	_, err := c.send(ctx, cl, out)
	return err
}

// send makes one call and returns the answer's header.
func (c *Client) send(ctx context.Context, cl call, out any) (http.Header, error) {
	var rd io.Reader
	if cl.body != nil {
		rd = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, cl.url, rd)
	if err != nil {
		return nil, &apiError{Op: cl.op, Code: "request", Err: err}
	}
	maps.Copy(req.Header, cl.header)
	if c.tokens != nil {
		// The load tester's players are queued by a studio's backend.
		req.Header.Set("Authorization", "Bearer "+c.tokens.service)
	}
	if cl.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if req.Header.Get(idempotencyHeader) != "" {
		// With an Idempotency-Key the transport would send a POST whose
		// connection failed again by itself, unseen and to the same front.
		// Without GetBody it cannot: every try is the caller's, counted
		// and sent to the front the caller picks.
		req.GetBody = nil
	}
	c.requests.Add(1)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &apiError{Op: cl.op, Code: transportCode(err), Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != cl.want {
		var p contracts.Problem
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_ = json.Unmarshal(raw, &p)
		return resp.Header, &apiError{Op: cl.op, Status: resp.StatusCode, Code: p.Code, TicketID: p.TicketID,
			Err: fmt.Errorf("%s %s: %s", cl.method, cl.url, bytes.TrimSpace(raw))}
	}
	// Read to the end, so that the connection is reused.
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	} else {
		var b []byte
		if b, err = io.ReadAll(resp.Body); err == nil {
			err = json.Unmarshal(b, out)
		}
	}
	if err != nil {
		return resp.Header, &apiError{Op: cl.op, Code: "reading answer", Err: err}
	}
	return resp.Header, nil
}

// ticketState is the part of a ticket the players follow. Decoding only it
// keeps the generator light: it decodes every answer the suite sends.
type ticketState struct {
	ID      string           `json:"id"`
	Status  contracts.Status `json:"status"`
	Version int64            `json:"version"`
}

// Headers of an idempotent create (IETF httpapi idempotency-key draft).
const (
	idempotencyHeader = "Idempotency-Key"
	replayedHeader    = "Idempotent-Replayed"
)

// createRequest is one logical create: its body is encoded once and its key
// drawn once, so that every try sends the same bytes under the same key,
// whichever front it goes to. That is what lets the suite answer a retry
// with the ticket an earlier try made instead of a second ticket or a 409.
type createRequest struct {
	body []byte
	key  string
}

func newCreateRequest(req *contracts.TicketRequest) (*createRequest, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, &apiError{Op: "create", Code: "encode", Err: err}
	}
	return &createRequest{body: b, key: uuid.NewString()}, nil
}

// CreateTicket sends one try of cr to front. replayed reports the suite's
// word that the answer is the ticket of an earlier try with the same key.
func (c *Client) CreateTicket(ctx context.Context, front string, cr *createRequest) (t ticketState, replayed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	h, err := c.send(ctx, call{op: "create", method: http.MethodPost, url: front + "/v1/tickets", body: cr.body,
		header: http.Header{idempotencyHeader: {cr.key}}, want: http.StatusCreated}, &t)
	return t, err == nil && h.Get(replayedHeader) == "true", err
}

// CreateOnce makes req with one try to front, under a key of its own: a
// create that is never retried, as in the hold and http modes.
func (c *Client) CreateOnce(ctx context.Context, front string, req *contracts.TicketRequest) (ticketState, error) {
	cr, err := newCreateRequest(req)
	if err != nil {
		return ticketState{}, err
	}
	t, _, err := c.CreateTicket(ctx, front, cr)
	return t, err
}

// PollTicket long-polls a ticket on front until its version passes after
// or wait ends.
func (c *Client) PollTicket(ctx context.Context, front, id string, wait time.Duration, after int64, until string) (ticketState, error) {
	ctx, cancel := context.WithTimeout(ctx, wait+pollMargin)
	defer cancel()
	var t ticketState
	u := front + "/v1/tickets/" + url.PathEscape(id) + "?wait=" + wait.String() + "&after=" + strconv.FormatInt(after, 10)
	if until != "" {
		u += "&until=" + until
	}
	err := c.do(ctx, "poll", http.MethodGet, u, nil, &t, http.StatusOK)
	return t, err
}

// CancelTicket cancels a searching ticket through front.
func (c *Client) CancelTicket(ctx context.Context, front, id string) (ticketState, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var t ticketState
	err := c.do(ctx, "cancel", http.MethodDelete, front+"/v1/tickets/"+url.PathEscape(id), nil, &t, http.StatusOK)
	return t, err
}

// Get fetches a path of base and discards the body.
func (c *Client) Get(ctx context.Context, op, base, path string) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return c.do(ctx, op, http.MethodGet, trimSlash(base)+path, nil, nil, http.StatusOK)
}

// GetBody fetches a path of base and returns its body, at most 4 MiB.
func (c *Client) GetBody(ctx context.Context, base, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, trimSlash(base)+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("getting %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("getting %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("getting %s: HTTP %d", path, resp.StatusCode)
	}
	return b, nil
}

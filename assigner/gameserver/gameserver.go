// Package gameserver is the Go client of the game-server API, for game
// servers: register and heartbeat, watch the matches placed on the server,
// end each when its game is over, and drain at shutdown. Run does all of
// it for a server's life; the other methods are its single steps.
//
// It lives beside the assigner, which serves the game-server API, rather
// than in a package of clients of its own: the API and the client that
// speaks it change in the same commit and are tested against each other,
// the way front/player sits beside the player API it speaks. It imports
// nothing of the suite but the wire types of contracts and the plumbing it
// shares with front/player, so a game server that imports it gets the
// standard library and those.
//
// Every call goes to one base URL of Config.URLs until that one fails as
// if it were down (no answer, or a 5xx), then to the next. Calls that
// fail in a way a retry may mend (no answer, 502/503/504, 429) are tried
// again with exponential backoff and full jitter, never sooner than the
// suite's Retry-After; every call of the API is idempotent. The
// allocations are followed over their Server-Sent Event stream, resumed on
// another base URL from the last version seen when a connection is lost,
// or long-polled on a suite that does not serve the stream.
package gameserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/apiclient"
)

// Defaults of a Config's zero fields.
const (
	// DefaultPollWait is the wait each long-poll asks for when the stream
	// is not served; the suite caps it.
	DefaultPollWait = apiclient.DefaultPollWait
	// DefaultDrainTimeout bounds the drain Run makes when its context
	// ends.
	DefaultDrainTimeout = 5 * time.Second
	// fallbackHeartbeat is the heartbeat period when the suite's answer
	// does not tell its TTL: a third of the suite's default TTL.
	fallbackHeartbeat = 5 * time.Second
	minHeartbeat      = 50 * time.Millisecond
	maxHeartbeat      = 5 * time.Minute
)

// RetryPolicy says how failed calls are tried again: exponential backoff
// with full jitter from Base (100 ms) to Cap (5 s), never shorter than the
// suite's Retry-After, for at most Tries tries (8) or until the context's
// deadline. Its Sleep is the clock of the waits, for tests to fake.
type RetryPolicy = apiclient.RetryPolicy

// APIError is a call that failed: Status and the problem's stable Code
// (contracts.Code*) and Detail; Status 0 means no answer came (Err says
// why), and the call may have been carried out all the same. errors.Is
// matches it against the Err* sentinels.
type APIError = apiclient.Error

// Sentinels that errors.Is finds in an *APIError.
var (
	// ErrBadRequest: 400, a malformed id or registration.
	ErrBadRequest = apiclient.ErrBadRequest
	// ErrUnauthorized: 401, no token or one that does not verify.
	ErrUnauthorized = apiclient.ErrUnauthorized
	// ErrForbidden: 403, the token is not this server's.
	ErrForbidden = apiclient.ErrForbidden
	// ErrNotFound: 404, the server is not registered, or does not host
	// the match.
	ErrNotFound = apiclient.ErrNotFound
	// ErrRateLimited: 429 after the retries.
	ErrRateLimited = apiclient.ErrRateLimited
	// ErrUnavailable: 502, 503 or 504 after the retries.
	ErrUnavailable = apiclient.ErrUnavailable
)

// Config is what a Client is built from.
type Config struct {
	// ID is the server's id, which its token's sub must be.
	ID string
	// URLs are the base URLs of the game-server API (the assigners, or
	// the embedded matchmaker); calls go to the first until it fails as if
	// it were down, then to the next, round the list.
	URLs []string
	// Token returns the server's bearer token (a JWT of role server and
	// sub ID). It is called before every request, so that it can refresh
	// the token before it expires; nil sends none (a suite with auth off).
	Token func(ctx context.Context) (string, error)
	// HTTPClient sends the requests; http.DefaultClient if nil. Its
	// Timeout must be zero, or it would cut streams: each call has a
	// deadline of its own.
	HTTPClient *http.Client
	// Retry is the retry policy; the zero value is the default.
	Retry RetryPolicy
	// Registration is what Register and Run's heartbeats send: where
	// players connect, the region and the capacity.
	Registration contracts.ServerRequest
	// Heartbeat is Run's heartbeat period; if zero, a third of the TTL
	// the suite's answer to each heartbeat shows (its expires_at against
	// its Date), 5 s when it shows none.
	Heartbeat time.Duration
	// Handler, if set, is called by Run with each match placed on the
	// server, once, in a goroutine of its own, with Run's context: it
	// runs the game, and calls End when it is over. It must return once
	// the context ends. Without a Handler, Run does not watch the
	// allocations.
	Handler func(ctx context.Context, a contracts.Allocation)
	// DrainTimeout bounds the drain Run makes when its context ends;
	// DefaultDrainTimeout if zero.
	DrainTimeout time.Duration
	// RequestTimeout bounds one try of a call that is not held (10 s if
	// zero); PollWait is the wait of each long-poll (DefaultPollWait if
	// zero); IdleTimeout is how long a stream may stay silent before it
	// is taken for lost (45 s, three of the suite's pings, if zero).
	RequestTimeout, PollWait, IdleTimeout time.Duration
	// OnError, if set, is called with the error of every failed try and
	// every lost stream, including those retried and those Run rides out,
	// for logs and metrics. It must not block.
	OnError func(error)
}

// Client speaks the game-server API for one game server. It is safe for
// concurrent use.
type Client struct {
	cfg  Config
	api  *apiclient.Client
	path string // /v1/servers/{id}
}

// New checks cfg and builds a Client.
func New(cfg Config) (*Client, error) {
	if cfg.ID == "" {
		return nil, errors.New("quickmatch: a game server needs an id")
	}
	api, err := apiclient.New(apiclient.Config{Bases: cfg.URLs, Token: cfg.Token, HTTPClient: cfg.HTTPClient,
		Retry: cfg.Retry, RequestTimeout: cfg.RequestTimeout, OnError: cfg.OnError})
	if err != nil {
		return nil, err
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = DefaultPollWait
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	return &Client{cfg: cfg, api: api, path: "/v1/servers/" + url.PathEscape(cfg.ID)}, nil
}

// ID is the server's id.
func (c *Client) ID() string { return c.cfg.ID }

// Register registers the server with Config.Registration, or heartbeats:
// the same call. The server gets new matches until the answer's
// ExpiresAt unless it heartbeats again.
func (c *Client) Register(ctx context.Context) (contracts.Server, error) {
	s, _, err := c.register(ctx)
	return s, err
}

// register is Register, with the heartbeat period its answer implies.
func (c *Client) register(ctx context.Context) (contracts.Server, time.Duration, error) {
	body, err := json.Marshal(c.cfg.Registration)
	if err != nil {
		return contracts.Server{}, 0, fmt.Errorf("quickmatch: encoding the registration: %w", err)
	}
	sent := time.Now()
	var s contracts.Server
	res, err := c.api.Do(ctx, apiclient.Call{Method: http.MethodPut, Path: c.path, Body: body, Want: http.StatusOK}, &s)
	if err != nil {
		return s, 0, err
	}
	return s, c.heartbeatOf(s, res.Header, sent), nil
}

// heartbeatOf is the heartbeat period after an answer of s: Config's, or a
// third of the TTL. The TTL is read against the answer's Date, so that
// the server's clock and the suite's need not agree, and against the time
// the heartbeat was sent, whichever is shorter: Date has whole seconds.
func (c *Client) heartbeatOf(s contracts.Server, h http.Header, sent time.Time) time.Duration {
	if c.cfg.Heartbeat > 0 {
		return c.cfg.Heartbeat
	}
	if s.ExpiresAt.IsZero() {
		return fallbackHeartbeat
	}
	ttl := s.ExpiresAt.Sub(sent)
	if date, err := http.ParseTime(h.Get("Date")); err == nil {
		if d := s.ExpiresAt.Sub(date); d > 0 && (ttl <= 0 || d < ttl) {
			ttl = d
		}
	}
	if ttl <= 0 {
		return fallbackHeartbeat
	}
	return min(max(ttl/3, minHeartbeat), maxHeartbeat)
}

// Server reads the server as the registry knows it.
func (c *Client) Server(ctx context.Context) (contracts.Server, error) {
	var s contracts.Server
	_, err := c.api.Do(ctx, apiclient.Call{Method: http.MethodGet, Path: c.path, Want: http.StatusOK}, &s)
	return s, err
}

// Allocations long-polls the matches the server hosts: it answers once
// their version passes after, or when wait ends (0: at once).
func (c *Client) Allocations(ctx context.Context, wait time.Duration, after int64) (contracts.Allocations, error) {
	q := url.Values{"wait": {wait.String()}, "after": {strconv.FormatInt(after, 10)}}
	var a contracts.Allocations
	_, err := c.api.Do(ctx, apiclient.Call{Method: http.MethodGet, Path: c.path + "/allocations?" + q.Encode(),
		Want: http.StatusOK, Hold: wait}, &a)
	return a, err
}

// WatchAllocations calls fn with each version of the server's allocations
// past after, in order: every match it hosts at that version. It follows
// their Server-Sent Event stream, resuming on the next base URL with
// Last-Event-ID when a connection is lost, so that fn never sees a version
// twice, and long-polls a suite that does not serve the stream. It does
// not end by itself: it returns fn's error if fn returns one, and the
// error of the last try once the retry policy gives up.
func (c *Client) WatchAllocations(ctx context.Context, after int64, fn func(contracts.Allocations) error) error {
	last := after
	deliver := func(a contracts.Allocations) error {
		if a.Version <= last {
			return nil
		}
		last = a.Version
		return fn(a)
	}
	err := c.api.Watch(ctx, apiclient.Watch{Path: c.path + "/allocations/events", After: after, IdleTimeout: c.cfg.IdleTimeout,
		Handle: func(ev apiclient.Event) error {
			if ev.Type != "allocations" {
				return nil
			}
			var a contracts.Allocations
			if err := json.Unmarshal(ev.Data, &a); err != nil {
				return fmt.Errorf("quickmatch: server %s: event %d is not allocations: %w", c.cfg.ID, ev.ID, err)
			}
			return deliver(a)
		}})
	if !apiclient.Refused(err) {
		return err
	}
	for {
		a, err := c.Allocations(ctx, c.cfg.PollWait, last)
		if err != nil {
			return err
		}
		if err := deliver(a); err != nil {
			return err
		}
	}
}

// End ends match matchID and frees its slot. A retry whose earlier try
// got no answer, and which finds the match gone, takes it that the
// earlier try ended it; a match the server does not host otherwise is
// ErrNotFound.
func (c *Client) End(ctx context.Context, matchID string) error {
	_, err := c.api.Do(ctx, apiclient.Call{Method: http.MethodDelete, Path: c.path + "/matches/" + url.PathEscape(matchID),
		Want: http.StatusNoContent, GoneAfterLoss: true}, nil)
	return err
}

// Backfill asks for the seats that players who left match matchID have
// opened, per team in the order of its allocation's teams, to be filled
// from the pool. The players who join arrive as the match's allocation
// changes (Allocations, WatchAllocations: its Teams, Players and
// TicketIDs grow), and each is assigned to this server. Asking again
// replaces the seats asked for, and asking for none withdraws the
// request; ending the match withdraws it too. Asking is idempotent, so
// retries are safe.
func (c *Client) Backfill(ctx context.Context, matchID string, open []int) (contracts.Backfill, error) {
	body, err := json.Marshal(contracts.BackfillRequest{Open: open})
	if err != nil {
		return contracts.Backfill{}, err
	}
	var b contracts.Backfill
	_, err = c.api.Do(ctx, apiclient.Call{Method: http.MethodPost, Path: c.path + "/matches/" + url.PathEscape(matchID) + "/backfill",
		Body: body, Want: http.StatusAccepted}, &b)
	return b, err
}

// Drain stops new matches for the server; those it hosts go on until
// ended. Draining again is harmless, and heartbeats keep the server
// draining.
func (c *Client) Drain(ctx context.Context) (contracts.Server, error) {
	var s contracts.Server
	_, err := c.api.Do(ctx, apiclient.Call{Method: http.MethodDelete, Path: c.path, Want: http.StatusOK}, &s)
	return s, err
}

// Run registers the server, heartbeats it, and (with a Handler) watches
// its allocations and hands each new match to the Handler, until ctx
// ends; then it drains the server within DrainTimeout and waits for the
// Handlers to return. A first registration the suite refuses for good (a
// bad token or body) is returned at once; after that, Run rides out every
// failure, retrying until ctx ends (each is passed to OnError). It
// returns nil after a clean drain, or the drain's error.
func (c *Client) Run(ctx context.Context) error {
	every, err := c.registerFirst(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.heartbeats(ctx, every) })
	if c.cfg.Handler != nil {
		wg.Go(func() { c.follow(ctx, &wg) })
	}
	<-ctx.Done()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.DrainTimeout)
	defer cancel()
	_, err = c.Drain(dctx)
	wg.Wait()
	return err
}

// registerFirst registers the server until it succeeds, the suite refuses
// it for good, or ctx ends, and returns the heartbeat period. Its tries
// are bounded by ctx alone: a server started before the suite waits for
// it.
func (c *Client) registerFirst(ctx context.Context) (time.Duration, error) {
	retry := c.api.Retry()
	for n := 1; ; n++ {
		_, every, err := c.register(ctx)
		switch {
		case err == nil:
			return every, nil
		case ctx.Err() != nil:
			return 0, err
		case !apiclient.Retryable(err):
			return 0, err
		}
		retry.Tries = -1
		var wait time.Duration
		if e, ok := errors.AsType[*APIError](err); ok {
			wait = e.RetryAfter
		}
		if _, err := retry.Wait(ctx, n, wait); err != nil {
			return 0, err
		}
	}
}

// heartbeats registers the server again every period until ctx ends. A
// heartbeat's retries stop when the next one is due, which starts on time
// (a failure has been reported), so that an outage shorter than the TTL
// does not expire the server.
func (c *Client) heartbeats(ctx context.Context, every time.Duration) {
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		hctx, cancel := context.WithTimeout(ctx, every)
		_, next, err := c.register(hctx)
		cancel()
		if err == nil {
			every = next
		}
		t.Reset(max(every-time.Since(start), 0))
	}
}

// follow watches the allocations until ctx ends, and starts a Handler for
// each match it has not seen. It starts again from the last version seen
// whenever the watch gives up.
func (c *Client) follow(ctx context.Context, handlers *sync.WaitGroup) {
	var after int64
	seen := map[string]bool{}
	retry := c.api.Retry()
	retry.Tries = -1
	for fails := 0; ctx.Err() == nil; {
		err := c.WatchAllocations(ctx, after, func(a contracts.Allocations) error {
			after, fails = a.Version, 0
			current := make(map[string]bool, len(a.Allocations))
			for _, al := range a.Allocations {
				current[al.MatchID] = true
				if !seen[al.MatchID] {
					seen[al.MatchID] = true
					handlers.Go(func() { c.cfg.Handler(ctx, al) })
				}
			}
			// A match no longer listed has ended and will not come back.
			for m := range seen {
				if !current[m] {
					delete(seen, m)
				}
			}
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		// The watch gave up: the suite was away for longer than the
		// retry policy waits, or does not know the server (the next
		// heartbeat registers it again). The API's failures have been
		// reported; a stream that made no sense has not.
		if _, ok := errors.AsType[*APIError](err); !ok && c.cfg.OnError != nil {
			c.cfg.OnError(err)
		}
		fails++
		if _, err := retry.Wait(ctx, fails, 0); err != nil {
			return
		}
	}
}

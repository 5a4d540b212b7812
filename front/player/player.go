// Package player is the Go client of the player API, for game clients:
// queue a party (Create), follow its ticket until it has a game server to
// connect to (Wait, Watch), read it (Ticket) or give up (Cancel).
//
// It lives beside the front, which serves the player API, rather than in a
// package of clients of its own: the API and the client that speaks it
// change in the same commit and are tested against each other, the way
// assigner/gameserver sits beside the game-server API it speaks. It
// imports nothing of the suite but the wire types of contracts and the
// plumbing it shares with assigner/gameserver, so a game client that
// imports it gets the standard library and those.
//
// Every call goes to one front of Config.Fronts until that front fails as
// if it were down (no answer, or a 5xx), then to the next. Calls that fail
// in a way a retry may mend (no answer, 502/503/504, 429) are tried again
// with exponential backoff and full jitter, never sooner than the suite's
// Retry-After; every call may be retried, since reads, polls and cancels
// are idempotent and each create carries an Idempotency-Key that its
// retries reuse. Watch and Wait follow a ticket over its Server-Sent Event
// stream, resuming on another front from the last version seen when a
// connection is lost, and fall back to long-polls on a suite that does not
// serve the stream.
//
// In a queue that asks its players to accept their match, Wait also
// returns a ticket whose player must answer (Ticket.Asked), and Accept
// answers for it: answering again is idempotent, like every other call.
package player

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/apiclient"
)

// DefaultPollWait is the wait each long-poll asks for when the stream is
// not served; the suite caps it (MM_POLL_MAX, 60 s by default).
const DefaultPollWait = apiclient.DefaultPollWait

// RetryPolicy says how failed calls are tried again: exponential backoff
// with full jitter from Base (100 ms) to Cap (5 s), never shorter than the
// suite's Retry-After, for at most Tries tries (8) or until the context's
// deadline. Its Sleep is the clock of the waits, for tests to fake.
type RetryPolicy = apiclient.RetryPolicy

// APIError is a call that failed: Status and the problem's stable Code
// (contracts.Code*), its Detail, and on a 409 player_has_ticket the
// caller's live ticket in TicketID; Status 0 means no answer came (Err
// says why), and the call may have been carried out all the same.
// errors.Is matches it against the Err* sentinels.
type APIError = apiclient.Error

// Sentinels that errors.Is finds in an *APIError.
var (
	// ErrBadRequest: 400, a malformed request, an unknown queue
	// (Code unknown_queue) or region (unknown_region).
	ErrBadRequest = apiclient.ErrBadRequest
	// ErrUnauthorized: 401, no token or one that does not verify.
	ErrUnauthorized = apiclient.ErrUnauthorized
	// ErrForbidden: 403, the token may not make the call (a player
	// queueing someone outside its party claim, say).
	ErrForbidden = apiclient.ErrForbidden
	// ErrNotFound: 404, no such ticket, or one the caller is not in.
	ErrNotFound = apiclient.ErrNotFound
	// ErrRateLimited: 429 after the retries, too many creates.
	ErrRateLimited = apiclient.ErrRateLimited
	// ErrUnavailable: 502, 503 or 504 after the retries.
	ErrUnavailable = apiclient.ErrUnavailable
	// ErrPlayerHasTicket: 409 on a create, a player of the party has a
	// live ticket; APIError.TicketID names it when the caller is that
	// player.
	ErrPlayerHasTicket = apiclient.ErrPlayerHasTicket
	// ErrTicketMatched: 409 on a cancel, the ticket is matched or
	// assigned and can no longer be cancelled.
	ErrTicketMatched = apiclient.ErrTicketMatched
	// ErrConflict: 409 on a cancel, the ticket has expired or failed.
	ErrConflict = apiclient.ErrConflict
)

// Config is what a Client is built from.
type Config struct {
	// Fronts are the base URLs of the player API, such as
	// https://mm.example.com; calls go to the first until it fails as if
	// it were down, then to the next, round the list. List them in
	// another order in each client to spread the clients over them.
	Fronts []string
	// Token returns the player's bearer token (a JWT the studio's backend
	// minted). It is called before every request, so that it can refresh
	// the token before it expires; nil sends none (a suite with auth off).
	Token func(ctx context.Context) (string, error)
	// HTTPClient sends the requests; http.DefaultClient if nil. Its
	// Timeout must be zero, or it would cut streams: each call has a
	// deadline of its own.
	HTTPClient *http.Client
	// Retry is the retry policy; the zero value is the default.
	Retry RetryPolicy
	// RequestTimeout bounds one try of a call that is not held (10 s if
	// zero); PollWait is the wait of each long-poll (DefaultPollWait if
	// zero); IdleTimeout is how long a stream may stay silent before it
	// is taken for lost (45 s, three of the suite's pings, if zero).
	RequestTimeout, PollWait, IdleTimeout time.Duration
	// OnError, if set, is called with the error of every failed try,
	// including those retried, for logs and metrics. It must not block.
	OnError func(error)
}

// Client speaks the player API for one player (or for the studio's
// backend, with a service token). It is safe for concurrent use.
type Client struct {
	api      *apiclient.Client
	pollWait time.Duration
	idle     time.Duration
}

// New checks cfg and builds a Client.
func New(cfg Config) (*Client, error) {
	api, err := apiclient.New(apiclient.Config{Bases: cfg.Fronts, Token: cfg.Token, HTTPClient: cfg.HTTPClient,
		Retry: cfg.Retry, RequestTimeout: cfg.RequestTimeout, OnError: cfg.OnError})
	if err != nil {
		return nil, err
	}
	c := &Client{api: api, pollWait: cfg.PollWait, idle: cfg.IdleTimeout}
	if c.pollWait <= 0 {
		c.pollWait = DefaultPollWait
	}
	return c, nil
}

func ticketPath(id string) string { return "/v1/tickets/" + url.PathEscape(id) }

// Create queues req's party and returns its ticket, searching. Its tries
// share one Idempotency-Key, so that a retry after a lost answer, through
// any front, returns the ticket the first try made instead of a second
// ticket or a 409. A party one of whose players has a live ticket is
// ErrPlayerHasTicket, and APIError.TicketID names that ticket when the
// caller is that player.
func (c *Client) Create(ctx context.Context, req contracts.TicketRequest) (contracts.Ticket, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return contracts.Ticket{}, fmt.Errorf("quickmatch: encoding the ticket request: %w", err)
	}
	key, err := newKey()
	if err != nil {
		return contracts.Ticket{}, err
	}
	var t contracts.Ticket
	_, err = c.api.Do(ctx, apiclient.Call{Method: http.MethodPost, Path: "/v1/tickets", Body: body,
		Header: http.Header{"Idempotency-Key": {key}}, Want: http.StatusCreated}, &t)
	return t, err
}

// newKey draws an Idempotency-Key: a random (version 4) UUID.
func newKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("quickmatch: drawing an idempotency key: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// Ticket reads ticket id as it is now.
func (c *Client) Ticket(ctx context.Context, id string) (contracts.Ticket, error) {
	var t contracts.Ticket
	_, err := c.api.Do(ctx, apiclient.Call{Method: http.MethodGet, Path: ticketPath(id), Want: http.StatusOK}, &t)
	return t, err
}

// Cancel cancels ticket id while it is searching and returns it,
// cancelled; cancelling it again answers the same. A ticket already
// matched or assigned is ErrTicketMatched, one that expired or failed
// ErrConflict.
func (c *Client) Cancel(ctx context.Context, id string) (contracts.Ticket, error) {
	var t contracts.Ticket
	_, err := c.api.Do(ctx, apiclient.Call{Method: http.MethodDelete, Path: ticketPath(id), Want: http.StatusOK}, &t)
	return t, err
}

// Accept answers the match ticket id is offered (pending_acceptance):
// accept true to take it, false to decline it. It returns the ticket after
// the answer: still pending_acceptance until every ticket of the match has
// accepted, matched once they have, cancelled after a decline. A ticket
// offered no match (searching, or its match fell through or went on
// without it) is ErrConflict or ErrTicketMatched.
func (c *Client) Accept(ctx context.Context, id string, accept bool) (contracts.Ticket, error) {
	body, err := json.Marshal(contracts.AcceptRequest{Accept: &accept})
	if err != nil {
		return contracts.Ticket{}, err
	}
	var t contracts.Ticket
	_, err = c.api.Do(ctx, apiclient.Call{Method: http.MethodPost, Path: ticketPath(id) + "/accept", Body: body, Want: http.StatusOK}, &t)
	return t, err
}

// Wait follows ticket id until it has got as far as until and returns it
// as it is then: until StatusMatched returns a matched ticket or one that
// went further, StatusAssigned (or "") one assigned or ended in any other
// way (cancelled, expired, failed: check its Status). Either also returns
// a ticket offered a match that waits for its player's answer
// (Ticket.Asked; answer with Accept, then Wait again). It follows the
// ticket's stream, and long-polls a suite that does not serve it.
func (c *Client) Wait(ctx context.Context, id string, until contracts.Status) (contracts.Ticket, error) {
	if until == "" {
		until = contracts.StatusAssigned
	}
	var got contracts.Ticket
	err := c.watch(ctx, id, 0, until, func(t contracts.Ticket) error {
		got = t
		if t.Status.Reached(until) || t.Asked() {
			return errReached
		}
		return nil
	})
	if errors.Is(err, errReached) {
		return got, nil
	}
	if err == nil {
		// Not reached: a watch ends by itself only on a terminal
		// ticket, which has reached every stage.
		err = fmt.Errorf("quickmatch: ticket %s: the watch ended at %s", id, got.Status)
	}
	return got, err
}

var errReached = errors.New("reached")

// Watch calls fn with each version of ticket id past after, in order, and
// returns nil after the version that is terminal (assigned, cancelled,
// expired or failed). It follows the ticket's Server-Sent Event stream:
// when a connection is lost it resumes on the next front with
// Last-Event-ID, so that fn never sees a version twice (it may miss some
// that came and went while no connection was up; the latest always
// comes). On a suite that does not serve the stream (404 or 405) it
// long-polls instead. It returns fn's error if fn returns one, and the
// error of the last try once the retry policy gives up on the stream or a
// poll.
func (c *Client) Watch(ctx context.Context, id string, after int64, fn func(contracts.Ticket) error) error {
	return c.watch(ctx, id, after, "", fn)
}

// watch is Watch, with a stage for the long-poll's ?until to skip the
// versions before it.
func (c *Client) watch(ctx context.Context, id string, after int64, until contracts.Status, fn func(contracts.Ticket) error) error {
	last := after
	deliver := func(t contracts.Ticket) error {
		if t.Version <= last {
			return nil
		}
		last = t.Version
		if err := fn(t); err != nil {
			return err
		}
		if t.Status.Terminal() {
			return apiclient.ErrStop
		}
		return nil
	}
	err := c.api.Watch(ctx, apiclient.Watch{Path: ticketPath(id) + "/events", After: after, IdleTimeout: c.idle,
		Handle: func(ev apiclient.Event) error {
			if ev.Type != "ticket" {
				return nil
			}
			var t contracts.Ticket
			if err := json.Unmarshal(ev.Data, &t); err != nil {
				return fmt.Errorf("quickmatch: ticket %s: event %d is not a ticket: %w", id, ev.ID, err)
			}
			return deliver(t)
		}})
	if !apiclient.Refused(err) {
		return err
	}
	for {
		t, err := c.poll(ctx, id, last, until)
		if err != nil {
			return err
		}
		if err := deliver(t); err != nil {
			if errors.Is(err, apiclient.ErrStop) {
				return nil
			}
			return err
		}
	}
}

// poll long-polls ticket id for a version past after and, with until, at
// that stage or past it.
func (c *Client) poll(ctx context.Context, id string, after int64, until contracts.Status) (contracts.Ticket, error) {
	q := url.Values{"wait": {c.pollWait.String()}, "after": {strconv.FormatInt(after, 10)}}
	switch {
	case until.Reached(contracts.StatusAssigned):
		q.Set("until", string(contracts.StatusAssigned))
	case until.Reached(contracts.StatusMatched):
		q.Set("until", string(contracts.StatusMatched))
	}
	var t contracts.Ticket
	_, err := c.api.Do(ctx, apiclient.Call{Method: http.MethodGet, Path: ticketPath(id) + "?" + q.Encode(),
		Want: http.StatusOK, Hold: c.pollWait}, &t)
	return t, err
}

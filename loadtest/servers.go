package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quickmatch/quickmatch/assigner/gameserver"
	"github.com/quickmatch/quickmatch/contracts"
)

// maxFleet bounds the simulated fleet.
const maxFleet = 1000

// fleet simulates game servers on assigner/gameserver, the client a studio's
// game servers would use: each registers its capacity in a region,
// heartbeats, watches its allocations (their stream, or long-polls on a
// suite without it), holds each match for the game length and then ends
// it, and drains when the run stops. With a game length of 0 the servers
// hold their matches until the run ends and do not watch, so that they add
// no load. Every failed try of every call is counted in the run's errors,
// under the same kinds as the players' (see fleetError), and every request
// in its requests.
type fleet struct {
	client     *Client
	rec        atomic.Pointer[Recorder]
	ids        []string
	gs         []*gameserver.Client
	err        error // building the clients
	gameLength time.Duration
	heartbeat  time.Duration
	pollWait   time.Duration
	// retrySleep is the clock of the retries' waits; a timer if nil.
	retrySleep func(ctx context.Context, d time.Duration) error

	seen  atomic.Int64 // matches the servers saw allocated
	ended atomic.Int64 // matches they ended
	wg    sync.WaitGroup
}

// FleetReport is what the fleet reports at the end.
type FleetReport struct {
	Servers        int     `json:"servers"`
	Capacity       int     `json:"capacity_each"`
	GameLengthS    float64 `json:"game_length_s"`
	MatchesSeen    int64   `json:"matches_seen"`
	MatchesEnded   int64   `json:"matches_ended"`
	AllocatedAtEnd int64   `json:"allocated_at_end"`
}

// autoFleet is the number of servers a run needs when -servers is 0: every
// match of the run when none ends before it does, or those alive at once
// otherwise.
func autoFleet(c *Config) int {
	if c.Servers > 0 {
		return c.Servers
	}
	players := c.expectedPlayers()
	if c.GameLength > 0 {
		rate := c.Rate
		if c.Concurrency > 0 {
			rate = float64(c.Concurrency) * 1000 // players that take 1 ms
		}
		players = min(players, int64(math.Ceil(rate*(c.GameLength+2*time.Second).Seconds())))
	}
	return min(fleetSize(players, c.MatchSize, c.ServerCapacity), maxFleet)
}

func newFleet(c *Config, client *Client) *fleet {
	f := &fleet{
		client:     client,
		gameLength: c.GameLength,
		heartbeat:  c.Heartbeat,
		pollWait:   c.PollWait,
	}
	for i := range autoFleet(c) {
		id := fmt.Sprintf("%s-gs%d", c.RunID, i+1)
		req := contracts.ServerRequest{
			Address:  fmt.Sprintf("gs%d.%s.loadtest.invalid:7777", i+1, c.RunID),
			Region:   c.ServerRegions[i%len(c.ServerRegions)],
			Capacity: c.ServerCapacity,
		}
		gs, err := f.serverClient(id, req)
		if err != nil {
			f.err = err
			break
		}
		f.ids, f.gs = append(f.ids, id), append(f.gs, gs)
	}
	return f
}

// serverClient is the client of game server id, registering as req. Its
// requests go through the load tester's transport and count in its
// requests, and it carries the server's token when the suite has auth on.
func (f *fleet) serverClient(id string, req contracts.ServerRequest) (*gameserver.Client, error) {
	cfg := gameserver.Config{
		ID:           id,
		URLs:         []string{f.client.assigner},
		HTTPClient:   &http.Client{Transport: &countingTransport{base: f.client.http.Transport, n: &f.client.requests}},
		Registration: req,
		Heartbeat:    f.heartbeat,
		PollWait:     f.pollWait,
		// A match the fleet forgot to end would hold its slot for good
		// and starve later matches of capacity: an end is tried for
		// about two minutes (and a heartbeat until the next is due).
		Retry:   gameserver.RetryPolicy{Base: 50 * time.Millisecond, Cap: 2 * time.Second, Tries: endAttempts, Sleep: f.retrySleep},
		OnError: f.failed,
		Token: func(context.Context) (string, error) {
			if f.client.tokens == nil {
				return "", nil
			}
			return f.client.tokens.server(id)
		},
	}
	var gs *gameserver.Client
	if f.gameLength > 0 {
		cfg.Handler = func(ctx context.Context, a contracts.Allocation) {
			f.seen.Add(1)
			if sleep(ctx, f.gameLength) {
				f.endMatch(ctx, gs, a.MatchID)
			}
		}
	}
	gs, err := gameserver.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("game server %s: %w", id, err)
	}
	return gs, nil
}

// failed counts a failed try of a game server's call, once the run has
// started.
func (f *fleet) failed(err error) {
	if rec := f.rec.Load(); rec != nil {
		rec.Error(fleetError(err))
	}
}

// fleetError is err as the players' errors are, so that the report groups
// the fleet's failures under the kinds it always has: "register: 503
// unavailable", "end match: connection refused".
func fleetError(err error) error {
	ae, ok := errors.AsType[*gameserver.APIError](err)
	if !ok {
		return err
	}
	out := &apiError{Op: fleetOp(ae.Method, ae.Path), Status: ae.Status, Code: ae.Code, Err: err}
	if ae.Status == 0 {
		out.Code = transportCode(ae.Err)
	}
	return out
}

// fleetOp names a game-server call as the report does.
func fleetOp(method, path string) string {
	switch {
	case method == http.MethodPut:
		return "register"
	case method == http.MethodDelete && strings.Contains(path, "/matches/"):
		return "end match"
	case method == http.MethodDelete:
		return "drain"
	case strings.Contains(path, "/allocations"):
		return "allocations"
	}
	return "server"
}

// countingTransport counts the requests it sends in n.
type countingTransport struct {
	base http.RoundTripper
	n    *atomic.Int64
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.base.RoundTrip(r)
}

// register registers every server once, a few at a time; the run does not
// start until the fleet is up.
func (f *fleet) register(ctx context.Context) error {
	if f.err != nil {
		return f.err
	}
	sem := make(chan struct{}, 16)
	errs := make(chan error, len(f.gs))
	var wg sync.WaitGroup
	for _, gs := range f.gs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := gs.Register(ctx); err != nil {
				errs <- fmt.Errorf("registering game server %s: %w", gs.ID(), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// start runs every server (gameserver.Client.Run: heartbeats and, with a
// game length, the allocations and match ends) until ctx ends, when each
// drains; wait waits for them. Failures are counted in rec.
func (f *fleet) start(ctx context.Context, rec *Recorder) {
	f.rec.Store(rec)
	for _, gs := range f.gs {
		// Run's errors are those of tries already counted.
		f.wg.Go(func() { _ = gs.Run(ctx) })
	}
}

func (f *fleet) wait() { f.wg.Wait() }

// endMatch ends one match. The client retries while the assigner cannot be
// reached, and takes a 404 after a try that got no answer for that try's
// success; a 404 after answered tries is counted as ended too, since only
// the fleet ends its matches. After endAttempts failures it gives the
// match up, and the run's allocated-at-end count shows the leak.
func (f *fleet) endMatch(ctx context.Context, gs *gameserver.Client, matchID string) {
	err := gs.End(ctx, matchID)
	if err == nil || errors.Is(err, gameserver.ErrNotFound) {
		f.ended.Add(1)
	}
}

// endAttempts bounds the tries to end one match: with backoff capped at 2 s
// they span about two minutes, longer than any outage a run survives.
const endAttempts = 64

// finish reads how many matches each server still hosts. It runs after
// start's servers have drained and stopped, with a live ctx.
func (f *fleet) finish(ctx context.Context, capacity int) FleetReport {
	r := FleetReport{
		Servers:      len(f.ids),
		Capacity:     capacity,
		GameLengthS:  f.gameLength.Seconds(),
		MatchesSeen:  f.seen.Load(),
		MatchesEnded: f.ended.Load(),
	}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	sem := make(chan struct{}, 16)
	for _, gs := range f.gs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			// A failure is counted by the client.
			if s, err := gs.Server(ctx); err == nil {
				mu.Lock()
				r.AllocatedAtEnd += int64(s.Allocated)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return r
}

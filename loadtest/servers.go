package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

// maxFleet bounds the simulated fleet.
const maxFleet = 1000

// fleet simulates game servers: each registers its capacity in a region,
// heartbeats, long-polls its allocations, holds each match for the game
// length and then ends it. With a game length of 0 the servers hold their
// matches until the run ends and do not poll, so that they add no load.
type fleet struct {
	client     *Client
	rec        *Recorder
	servers    []contracts.ServerRequest
	ids        []string
	gameLength time.Duration
	heartbeat  time.Duration
	pollWait   time.Duration
	runFor     time.Duration // bounds the heartbeat loop

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
		runFor:     c.Warmup + c.Duration + c.Drain + time.Minute,
	}
	for i := range autoFleet(c) {
		f.ids = append(f.ids, fmt.Sprintf("%s-gs%d", c.RunID, i+1))
		f.servers = append(f.servers, contracts.ServerRequest{
			Address:  fmt.Sprintf("gs%d.%s.loadtest.invalid:7777", i+1, c.RunID),
			Region:   c.ServerRegions[i%len(c.ServerRegions)],
			Capacity: c.ServerCapacity,
		})
	}
	return f
}

// register registers every server once, a few at a time; the run does not
// start until the fleet is up.
func (f *fleet) register(ctx context.Context) error {
	sem := make(chan struct{}, 16)
	errs := make(chan error, len(f.ids))
	var wg sync.WaitGroup
	for i, id := range f.ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := f.client.RegisterServer(ctx, id, f.servers[i]); err != nil {
				errs <- fmt.Errorf("registering game server %s: %w", id, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// start runs the heartbeats and, with a game length, each server's
// allocation poll and match ends, until ctx ends; wait waits for them.
// Failures are counted in rec.
func (f *fleet) start(ctx context.Context, rec *Recorder) {
	f.rec = rec
	f.wg.Go(func() { f.heartbeats(ctx) })
	if f.gameLength <= 0 {
		return
	}
	for i, id := range f.ids {
		ends := make(chan pendingEnd, f.servers[i].Capacity+16)
		f.wg.Go(func() { f.pollAllocations(ctx, id, ends) })
		f.wg.Go(func() { f.endMatches(ctx, id, ends) })
	}
}

func (f *fleet) wait() { f.wg.Wait() }

func (f *fleet) heartbeats(ctx context.Context) {
	ticker := time.NewTicker(f.heartbeat)
	defer ticker.Stop()
	for range int(f.runFor/f.heartbeat) + 1 {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		for i, id := range f.ids {
			if _, err := f.client.RegisterServer(ctx, id, f.servers[i]); err != nil && ctx.Err() == nil {
				f.rec.Error(err)
			}
		}
	}
}

type pendingEnd struct {
	matchID string
	at      time.Time
}

// pollAllocations follows the server's allocations and hands each new
// match to endMatches, due a game length after it was seen.
func (f *fleet) pollAllocations(ctx context.Context, id string, ends chan<- pendingEnd) {
	var after int64
	seen := map[string]bool{}
	backoff := 50 * time.Millisecond
	for range int(f.runFor/time.Millisecond) + 1 { // each pass waits or backs off
		a, err := f.client.PollAllocations(ctx, id, f.pollWait, after)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			f.rec.Error(err)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		after = a.Version
		now := time.Now()
		current := make(map[string]bool, len(a.Allocations))
		for _, al := range a.Allocations {
			current[al.MatchID] = true
			if seen[al.MatchID] {
				continue
			}
			seen[al.MatchID] = true
			f.seen.Add(1)
			select {
			case ends <- pendingEnd{matchID: al.MatchID, at: now.Add(f.gameLength)}:
			case <-ctx.Done():
				return
			}
		}
		// A match no longer listed has ended and will not come back.
		for m := range seen {
			if !current[m] {
				delete(seen, m)
			}
		}
	}
}

// endMatches ends each match when it is due. Every match lasts the same
// game length, so they fall due in the order they were seen.
func (f *fleet) endMatches(ctx context.Context, id string, ends <-chan pendingEnd) {
	for {
		var e pendingEnd
		select {
		case <-ctx.Done():
			return
		case e = <-ends:
		}
		if !sleep(ctx, time.Until(e.at)) {
			return
		}
		if !f.endMatch(ctx, id, e.matchID) {
			return
		}
	}
}

// endMatch ends one match, trying again with backoff while the assigner
// cannot be reached: a match the fleet forgot would hold its slot for good
// and starve later matches of capacity. It reports false once ctx ends;
// after endAttempts failures it gives the match up, and the run's
// allocated-at-end count shows the leak.
func (f *fleet) endMatch(ctx context.Context, serverID, matchID string) bool {
	backoff := 50 * time.Millisecond
	for range endAttempts {
		err := f.client.EndMatch(ctx, serverID, matchID)
		if ctx.Err() != nil {
			return false
		}
		var ae *apiError
		switch {
		case err == nil:
			f.ended.Add(1)
			return true
		case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
			// An earlier attempt whose answer was lost ended it.
			f.ended.Add(1)
			return true
		}
		f.rec.Error(err)
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	return true
}

// endAttempts bounds the tries to end one match: with backoff capped at 2 s
// they span about two minutes, longer than any outage a run survives.
const endAttempts = 64

// finish reads how many matches each server still hosts and drains it, so
// that a later run does not place matches on it. It runs after start's
// goroutines have ended, with a live ctx.
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
	for _, id := range f.ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s, err := f.client.Server(ctx, id)
			if err != nil {
				f.rec.Error(err)
			} else {
				mu.Lock()
				r.AllocatedAtEnd += int64(s.Allocated)
				mu.Unlock()
			}
			if err := f.client.DrainServer(ctx, id); err != nil {
				f.rec.Error(err)
			}
		})
	}
	wg.Wait()
	return r
}

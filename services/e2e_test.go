package services

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

var modes = []mode{embedded, distributed}

// TestWalkthrough is the README's walk-through: a server registers, two
// players queue, both learn the same assignment, the server sees the match
// and ends it.
func TestWalkthrough(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			s := startStack(t, m, stackOptions{})
			walkthrough(t, newClient(t), s.frontURL, s.assignerURL)
		})
	}
}

// walkthrough plays the README's curl walk-through against a running suite.
func walkthrough(t *testing.T, c *client, frontURL, assignerURL string) {
	t.Helper()
	c.registerServer(assignerURL, "gs-1", "eu-west", 2)
	a := c.createTicket(frontURL, contracts.TicketRequest{Queue: "duel",
		Players: []contracts.Player{{ID: "p-1", Skill: 1520}}, Latencies: map[string]float64{"eu-west": 31}})
	b := c.createTicket(frontURL, contracts.TicketRequest{Queue: "duel",
		Players: []contracts.Player{{ID: "p-2", Skill: 1490}}, Latencies: map[string]float64{"eu-west": 45}})
	if a.Status != contracts.StatusSearching || a.Version != 1 {
		t.Fatalf("new ticket = %s v%d, want searching v1", a.Status, a.Version)
	}
	ta := c.awaitTerminal(frontURL, a.ID, 10*time.Second)
	tb := c.awaitTerminal(frontURL, b.ID, 10*time.Second)
	for _, tk := range []contracts.Ticket{ta, tb} {
		if tk.Status != contracts.StatusAssigned {
			t.Fatalf("ticket %s ended %s (%s), want assigned", tk.ID, tk.Status, tk.Reason)
		}
		if tk.Match == nil || tk.Assignment == nil || tk.Assignment.ServerID != "gs-1" || tk.Assignment.Region != "eu-west" {
			t.Fatalf("ticket %s: match %+v assignment %+v", tk.ID, tk.Match, tk.Assignment)
		}
	}
	if ta.Match.ID != tb.Match.ID || ta.Match.Region != "eu-west" || len(ta.Match.Teams) != 2 {
		t.Fatalf("tickets in different or malformed matches: %+v / %+v", ta.Match, tb.Match)
	}
	if ta.Version != 3 {
		t.Errorf("assigned ticket at version %d, want 3 (searching, matched, assigned)", ta.Version)
	}
	var allocs contracts.Allocations
	c.do(http.MethodGet, assignerURL+"/v1/servers/gs-1/allocations", nil, &allocs)
	if len(allocs.Allocations) != 1 || allocs.Allocations[0].MatchID != ta.Match.ID {
		t.Fatalf("allocations = %+v, want the one match", allocs)
	}
	if code := c.do(http.MethodDelete, frontURL+"/v1/tickets/"+a.ID, nil, nil); code != http.StatusConflict {
		t.Errorf("cancel of an assigned ticket: %d, want 409", code)
	}
	if code := c.do(http.MethodDelete, assignerURL+"/v1/servers/gs-1/matches/"+ta.Match.ID, nil, nil); code != http.StatusNoContent {
		t.Fatalf("end match: %d, want 204", code)
	}
	var srv contracts.Server
	c.do(http.MethodGet, assignerURL+"/v1/servers/gs-1", nil, &srv)
	if srv.Allocated != 0 {
		t.Errorf("server still hosts %d matches after the end", srv.Allocated)
	}
	// The players are free to queue again.
	c.createTicket(frontURL, player("p-1", 1500))
}

// TestManyPlayersTwoMatchers: 2,000 players through two matchers racing on
// one pool; every player ends in exactly one match, and every match is
// assigned (invariants 4.1 and 4.3).
func TestManyPlayersTwoMatchers(t *testing.T) {
	const players = 2000
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			s := startStack(t, m, stackOptions{matchers: 2, assigners: 2})
			c := newClient(t)
			for i := range 4 {
				c.registerServer(s.assignerURL, fmt.Sprintf("gs-%d", i), "eu-west", players/8+1)
			}
			ids := make([]string, players)
			var wg sync.WaitGroup
			sem := make(chan struct{}, 32)
			for i := range players {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					// One skill band, so that everyone has a partner
					// within the window at once.
					tk := c.createTicket(s.frontURL, player(fmt.Sprintf("p-%d", i), 1500+rand.Float64()*40))
					ids[i] = tk.ID
				}()
			}
			wg.Wait()
			matchOf := make(map[string][]string) // match id → player ids
			var mu sync.Mutex
			for i, id := range ids {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					tk := c.awaitTerminal(s.frontURL, id, 60*time.Second)
					if tk.Status != contracts.StatusAssigned {
						t.Errorf("player %d: ticket %s (%q), want assigned", i, tk.Status, tk.Reason)
						return
					}
					mu.Lock()
					matchOf[tk.Match.ID] = append(matchOf[tk.Match.ID], tk.Players[0].ID)
					mu.Unlock()
				}()
			}
			wg.Wait()
			seen := make(map[string]string)
			for match, ps := range matchOf {
				if len(ps) != 2 {
					t.Errorf("match %s holds %d tickets: %v", match, len(ps), ps)
				}
				for _, p := range ps {
					if other, dup := seen[p]; dup {
						t.Errorf("player %s is in matches %s and %s", p, other, match)
					}
					seen[p] = match
				}
			}
			if len(seen) != players {
				t.Errorf("%d players matched, want %d", len(seen), players)
			}
			var allocated int
			for i := range 4 {
				var srv contracts.Server
				c.do(http.MethodGet, fmt.Sprintf("%s/v1/servers/gs-%d", s.assignerURL, i), nil, &srv)
				if srv.Allocated > srv.Capacity {
					t.Errorf("server %s over capacity: %d > %d", srv.ID, srv.Allocated, srv.Capacity)
				}
				allocated += srv.Allocated
			}
			if allocated != len(matchOf) {
				t.Errorf("servers host %d matches, want %d (one allocation per match)", allocated, len(matchOf))
			}
		})
	}
}

// TestCancelRacesMatching: cancels fired while matching runs. A cancelled
// ticket is never in a match, and a cancel after the match answers 409
// (invariant 4.6).
func TestCancelRacesMatching(t *testing.T) {
	const pairs = 150
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			s := startStack(t, m, stackOptions{matchers: 2})
			c := newClient(t)
			c.registerServer(s.assignerURL, "gs-1", "eu-west", pairs)
			var (
				wg                   sync.WaitGroup
				cancelled, conflicts atomic.Int64
			)
			for i := range pairs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a := c.createTicket(s.frontURL, player(fmt.Sprintf("a-%d", i), 1500))
					c.createTicket(s.frontURL, player(fmt.Sprintf("b-%d", i), 1500))
					code := c.do(http.MethodDelete, s.frontURL+"/v1/tickets/"+a.ID, nil, nil)
					final := c.awaitTerminal(s.frontURL, a.ID, 30*time.Second)
					switch code {
					case http.StatusOK:
						cancelled.Add(1)
						if final.Status != contracts.StatusCancelled || final.Match != nil {
							t.Errorf("cancel answered 200 but ticket ended %s in match %+v", final.Status, final.Match)
						}
					case http.StatusConflict:
						conflicts.Add(1)
						if final.Status != contracts.StatusAssigned {
							t.Errorf("cancel answered 409 but ticket ended %s", final.Status)
						}
					default:
						t.Errorf("cancel answered %d", code)
					}
				}()
			}
			wg.Wait()
			// Every allocated match holds only assigned tickets: none of
			// them was cancelled.
			var allocs contracts.Allocations
			c.do(http.MethodGet, s.assignerURL+"/v1/servers/gs-1/allocations", nil, &allocs)
			for _, al := range allocs.Allocations {
				for _, id := range al.TicketIDs {
					var tk contracts.Ticket
					c.do(http.MethodGet, s.frontURL+"/v1/tickets/"+id, nil, &tk)
					if tk.Status != contracts.StatusAssigned {
						t.Errorf("match %s holds ticket %s in status %s", al.MatchID, id, tk.Status)
					}
				}
			}
			t.Logf("%d cancels won, %d lost to a match", cancelled.Load(), conflicts.Load())
		})
	}
}

// TestServerCapacityOne: three duels and one server of capacity 1, with two
// assigners: one match at a time, the next placed once the first ends
// (invariant 4.4).
func TestServerCapacityOne(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			q := testQueue()
			q.AssignDeadline = time.Minute
			s := startStack(t, m, stackOptions{assigners: 2, queue: q})
			c := newClient(t)
			c.registerServer(s.assignerURL, "gs-1", "eu-west", 1)
			const matches = 3
			var ids []string
			for i := range 2 * matches {
				ids = append(ids, c.createTicket(s.frontURL, player(fmt.Sprintf("p-%d", i), 1500)).ID)
			}
			for round := range matches {
				var allocs contracts.Allocations
				deadline := time.Now().Add(10 * time.Second)
				for len(allocs.Allocations) == 0 && time.Now().Before(deadline) {
					c.do(http.MethodGet, fmt.Sprintf("%s/v1/servers/gs-1/allocations?wait=2s&after=%d", s.assignerURL, allocs.Version), nil, &allocs)
				}
				if len(allocs.Allocations) != 1 {
					t.Fatalf("round %d: server hosts %d matches, want 1", round, len(allocs.Allocations))
				}
				// Give the assigners every chance to over-allocate. The
				// matches still waiting come back every AssignRetryDelay
				// and are refused while the server is full: wait for
				// 2 × waiting more refusals. At most one per waiting match
				// can predate this round's free slot (refused before the
				// last end, counted only now), so at least waiting of
				// them ran against the full server, each a chance to place
				// a second match, and each a retry delay or more after
				// any attempt that raced this round's placement.
				if waiting := matches - 1 - round; waiting > 0 {
					want := s.assignments(t, "duel", "no_capacity") + 2*waiting
					deadline := time.Now().Add(10 * time.Second)
					for got := 0; got < want; got = s.assignments(t, "duel", "no_capacity") {
						var srv contracts.Server
						c.do(http.MethodGet, s.assignerURL+"/v1/servers/gs-1", nil, &srv)
						if srv.Allocated != 1 {
							t.Fatalf("round %d: server allocated %d with capacity 1", round, srv.Allocated)
						}
						if time.Now().After(deadline) {
							t.Fatalf("round %d: waiting matches refused %d times within 10s, want %d", round, got, want)
						}
						time.Sleep(5 * time.Millisecond)
					}
				}
				var srv contracts.Server
				c.do(http.MethodGet, s.assignerURL+"/v1/servers/gs-1", nil, &srv)
				if srv.Allocated != 1 {
					t.Fatalf("round %d: server allocated %d with capacity 1", round, srv.Allocated)
				}
				assigned := 0
				for _, id := range ids {
					var tk contracts.Ticket
					c.do(http.MethodGet, s.frontURL+"/v1/tickets/"+id, nil, &tk)
					if tk.Status == contracts.StatusAssigned {
						assigned++
					}
				}
				if want := 2 * (round + 1); assigned != want {
					t.Fatalf("round %d: %d tickets assigned, want %d", round, assigned, want)
				}
				match := allocs.Allocations[0].MatchID
				if code := c.do(http.MethodDelete, s.assignerURL+"/v1/servers/gs-1/matches/"+match, nil, nil); code != http.StatusNoContent {
					t.Fatalf("end match: %d", code)
				}
			}
		})
	}
}

// TestNoCapacityFails: with no server, a match's tickets fail with
// no_server_capacity once the assignment deadline passes.
func TestNoCapacityFails(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			s := startStack(t, m, stackOptions{})
			c := newClient(t)
			a := c.createTicket(s.frontURL, player("p-1", 1500))
			c.createTicket(s.frontURL, player("p-2", 1500))
			tk := c.awaitTerminal(s.frontURL, a.ID, 15*time.Second)
			if tk.Status != contracts.StatusFailed || tk.Reason != contracts.ReasonNoServerCapacity {
				t.Fatalf("ticket ended %s (%q), want failed (no_server_capacity)", tk.Status, tk.Reason)
			}
		})
	}
}

// TestUnmatchedTicketExpires: a ticket nobody matches ends expired after
// its queue's max wait, and its player may queue again.
func TestUnmatchedTicketExpires(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			q := testQueue()
			q.MaxWait = time.Second
			s := startStack(t, m, stackOptions{queue: q})
			c := newClient(t)
			a := c.createTicket(s.frontURL, player("p-1", 1500))
			c.createTicket(s.frontURL, player("p-far", 9000)) // out of any window
			tk := c.awaitTerminal(s.frontURL, a.ID, 10*time.Second)
			if tk.Status != contracts.StatusExpired {
				t.Fatalf("ticket ended %s, want expired", tk.Status)
			}
			c.createTicket(s.frontURL, player("p-1", 1500))
		})
	}
}

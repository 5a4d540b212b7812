package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// The race tests start their callers together and spread them over every
// store value given (one value, or two sharing a backend).

// together runs fn(i) for i in [0, n) on n goroutines released at once, and
// waits for them.
func together(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// testRaceClaim races matchers claiming overlapping pairs of one pool.
func testRaceClaim(t *testing.T, stores []store.Store) { raceClaim(t, stores, 2) }

// testRaceClaimTen races matchers claiming overlapping ten-ticket matches
// (5v5 of solos): each claim is all or nothing.
func testRaceClaimTen(t *testing.T, stores []store.Store) { raceClaim(t, stores, 10) }

func raceClaim(t *testing.T, stores []store.Store, size int) {
	const (
		tickets   = 200
		workers   = 8
		perWorker = 60
	)
	h := newHarness(t, stores[0])
	all := make([]contracts.Ticket, tickets)
	for i := range all {
		all[i] = h.create(tid(fmt.Sprintf("t-%03d", i)), fmt.Sprintf("p-%03d", i))
	}

	won := make([][]contracts.Match, workers)
	together(workers, func(w int) {
		s := stores[w%len(stores)]
		rng := rand.New(rand.NewPCG(1, uint64(w)))
		for k := range perWorker {
			var picked []contracts.Ticket
			for _, i := range rng.Perm(tickets)[:size] {
				picked = append(picked, all[i])
			}
			m := newMatch(mid(fmt.Sprintf("m-%d-%d", w, k)), euWest, picked...)
			err := s.ClaimMatch(h.ctx, m, at(1))
			switch {
			case err == nil:
				won[w] = append(won[w], m)
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("ClaimMatch(%s): %v, want nil or a conflict", m.ID, err)
			}
		}
	})

	owner := map[string]string{}
	wins := 0
	for _, ms := range won {
		for _, m := range ms {
			wins++
			if _, err := h.s.Match(h.ctx, m.ID); err != nil {
				t.Errorf("Match(%s) of a successful claim: %v", m.ID, err)
			}
			if len(m.TicketIDs) != size {
				t.Fatalf("match %s of %d tickets, want %d", m.ID, len(m.TicketIDs), size)
			}
			for _, id := range m.TicketIDs {
				if prev, ok := owner[id]; ok {
					t.Errorf("ticket %s claimed by both %s and %s", id, prev, m.ID)
				}
				owner[id] = m.ID
			}
		}
	}
	if wins == 0 {
		t.Fatalf("no claim succeeded")
	}
	for _, tk := range all {
		got := h.get(tk.ID)
		want, claimed := owner[tk.ID]
		switch {
		case claimed && (got.Status != contracts.StatusMatched || got.Version != 2 || got.Match == nil || got.Match.ID != want):
			t.Errorf("ticket %s won by %s is %s at version %d in match %s", tk.ID, want, got.Status, got.Version, jsonOf(got.Match))
		case !claimed && (got.Status != contracts.StatusSearching || got.Version != 1):
			t.Errorf("unclaimed ticket %s is %s at version %d", tk.ID, got.Status, got.Version)
		}
	}
}

// testRaceCancelClaim races a player's cancel against a matcher's claim.
func testRaceCancelClaim(t *testing.T, stores []store.Store) {
	h := newHarness(t, stores[0])
	for round := range 30 {
		a := h.create(tid(fmt.Sprintf("a-%d", round)), fmt.Sprintf("p-a-%d", round))
		b := h.create(tid(fmt.Sprintf("b-%d", round)), fmt.Sprintf("p-b-%d", round))
		m := newMatch(mid(fmt.Sprintf("m-%d", round)), euWest, a, b)
		var (
			cancelled contracts.Ticket
			cancelErr error
			claimErr  error
		)
		together(2, func(i int) {
			s := stores[(round+i)%len(stores)]
			if i == 0 {
				cancelled, cancelErr = s.CancelTicket(h.ctx, a.ID, at(1))
			} else {
				claimErr = s.ClaimMatch(h.ctx, m, at(1))
			}
		})
		switch {
		case cancelErr == nil && claimErr != nil:
			checkConflict(t, "ClaimMatch losing to a cancel", claimErr, a.ID, contracts.StatusCancelled)
			if cancelled.Status != contracts.StatusCancelled {
				t.Errorf("round %d: CancelTicket answered a %s ticket", round, cancelled.Status)
			}
			h.want(a.ID, contracts.StatusCancelled, 2)
			h.want(b.ID, contracts.StatusSearching, 1)
			if _, err := h.s.Match(h.ctx, m.ID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("round %d: Match after a lost claim: %v, want ErrNotFound", round, err)
			}
		case claimErr == nil && cancelErr != nil:
			checkConflict(t, "CancelTicket losing to a claim", cancelErr, a.ID, contracts.StatusMatched)
			h.want(a.ID, contracts.StatusMatched, 2)
			h.want(b.ID, contracts.StatusMatched, 2)
		default:
			t.Fatalf("round %d: cancel = %v, claim = %v; want exactly one to succeed", round, cancelErr, claimErr)
		}
	}
}

// testRaceCreateSamePlayer races creates of tickets for one player.
func testRaceCreateSamePlayer(t *testing.T, stores []store.Store) {
	const workers = 10
	h := newHarness(t, stores[0])
	for round := range 20 {
		player := fmt.Sprintf("p-%d", round)
		errs := make([]error, workers)
		together(workers, func(i int) {
			tk := newTicket(tid(fmt.Sprintf("t-%d-%d", round, i)), player)
			errs[i] = stores[i%len(stores)].CreateTicket(h.ctx, tk, at(3600))
		})
		winner := ""
		for i, err := range errs {
			if err == nil {
				if winner != "" {
					t.Fatalf("round %d: tickets %s and t-%d-%d both created for player %s", round, winner, round, i, player)
				}
				winner = tid(fmt.Sprintf("t-%d-%d", round, i))
			}
		}
		if winner == "" {
			t.Fatalf("round %d: no create succeeded: %v", round, errs)
		}
		for i, err := range errs {
			if id := tid(fmt.Sprintf("t-%d-%d", round, i)); id != winner {
				checkBusy(t, err, player, winner)
				h.wantNoTicket(id)
			}
		}
		h.want(winner, contracts.StatusSearching, 1)
	}
}

// testRaceAssignOneSlot races assigners for the one slot of a server.
func testRaceAssignOneSlot(t *testing.T, stores []store.Store) {
	const matches = 3
	h := newHarness(t, stores[0])
	for round := range 10 {
		// Each round has its own region, so only its own server qualifies.
		region := fmt.Sprintf("region-%d", round)
		server := fmt.Sprintf("gs-%d", round)
		h.server(server, region, 1)
		ms := make([]contracts.Match, matches)
		for i := range ms {
			ms[i] = h.matched(mid(fmt.Sprintf("m-%d-%d", round, i)), region)
		}
		errs := make([]error, matches)
		together(matches, func(i int) {
			_, errs[i] = stores[i%len(stores)].AssignMatch(h.ctx, ms[i].ID, at(1))
		})
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: matches %s and %s both assigned to a server of capacity 1", round, ms[winner].ID, ms[i].ID)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrNoCapacity):
				t.Errorf("round %d: AssignMatch(%s): %v, want nil or ErrNoCapacity", round, ms[i].ID, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no match assigned: %v", round, errs)
		}
		if srv := h.getServer(server); srv.Allocated != 1 {
			t.Errorf("round %d: server allocated %d, want 1", round, srv.Allocated)
		}
		if a := h.allocations(server); len(a.Allocations) != 1 || a.Allocations[0].MatchID != ms[winner].ID {
			t.Errorf("round %d: allocations %s, want only %s", round, jsonOf(a), ms[winner].ID)
		}
		for i, m := range ms {
			status, version := contracts.StatusMatched, int64(2)
			if i == winner {
				status, version = contracts.StatusAssigned, 3
			}
			for _, id := range m.TicketIDs {
				h.want(id, status, version)
			}
		}
	}
}

// testRaceAssignManyServers races assigners over a fleet with fewer slots
// than matches.
func testRaceAssignManyServers(t *testing.T, stores []store.Store) {
	const (
		matches = 30
		workers = 6
	)
	h := newHarness(t, stores[0])
	capacity := map[string]int{"gs-1": 1, "gs-2": 2, "gs-3": 3, "gs-4": 4}
	slots := 0
	for id, c := range capacity {
		h.server(id, euWest, c)
		slots += c
	}
	work := make(chan contracts.Match, matches)
	for i := range matches {
		work <- h.matched(mid(fmt.Sprintf("m-%02d", i)), euWest)
	}
	close(work)

	var (
		mu       sync.Mutex
		assigned = map[string]string{} // match → server
	)
	together(workers, func(w int) {
		s := stores[w%len(stores)]
		for m := range work {
			a, err := s.AssignMatch(h.ctx, m.ID, at(1))
			switch {
			case err == nil:
				mu.Lock()
				assigned[m.ID] = a.ServerID
				mu.Unlock()
			case !errors.Is(err, store.ErrNoCapacity):
				t.Errorf("AssignMatch(%s): %v, want nil or ErrNoCapacity", m.ID, err)
			}
		}
	})

	// Slots are never freed here, so a match is refused only once every
	// slot is taken: exactly as many matches as slots are assigned.
	if len(assigned) != slots {
		t.Errorf("%d matches assigned, want %d (every slot)", len(assigned), slots)
	}
	hosted := map[string]string{}
	for id, c := range capacity {
		srv := h.getServer(id)
		a := h.allocations(id)
		if srv.Allocated > c || srv.Allocated != len(a.Allocations) {
			t.Errorf("server %s of capacity %d: allocated %d, %d allocations", id, c, srv.Allocated, len(a.Allocations))
		}
		for _, al := range a.Allocations {
			if prev, ok := hosted[al.MatchID]; ok {
				t.Errorf("match %s hosted by both %s and %s", al.MatchID, prev, id)
			}
			hosted[al.MatchID] = id
		}
	}
	for m, srv := range assigned {
		if hosted[m] != srv {
			t.Errorf("match %s assigned to %s but hosted by %q", m, srv, hosted[m])
		}
	}
	if len(hosted) != len(assigned) {
		t.Errorf("%d matches hosted, %d assigned", len(hosted), len(assigned))
	}
}

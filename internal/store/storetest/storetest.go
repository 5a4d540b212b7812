// Package storetest is the conformance suite for store.Store. Every
// implementation runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return memstore.New(memstore.Options{}) })
//	}
//
// Each subtest gets a fresh, empty store from newStore and drives it on a
// virtual clock that starts at a fixed time, so the suite never depends on
// the wall clock. Implementations whose values can share one backend (two
// clients of the same Redis) also call RunShared, which checks that changes
// made through one value are seen through the other.
package storetest

import (
	"testing"

	"github.com/quickmatch/quickmatch/internal/store"
)

type test struct {
	name string
	fn   func(t *testing.T, h *harness)
}

// Run checks every guarantee of store.Store. newStore must return an empty
// store that no other test uses, and release it in t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	fresh := func(t *testing.T) *harness { return newHarness(t, newStore(t)) }
	single := func(t *testing.T) []store.Store { return []store.Store{newStore(t)} }
	tests := []test{
		{"CreateTicketRoundTrip", testCreateRoundTrip},
		{"CreateTicketPlayerBusy", testCreatePlayerBusy},
		{"PlayersReleasedByStatus", testPlayersReleased},
		{"RecordsAreCopied", testRecordsAreCopied},
		{"CreateTicketOnce", testCreateTicketOnce},
		{"Unannounced", testUnannounced},
		{"ReleaseStaleKeepsLiveClaims", testReleaseStaleKeepsLiveClaims},
		{"OverdueMatches", testOverdueMatches},
		{"DeleteTicket", testDeleteTicket},
		{"CancelTicket", testCancelTicket},
		{"CancelTicketConflict", testCancelConflict},
		{"ExpireTicket", testExpireTicket},
		{"ExpireDue", testExpireDue},
		{"AddToPool", testAddToPool},
		{"CandidatesOrder", testCandidatesOrder},
		{"CandidatesEntryRoundTrip", testCandidatesRoundTrip},
		{"ClaimMatch", testClaimMatch},
		{"ClaimMatchAllOrNothing", testClaimAllOrNothing},
		{"ClaimMatchMatchedTicket", testClaimMatchedTicket},
		{"ClaimMatchMissingTicket", testClaimMissingTicket},
		{"ClaimMatchOutsidePool", testClaimOutsidePool},
		{"AcceptAll", testAcceptAll},
		{"AcceptDecline", testDecline},
		{"AcceptTimeout", testAcceptTimeout},
		{"AnswerNotOffered", testAnswerNotOffered},
		{"Backfill", testBackfill},
		{"BackfillRules", testBackfillRules},
		{"RegisterServer", testRegisterServer},
		{"Regions", testRegions},
		{"Stats", testStats},
		{"DrainServer", testDrainServer},
		{"AssignMatchChoosesServer", testAssignChoosesServer},
		{"AssignMatchFreeSlots", testAssignFreeSlots},
		{"AssignMatch", testAssignMatch},
		{"AssignMatchErrors", testAssignErrors},
		{"AssignMatches", testAssignMatches},
		{"AssignMatchesLikeOneByOne", testAssignMatchesLikeOneByOne},
		{"FailMatch", testFailMatch},
		{"EndMatch", testEndMatch},
		{"WatchTicket", testWatchTicket},
		{"Listen", func(t *testing.T, h *harness) { testListen(t, h.s, h.s) }},
		{"ListenCarriesTicket", func(t *testing.T, h *harness) { testListenCarries(t, h.s, h.s) }},
		{"Ping", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := fresh(t)
			h.fresh = fresh
			tc.fn(t, h)
		})
	}
	runRaces(t, single)
}

// RunShared checks that two store values sharing one backend behave as one
// store: newPair returns two values over the same empty backend, released in
// t.Cleanup. Changes made through the second must reach a listener on the
// first, and the race tests spread their callers over both.
func RunShared(t *testing.T, newPair func(t *testing.T) (store.Store, store.Store)) {
	t.Run("ListenAcrossValues", func(t *testing.T) {
		a, b := newPair(t)
		testListen(t, a, b)
	})
	t.Run("ListenCarriesTicketAcrossValues", func(t *testing.T) {
		a, b := newPair(t)
		testListenCarries(t, a, b)
	})
	runRaces(t, func(t *testing.T) []store.Store {
		a, b := newPair(t)
		return []store.Store{a, b}
	})
}

func runRaces(t *testing.T, newStores func(t *testing.T) []store.Store) {
	races := []struct {
		name string
		fn   func(t *testing.T, stores []store.Store)
	}{
		{"RaceClaimMatch", testRaceClaim},
		{"RaceClaimTenTicketMatch", testRaceClaimTen},
		{"RaceCancelClaim", testRaceCancelClaim},
		{"RaceAcceptDecline", testRaceAcceptDecline},
		{"RaceBackfill", testRaceBackfill},
		{"RaceCreateSamePlayer", testRaceCreateSamePlayer},
		{"RaceAssignOneSlot", testRaceAssignOneSlot},
		{"RaceAssignManyServers", testRaceAssignManyServers},
		{"RaceAssignMatches", testRaceAssignMatches},
	}
	for _, tc := range races {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStores(t)) })
	}
}

func testPing(t *testing.T, h *harness) {
	if err := h.s.Ping(h.ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

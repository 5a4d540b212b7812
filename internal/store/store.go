// Package store defines the state every service shares — tickets, the
// matching pool, matches and the game-server registry — and the guarantees
// any implementation of it keeps. Two implementations pass one conformance
// suite (package storetest): memstore for the embedded mode and redisstore
// for the distributed one.
//
// Every operation that changes state is atomic: it happens whole or not at
// all, whatever other callers do at the same time, in any process. Times are
// passed in by the caller so that tests can run on a virtual clock.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

var (
	// ErrNotFound: no such ticket, match, server or allocation.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the record is not in a state that allows the change.
	ErrConflict = errors.New("conflict")
	// ErrPlayerBusy: a player of the new ticket already has a live ticket.
	ErrPlayerBusy = errors.New("player already has a live ticket")
	// ErrNoCapacity: no live, undrained server with a free slot serves the
	// match's region.
	ErrNoCapacity = errors.New("no server capacity")
	// ErrUnreachable: the store could not be reached at all, so the call
	// changed nothing. Any other failure of a call that changes state
	// leaves it unknown whether the change was made: a reply lost on its
	// way back looks the same as a request that never arrived.
	ErrUnreachable = errors.New("store unreachable")
)

// PlayerBusyError says which player is busy and with which ticket. It
// matches ErrPlayerBusy under errors.Is.
type PlayerBusyError struct {
	PlayerID string
	TicketID string
}

func (e *PlayerBusyError) Error() string {
	return fmt.Sprintf("player %s already has live ticket %s", e.PlayerID, e.TicketID)
}

func (e *PlayerBusyError) Is(target error) bool { return target == ErrPlayerBusy }

// ConflictError says which ticket blocked a change and in what status. It
// matches ErrConflict under errors.Is.
type ConflictError struct {
	TicketID string
	Status   contracts.Status
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("ticket %s is %s", e.TicketID, e.Status)
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// ErrReplay: a create carried an idempotency key that an earlier create
// already used.
var ErrReplay = errors.New("idempotency key already used")

// ReplayError names the ticket of the earlier create with the same key. It
// matches ErrReplay under errors.Is. Mismatch says the earlier create had
// another fingerprint: the key was reused for a different request.
type ReplayError struct {
	TicketID string
	Mismatch bool
}

func (e *ReplayError) Error() string {
	if e.Mismatch {
		return fmt.Sprintf("idempotency key already used for ticket %s by a different request", e.TicketID)
	}
	return fmt.Sprintf("idempotency key already used for ticket %s", e.TicketID)
}

func (e *ReplayError) Is(target error) bool { return target == ErrReplay }

// Idempotency ties a create to a client's idempotency key, so that a retry
// of a create whose answer was lost finds the first ticket instead of
// making a second one.
type Idempotency struct {
	// Key names the request: the client's key, qualified by whoever sent
	// it, so that two clients' keys never meet. Empty means no key.
	Key string
	// Fingerprint identifies the request's content.
	Fingerprint string
}

// PoolEntry is what matching needs to know of a ticket waiting in the pool.
type PoolEntry struct {
	TicketID string `json:"id"`
	// Skill is the party's matching skill.
	Skill float64 `json:"skill"`
	// Players is the party size.
	Players int `json:"players"`
	// Party is the party itself, so that a match can be formed from pool
	// entries without reading their tickets.
	Party     []contracts.Player `json:"party,omitempty"`
	CreatedAt time.Time          `json:"created_at"`
	Latencies map[string]float64 `json:"latencies,omitempty"`
}

// Answer is what AnswerMatch did.
type Answer struct {
	// Ticket is the answering ticket after the answer.
	Ticket contracts.Ticket
	// Ready is the match this answer completed: it now waits for a
	// server.
	Ready *contracts.Match
	// Requeued lists the tickets a decline sent back to searching.
	Requeued []contracts.Ticket
}

// OldestBackfillFirst orders backfill requests as Store.Backfills lists
// them: oldest first, ties by match id.
func OldestBackfillFirst(a, b contracts.Backfill) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.MatchID, b.MatchID)
}

// AssignResult is what AssignMatches answers for one match: what
// AssignMatch answers, the assignment or the error.
type AssignResult struct {
	Assignment contracts.Assignment
	Err        error
}

// ChangeKind says what a Change is about.
type ChangeKind uint8

const (
	// ChangeResync means changes may have been missed (the listener has
	// just started or reconnected): every waiter should read again.
	ChangeResync ChangeKind = iota
	// ChangeTicket: the ticket ID changed and is now at Version, which
	// Change.Ticket, when set, holds.
	ChangeTicket
	// ChangeServer: the allocations of server ID changed and are now at
	// Version.
	ChangeServer
)

// Change is a notification that a record changed.
type Change struct {
	Kind    ChangeKind
	ID      string
	Version int64
	// Ticket, on a ChangeTicket, is the ticket as of Version, carried
	// with the change so that a waiter can answer without reading the
	// store. It is nil when the change did not bring it (a deleted
	// ticket, a notifier that sends none, a resync, a ChangeServer);
	// whoever needs the ticket then reads it.
	Ticket *TicketState
}

// TicketState is a ticket's state as carried by its change. A store may
// send it encoded, to be decoded on first use only, by whoever wants it:
// most changes reach processes that have no waiter for them. It is shared
// by everyone the change reaches, so what Get returns is read-only.
type TicketState struct {
	once   sync.Once
	raw    string
	decode func(string) (contracts.Ticket, error)
	// t is a pointer so that a change nobody decodes costs little.
	t   *contracts.Ticket
	err error
}

// CarryTicket carries t, which nobody may change afterwards.
func CarryTicket(t contracts.Ticket) *TicketState { return &TicketState{t: &t} }

// CarryEncodedTicket carries a ticket as raw, which decode turns into the
// ticket on the first call of Get.
func CarryEncodedTicket(raw string, decode func(string) (contracts.Ticket, error)) *TicketState {
	return &TicketState{raw: raw, decode: decode}
}

// ErrNotCarried: the change did not carry the record.
var ErrNotCarried = errors.New("record not carried with its change")

// Get returns the carried ticket, or an error if s is nil or cannot be
// decoded. Its slices, maps and pointers are shared: do not change them.
func (s *TicketState) Get() (contracts.Ticket, error) {
	if s == nil {
		return contracts.Ticket{}, ErrNotCarried
	}
	if s.decode != nil {
		s.once.Do(func() {
			t, err := s.decode(s.raw)
			s.t, s.err, s.raw = &t, err, ""
		})
	}
	if s.err != nil {
		return contracts.Ticket{}, s.err
	}
	return *s.t, nil
}

// Store is the whole contract. Services depend on the small subsets they use,
// declared where they use them; this interface is what the conformance suite
// checks.
type Store interface {
	// CreateTicket stores t, which the caller has filled in with status
	// searching and version 1, and claims every player of it. If any player
	// already has a live (non-terminal) ticket it returns a
	// *PlayerBusyError and writes nothing. expiresAt is when the reaper may
	// expire the ticket if it is still searching (see ExpireDue).
	CreateTicket(ctx context.Context, t contracts.Ticket, expiresAt time.Time) error
	// CreateTicketOnce is CreateTicket under an idempotency key. If an
	// earlier create with idem.Key stored a ticket that still exists
	// within the store's retention, it writes nothing and answers a
	// *ReplayError naming that ticket (with Mismatch set if the
	// fingerprints differ). Checking the key and storing the ticket are
	// one step, so two creates with one key never both store a ticket. A
	// ticket that DeleteTicket removed frees its key. The key is scoped to
	// the ticket's queue: a retry names the same queue, and a key reused
	// for another queue is not found. An empty idem.Key is CreateTicket.
	CreateTicketOnce(ctx context.Context, t contracts.Ticket, expiresAt time.Time, idem Idempotency) error
	// DeleteTicket undoes CreateTicket for a ticket whose announcement
	// failed: it removes the ticket, its pool entry and expiry, and
	// releases its players. Unknown ids are not an error. A failed publish
	// may still have been delivered, so only a searching ticket is removed,
	// atomically against ClaimMatch: a ticket in any other status was seen
	// by a matcher, and DeleteTicket changes nothing and answers a
	// *ConflictError with that status.
	DeleteTicket(ctx context.Context, id string) error
	// Ticket returns the ticket now, or ErrNotFound.
	Ticket(ctx context.Context, id string) (contracts.Ticket, error)
	// WatchTicket is Ticket for a poll about to wait on the ticket's
	// changes: a store that routes changes to the listeners that asked
	// (redisstore with Options.Listener) adds this process to the
	// ticket's, in the same step as the read, so that no change after the
	// read is missed. Any other store answers Ticket.
	WatchTicket(ctx context.Context, id string) (contracts.Ticket, error)
	// CancelTicket moves a searching ticket to cancelled (version+1,
	// updated_at=now), removes it from the pool, releases its players and
	// returns it. On a cancelled ticket it changes nothing and returns it
	// with a nil error. On any other status it changes nothing and returns
	// the ticket with a *ConflictError.
	CancelTicket(ctx context.Context, id string, now time.Time) (contracts.Ticket, error)
	// ExpireTicket moves a searching ticket to expired (version+1),
	// removes it from the pool and releases its players. It reports false,
	// and changes nothing, if the ticket is not searching.
	ExpireTicket(ctx context.Context, id string, now time.Time) (bool, error)
	// ExpireDue expires, as ExpireTicket does, up to limit searching
	// tickets whose expiresAt is at or before now, and returns their ids.
	// It also forgets the expiries of tickets that are no longer searching
	// and may purge terminal records older than the store's retention.
	ExpireDue(ctx context.Context, now time.Time, limit int) ([]string, error)
	// Unannounced returns up to limit tickets that are still searching and
	// that no matcher has taken up (put in a pool or a match) although
	// they were created, or last returned by Unannounced, at or before
	// before: a front that died between storing a ticket and publishing it
	// leaves such a ticket. Each ticket returned counts as returned at now,
	// so a caller that republishes them sees each again only if it is
	// still not taken up an interval later.
	Unannounced(ctx context.Context, before, now time.Time, limit int) ([]contracts.Ticket, error)
	// ReleaseStale finishes releases that a process died before making: it
	// deletes the claims that still name a ticket which became terminal or
	// was deleted (up to limit such tickets), and returns how many claims it
	// deleted. It may also repeat a release under way, which is harmless. A claim that names a live ticket
	// is never touched. A store that releases in the same step as the
	// status change has nothing to finish.
	ReleaseStale(ctx context.Context, limit int) (int, error)

	// AddToPool puts e into queue's pool if its ticket is still searching,
	// and reports whether it is there now. Adding again is harmless.
	AddToPool(ctx context.Context, queue string, e PoolEntry) (bool, error)
	// Candidates returns up to limit entries of queue's pool whose skill is
	// within maxGap of skill, nearest first; ties in distance go to the
	// entry created first.
	Candidates(ctx context.Context, queue string, skill, maxGap float64, limit int) ([]PoolEntry, error)
	// ClaimMatch forms m: if every ticket in m.TicketIDs is searching, each
	// becomes matched (version+1, match=m.Ref(), updated_at=now) and leaves
	// the pool, and m is stored; otherwise nothing changes and the first
	// ticket that is not searching is reported in a *ConflictError (status
	// "" if it does not exist). Claiming a match id that is already stored
	// changes nothing and returns nil.
	//
	// A match with an AcceptDeadline asks its tickets first: they become
	// pending_acceptance instead (with Acceptance{Deadline:
	// m.AcceptDeadline}), and the match waits for AnswerMatch or
	// ExpireAcceptances rather than for a server: OverdueMatches does not
	// see it, and AssignMatch answers ErrConflict for it.
	ClaimMatch(ctx context.Context, m contracts.Match, now time.Time) error
	// AnswerMatch records the answer of ticket id to the match it is
	// offered. Accepting marks the ticket accepted (version+1); the
	// acceptance that completes the match moves every ticket of it to
	// matched (version+1, Acceptance cleared), and the match then waits
	// for a server as a match claimed without acceptance does
	// (OverdueMatches by its AssignDeadline): Answer.Ready is the match,
	// for the caller to send to the assigners. Declining, before or after
	// an acceptance, ends the ticket cancelled with ReasonDeclined and its
	// players released, and dissolves the match: every other ticket of it
	// goes back to searching (version+1, Match and Acceptance cleared),
	// keeping its CreatedAt, its expiry pushed back by the time it was
	// offered the match, and unannounced (see Unannounced) until a matcher
	// takes it up again: Answer.Requeued lists them, for the caller to
	// announce. Each answer is one atomic step against claims, cancels,
	// other answers and ExpireAcceptances.
	//
	// Answering again what the ticket already answered changes nothing and
	// answers the ticket as it is (with Ready set again while the match it
	// accepted waits for a server, so that a caller that died before
	// sending it, or whose send failed, may send it again). ErrNotFound for
	// an unknown ticket; a *ConflictError for one that was not offered a
	// match, or whose match has gone on or fallen through.
	AnswerMatch(ctx context.Context, id string, accept bool, now time.Time) (Answer, error)
	// ExpireAcceptances dissolves up to limit matches whose AcceptDeadline
	// is at or before now: the tickets that did not accept end cancelled
	// with ReasonAcceptTimeout, their players released; the others go back
	// to searching as after a decline (AnswerMatch). It answers the
	// tickets it sent back to searching, for the caller to announce, and
	// the ids of those it cancelled.
	ExpireAcceptances(ctx context.Context, now time.Time, limit int) (requeued []contracts.Ticket, timedOut []string, err error)
	// OverdueMatches returns up to limit matches that wait for a server
	// although their assignment deadline passed at or before before: the
	// message that was to place or fail them is gone (a store that lost
	// its last writes in a crash leaves such matches). Each match returned
	// counts as due again only at now, so a caller that sends them to the
	// assigners again sees each again only if it is still waiting an
	// interval later.
	OverdueMatches(ctx context.Context, before, now time.Time, limit int) ([]contracts.Match, error)
	// Match returns a stored match or ErrNotFound.
	Match(ctx context.Context, id string) (contracts.Match, error)

	// RegisterServer creates or refreshes server id: address, region and
	// capacity are set from req and it is live until now+ttl. It keeps its
	// allocations, its version and its draining flag: a drained server
	// stays drained while its record lives.
	RegisterServer(ctx context.Context, id string, req contracts.ServerRequest, ttl time.Duration, now time.Time) (contracts.Server, error)
	// DrainServer stops new matches going to server id and returns it;
	// ErrNotFound if unknown. Draining again is harmless.
	DrainServer(ctx context.Context, id string) (contracts.Server, error)
	// Server returns a registered server or ErrNotFound.
	Server(ctx context.Context, id string) (contracts.Server, error)
	// Regions lists, in no order, every region a server has registered
	// in; a region stays listed at least while a server record in it
	// lives.
	Regions(ctx context.Context) ([]string, error)
	// Stats counts what the gauges show, at now: per queue that has had
	// tickets, and per region a server has registered in.
	Stats(ctx context.Context, now time.Time) (Stats, error)
	// Allocations returns the matches server id hosts now, with the
	// server's version; ErrNotFound if the server is unknown.
	Allocations(ctx context.Context, serverID string) (contracts.Allocations, error)
	// AssignMatch places stored match id on a server and returns the
	// assignment. The server is live at now, not draining, below capacity,
	// and serves the match's region (any region if the match's is empty);
	// among those it has the most free slots, ties to the smallest id. In
	// the same step: the server's allocated count and version go up by one
	// and it gains the allocation; every ticket of the match becomes
	// assigned (version+1) with the assignment, and its players are
	// released. A match already assigned returns its assignment again and
	// changes nothing. ErrNotFound for an unknown match, ErrConflict for a
	// failed one, ErrNoCapacity when no server qualifies.
	AssignMatch(ctx context.Context, matchID string, now time.Time) (contracts.Assignment, error)
	// AssignMatches is AssignMatch for each of ids, as if called for one
	// after the other in that order, and answers one result per id, in
	// that order: an id given twice answers the second time as a repeat
	// of AssignMatch does. Each match is placed atomically, as by
	// AssignMatch; the batch as a whole is not one step, and a store
	// failure may fail some results and not others. It is for callers
	// with many matches at hand: a store that pays a round trip per call
	// places them in a few round trips in all.
	AssignMatches(ctx context.Context, ids []string, now time.Time) []AssignResult
	// FailMatch fails an unassigned match: every ticket of it becomes failed
	// with reason (version+1) and its players are released. Failing again
	// is harmless; ErrConflict if the match is assigned, ErrNotFound if
	// unknown.
	FailMatch(ctx context.Context, matchID, reason string, now time.Time) error
	// EndMatch removes match matchID from server serverID, freeing its slot
	// (allocated-1, version+1), and withdraws its backfill request, if
	// any. ErrNotFound if the server does not host it.
	EndMatch(ctx context.Context, serverID, matchID string, now time.Time) error

	// RequestBackfill records b, the request of server b.ServerID for
	// players to fill the open seats of match b.MatchID, which it must
	// host (ErrNotFound otherwise), replacing any earlier request of the
	// match: a server asks again with the seats open now. A request with
	// no open seat withdraws the match's request. It answers the request
	// as recorded (CreatedAt is that of the first request still open).
	RequestBackfill(ctx context.Context, b contracts.Backfill) (contracts.Backfill, error)
	// Backfills lists the open backfill requests of queue, oldest first.
	Backfills(ctx context.Context, queue string) ([]contracts.Backfill, error)
	// FillBackfill seats the party of ticket ticketID in team of match
	// matchID's backfill request. If the ticket is searching and the
	// team has as many open seats as the party has players, then in one
	// step the ticket becomes assigned (version+1) to the request's
	// server, with ref as its match (the match's teams with the party
	// in), leaves the pool and its players are released, and the team's
	// open seats go down by the party (the request is gone once none is
	// open). Then the match's allocation on the server gains the party
	// (the server's version+1), for the server to see who joins. A ticket
	// that is not searching is a *ConflictError; a request that is gone
	// or has too few seats left in team, ErrNoCapacity.
	FillBackfill(ctx context.Context, matchID, ticketID string, team int, ref contracts.MatchRef, now time.Time) (contracts.Assignment, error)
	// FinishFills makes the allocation changes of up to limit fills whose
	// process died between the two steps of FillBackfill, and answers how
	// many it made. A store that makes both in one step has none.
	FinishFills(ctx context.Context, limit int) (int, error)

	// Listen calls fn for the changes made by any process from now on,
	// until ctx ends: every server change, and the changes of the tickets
	// this process watches (WatchTicket); a store that cannot route them
	// (memstore) reports every ticket change. It first calls fn with
	// ChangeResync once it is listening, and again whenever it may have
	// missed changes (after a reconnect). fn must not block. A ticket's
	// change carries the ticket as of its version (Change.Ticket); a
	// listener still reads the ticket when a change carries none or one
	// that does not decode. Listen returns ctx.Err() when ctx ends, or an
	// error if it cannot listen at all.
	Listen(ctx context.Context, fn func(Change)) error
	// Ping checks that the store is reachable.
	Ping(ctx context.Context) error
}

// Stats is a summary of the shared state: counts only, for the gauges.
type Stats struct {
	Queues  map[string]QueueStats
	Regions map[string]RegionStats
}

// QueueStats counts one queue's tickets and matches.
type QueueStats struct {
	// Searching tickets, in the pool or not yet taken up by a matcher.
	Searching int
	// Pooled tickets: searching, in the pool, for the next searches.
	Pooled int
	// WaitingForServer: matches formed and not yet placed or failed.
	WaitingForServer int
}

// RegionStats counts one region's game servers: all that are registered,
// the live ones (heartbeat within their TTL), the draining ones among them,
// and the free slots of live servers that are not draining.
type RegionStats struct {
	Servers, Live, Draining, FreeSlots int
}

// Add is r with srv counted in, as at now.
func (r RegionStats) Add(srv contracts.Server, now time.Time) RegionStats {
	r.Servers++
	if now.Before(srv.ExpiresAt) {
		r.Live++
		if srv.Draining {
			r.Draining++
		} else {
			r.FreeSlots += max(0, srv.Capacity-srv.Allocated)
		}
	}
	return r
}

package front

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/auth"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

// "Why am I waiting": GET /v1/tickets/{id}/explain tells a ticket's player
// (or a service) what the matcher is up against, from what the front can
// read: the pool near the ticket, the queue's windows after its wait, and
// the servers' free slots. It applies the matching rules of
// matcher/rules.go only as far as they explain a wait (skill window,
// latency limit and region wait, party size, match size, free slots); the
// team split and the balance window are not checked, so a ticket with no
// blocker may still wait on those, or only for its next search.

// WaitEstimator estimates how much longer a searching ticket is likely to
// wait; internal/dashboard's Dashboard is one.
type WaitEstimator interface {
	EstimateWait(queue string, skill float64, waited time.Duration) (contracts.WaitEstimate, bool)
}

// Bounds of what an explanation reads and shows: the matcher itself looks
// at no more than the nearest max(32, 4 × players per match) candidates.
const (
	explainCandidates = 256
	explainNearest    = 5
)

// explainer is the state explanations share.
type explainer struct {
	waits WaitEstimator
}

func (a *API) explainTicket(w http.ResponseWriter, r *http.Request) {
	p, id, ok := a.ticketCall(w, r)
	if !ok {
		return
	}
	// An explanation reads part of the pool: a player asking in a loop
	// would load the store for nothing new.
	if a.explains != nil && p.Role == auth.RolePlayer {
		if ok, after := a.explains.Allow(p.Subject, a.now()); !ok {
			httpapi.WriteProblem(w, r, a.log, &httpapi.RateLimitedError{What: "explanations", RetryAfter: after})
			return
		}
	}
	t, err := readTicket(r.Context(), a.store.Ticket, p, id)
	if err != nil {
		httpapi.WriteProblem(w, r, a.log, err)
		return
	}
	q, ok := a.queues.Get(t.Queue)
	if !ok {
		// Only after a queue was removed from the configuration.
		httpapi.WriteProblem(w, r, a.log, fmt.Errorf("%w: the ticket's queue %q is no longer offered", httpapi.ErrUnknownQueue, t.Queue))
		return
	}
	x, err := a.readExplanation(r.Context(), &q, t)
	if err != nil {
		httpapi.WriteProblem(w, r, a.log, storeErr("explaining ticket", err))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, x)
}

// readExplanation reads what an explanation of t needs and makes it.
func (a *API) readExplanation(ctx context.Context, q *queues.Queue, t contracts.Ticket) (contracts.Explanation, error) {
	now := a.now().UTC()
	var (
		in   explainInput
		err  error
		self = entryOf(q, t)
	)
	if t.Status == contracts.StatusSearching || t.Status == contracts.StatusMatched {
		if in.stats, err = a.store.Stats(ctx, now); err != nil {
			return contracts.Explanation{}, err
		}
	}
	if t.Status == contracts.StatusSearching {
		cands, err := a.store.Candidates(ctx, q.Name, self.Skill, q.Skill.Max, explainCandidates+1)
		if err != nil {
			return contracts.Explanation{}, err
		}
		in.capped = len(cands) > explainCandidates
		in.cands = cands[:min(len(cands), explainCandidates)]
	}
	x := explainTicket(q, t, in, now)
	if t.Status == contracts.StatusSearching && a.explain.waits != nil {
		if est, ok := a.explain.waits.EstimateWait(q.Name, self.Skill, now.Sub(t.CreatedAt)); ok {
			x.Estimate = &est
		}
	}
	return x, nil
}

// explainInput is what the store said when the explanation was asked.
type explainInput struct {
	cands  []store.PoolEntry // nearest first, within the queue's widest window
	capped bool              // more were within it than read
	stats  store.Stats
}

// entryOf is t as the matcher sees it in the pool.
func entryOf(q *queues.Queue, t contracts.Ticket) store.PoolEntry {
	skills := make([]float64, len(t.Players))
	for i, p := range t.Players {
		skills[i] = p.Skill
	}
	return store.PoolEntry{TicketID: t.ID, Skill: q.PartySkill(skills), Players: len(t.Players),
		Party: t.Players, CreatedAt: t.CreatedAt, Latencies: t.Latencies}
}

// explainTicket is the explanation of t at now, free of I/O.
func explainTicket(q *queues.Queue, t contracts.Ticket, in explainInput, now time.Time) contracts.Explanation {
	self := entryOf(q, t)
	waited := now.Sub(t.CreatedAt)
	if t.Status.Terminal() {
		waited = t.UpdatedAt.Sub(t.CreatedAt)
	}
	x := contracts.Explanation{
		TicketID:      t.ID,
		Queue:         t.Queue,
		Status:        t.Status,
		WaitedSeconds: secs(waited),
		Skill:         self.Skill,
		SkillWindow:   round3(q.Skill.At(waited)),
		PlayersNeeded: q.PlayersPerMatch(),
		Nearest:       []contracts.Neighbour{},
		Regions:       []contracts.RegionReach{},
		Blockers:      []contracts.Blocker{},
	}
	if limit := q.LatencyLimit(waited); !math.IsInf(limit, 1) {
		limit = round3(limit)
		x.LatencyLimitMS = &limit
	}
	switch t.Status {
	case contracts.StatusSearching:
		explainSearch(q, self, in, now, &x)
	case contracts.StatusMatched:
		explainMatched(t, in.stats, &x)
	case contracts.StatusPendingAcceptance:
		detail := "the match waits for its players to accept it"
		if t.Acceptance != nil && !t.Acceptance.Accepted {
			detail = "the match waits for this ticket's answer, and those of the others"
		}
		x.Blockers = append(x.Blockers, contracts.Blocker{Code: contracts.BlockWaitingForAcceptance, Detail: detail})
	}
	return x
}

// explainSearch fills in what keeps a searching ticket from a match.
func explainSearch(q *queues.Queue, self store.PoolEntry, in explainInput, now time.Time, x *contracts.Explanation) {
	// A candidate is within reach when the gap is within the window of
	// the longer-waiting of the two: the oldest ticket of a match decides
	// how wide it may be (matcher/rules.go, admit).
	var window []store.PoolEntry
	oldest := self.CreatedAt
	reach := contracts.Reach{Capped: in.capped}
	for _, c := range in.cands {
		if c.TicketID == self.TicketID || c.Players > q.TeamSize {
			continue // the matcher skips these too
		}
		gap := math.Abs(c.Skill - self.Skill)
		inWindow := gap <= q.Skill.At(now.Sub(earlier(self.CreatedAt, c.CreatedAt)))
		if len(x.Nearest) < explainNearest {
			x.Nearest = append(x.Nearest, contracts.Neighbour{SkillGap: round3(gap), Players: c.Players,
				WaitedSeconds: secs(now.Sub(c.CreatedAt)), InWindow: inWindow})
		}
		if !inWindow {
			continue
		}
		window = append(window, c)
		reach.Tickets++
		reach.Players += c.Players
		oldest = earlier(oldest, c.CreatedAt)
	}
	// Capped only matters if the farthest read was still in reach.
	reach.Capped = in.capped && len(in.cands) > 0 && len(window) > 0 &&
		window[len(window)-1].TicketID == in.cands[len(in.cands)-1].TicketID
	x.InReach = &reach
	x.PlayersNeeded = playersNeeded(q, oldest, now)
	x.Regions = regionReach(q, self, window, in.stats, now)

	// Where a match would be played, for the capacity check: the regions
	// that hold enough players, or, short of those, every region the
	// ticket takes.
	var playable []string
	anyRegion := len(self.Latencies) == 0
	for _, rr := range x.Regions {
		if rr.Accepted {
			playable = append(playable, rr.Region)
		}
	}
	switch have := self.Players + reach.Players; {
	case have < x.PlayersNeeded:
		x.Blockers = append(x.Blockers, contracts.Blocker{Code: contracts.BlockTooFewInWindow,
			Detail: fmt.Sprintf("%d of the %d players a match needs are within the skill window", have, x.PlayersNeeded)})
		x.WindowCoversInSeconds = windowCovers(q, self, in.cands, x.PlayersNeeded, now)
	case statesLatencies(self, window):
		best, where := sharedRegion(q, self, window, now)
		if best < x.PlayersNeeded {
			x.Blockers = append(x.Blockers, contracts.Blocker{Code: contracts.BlockNoSharedRegion,
				Detail: fmt.Sprintf("%d players are within the skill window, but at most %d of the %d a match needs take a match in one region under their latency limits",
					have, best, x.PlayersNeeded)})
		} else {
			playable, anyRegion = where, false
		}
	}
	// A ticket that takes none of its regions yet waits for its latency
	// limit to grow, not for a server.
	if (anyRegion || len(playable) > 0) && freeSlots(in.stats, playable, anyRegion) == 0 {
		where := "any region"
		if !anyRegion {
			where = strings.Join(playable, ", ")
		}
		x.Blockers = append(x.Blockers, contracts.Blocker{Code: contracts.BlockNoServerCapacity,
			Detail: "no live game server has a free slot in " + where})
	}
}

// explainMatched checks the one thing a matched ticket waits for: a free
// slot in its match's region.
func explainMatched(t contracts.Ticket, st store.Stats, x *contracts.Explanation) {
	region := ""
	if t.Match != nil {
		region = t.Match.Region
	}
	var where []string
	if region != "" {
		where = []string{region}
	}
	for _, name := range slices.Sorted(maps.Keys(st.Regions)) {
		if region == "" || name == region {
			x.Regions = append(x.Regions, contracts.RegionReach{Region: name, Accepted: true, FreeSlots: st.Regions[name].FreeSlots})
		}
	}
	if freeSlots(st, where, region == "") == 0 {
		if region == "" {
			region = "any region"
		}
		x.Blockers = append(x.Blockers, contracts.Blocker{Code: contracts.BlockNoServerCapacity,
			Detail: "the match waits for a game server: none has a free slot in " + region})
	}
}

// playersNeeded is how many players a match needs now: a free-for-all may
// start short once its oldest ticket has waited the fill wait (matcher
// rules.go, complete).
func playersNeeded(q *queues.Queue, oldest, now time.Time) int {
	if q.TeamSize == 1 && now.Sub(oldest) >= q.FillWait {
		return q.MinTeamsPerMatch()
	}
	return q.PlayersPerMatch()
}

// accepts reports whether ticket e takes a match in region at now, by the
// matcher's rule.
func accepts(q *queues.Queue, e store.PoolEntry, region string, now time.Time) bool {
	return q.TakesRegion(e.Latencies, region, now.Sub(e.CreatedAt))
}

func statesLatencies(self store.PoolEntry, window []store.PoolEntry) bool {
	return len(self.Latencies) > 0 || slices.ContainsFunc(window, func(e store.PoolEntry) bool { return len(e.Latencies) > 0 })
}

// sharedRegion is the most players of self and its window that take a
// match in one region, and the regions where that many do. Every region
// that can qualify is listed by a ticket stating latencies.
func sharedRegion(q *queues.Queue, self store.PoolEntry, window []store.PoolEntry, now time.Time) (int, []string) {
	counted := map[string]bool{}
	best, where := 0, []string(nil)
	for _, e := range append([]store.PoolEntry{self}, window...) {
		for region := range e.Latencies {
			if counted[region] || !accepts(q, self, region, now) {
				continue
			}
			counted[region] = true
			n := self.Players
			for _, c := range window {
				if accepts(q, c, region, now) {
					n += c.Players
				}
			}
			switch {
			case n > best:
				best, where = n, []string{region}
			case n == best:
				where = append(where, region)
			}
		}
	}
	slices.Sort(where)
	return best, where
}

// regionReach lists the regions self could be played in: those its
// latencies name (best first), or, for a ticket that names none, every
// region servers have registered in.
func regionReach(q *queues.Queue, self store.PoolEntry, window []store.PoolEntry, st store.Stats, now time.Time) []contracts.RegionReach {
	names := slices.Sorted(maps.Keys(st.Regions))
	if len(self.Latencies) > 0 {
		names = names[:0]
		for r := range self.Latencies {
			names = append(names, r)
		}
		slices.SortFunc(names, func(a, b string) int {
			if c := cmp.Compare(self.Latencies[a], self.Latencies[b]); c != 0 {
				return c
			}
			return strings.Compare(a, b)
		})
	}
	out := make([]contracts.RegionReach, 0, len(names))
	for _, r := range names {
		rr := contracts.RegionReach{Region: r, Accepted: accepts(q, self, r, now), FreeSlots: st.Regions[r].FreeSlots}
		if ms, ok := self.Latencies[r]; ok {
			rr.LatencyMS = &ms
		}
		if rr.Accepted {
			rr.PlayersInWindow = self.Players
		}
		for _, c := range window {
			if accepts(q, c, r, now) {
				rr.PlayersInWindow += c.Players
			}
		}
		out = append(out, rr)
	}
	return out
}

// freeSlots adds up the free slots of the regions named, or of every
// region when anywhere is set.
func freeSlots(st store.Stats, regions []string, anywhere bool) int {
	n := 0
	for name, rs := range st.Regions {
		if anywhere || slices.Contains(regions, name) {
			n += rs.FreeSlots
		}
	}
	return n
}

// windowCovers is how long until self's own skill window holds the
// nearest candidates that would fill a match, if they all wait that long;
// nil if those within the queue's widest window would not fill one. A
// candidate that has waited longer brings a wider window, so the match may
// come sooner: this is the latest, for the pool as it is.
func windowCovers(q *queues.Queue, self store.PoolEntry, cands []store.PoolEntry, needed int, now time.Time) *float64 {
	have := self.Players
	for _, c := range cands {
		if c.TicketID == self.TicketID || c.Players > q.TeamSize {
			continue
		}
		if have += c.Players; have < needed {
			continue
		}
		gap := math.Abs(c.Skill - self.Skill)
		if q.Skill.PerSecond <= 0 || gap > q.Skill.Max {
			return nil
		}
		at := time.Duration((gap - q.Skill.Initial) / q.Skill.PerSecond * float64(time.Second))
		s := secs(max(0, at-now.Sub(self.CreatedAt)))
		return &s
	}
	return nil
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// secs is d in seconds, to the millisecond.
func secs(d time.Duration) float64 { return round3(d.Seconds()) }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

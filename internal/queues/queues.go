// Package queues defines the matchmaking queues a deployment offers and the
// rules each one matches by: team shape, skill window, region rule and the
// deadlines that bound a ticket's life.
package queues

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Queue is the configuration of one matchmaking queue.
type Queue struct {
	Name string
	// Teams and TeamSize give the shape of a full match: duel is 2 teams
	// of 1, 5v5 is 2 of 5. A free-for-all is Teams players on teams of 1.
	Teams    int
	TeamSize int
	// MinTeams lets a match start with fewer teams than Teams (free-for-
	// all with a minimum); 0 means exactly Teams. A smaller match forms
	// only once its oldest ticket has waited FillWait, so that fuller
	// matches get a chance first.
	MinTeams int
	FillWait time.Duration
	// Skill is the widest skill gap accepted inside a match, which widens
	// the longer its oldest ticket waits.
	Skill Window
	// PartySpread penalises parties of mixed skill: a party is matched as
	// mean + PartySpread × (highest − lowest) of its members' skills.
	PartySpread float64
	// Latency is the highest latency, in milliseconds, that a ticket with
	// latencies accepts to the region of its match; it widens with waiting
	// like Skill. A zero Max means no limit: any region the ticket lists.
	Latency Window
	// Balance is the widest gap, in skill points, between the strongest
	// and the weakest team's mean player skill in a team match; it widens
	// with the wait of the match's longest-waiting ticket like Skill. A
	// zero Max means no limit. Queues of teams of one (duel, free-for-all)
	// ignore it: in a duel the skill window already bounds the gap.
	Balance Window
	// RegionWait makes region a preference: a ticket that states latencies
	// is matched only in its best region (its lowest latency) until it has
	// waited RegionWait, and in any region under its latency limit after.
	// Zero means no preference: any region under the limit from the start.
	RegionWait time.Duration
	// MaxWait bounds the search: a ticket unmatched after it is expired.
	MaxWait time.Duration
	// AcceptTimeout, when set, makes every match ask its players first:
	// its tickets wait in pending_acceptance for up to AcceptTimeout for
	// every one of them to accept (POST /v1/tickets/{id}/accept). Zero
	// means matches go to a server at once.
	AcceptTimeout time.Duration
	// AssignDeadline bounds the wait for a game server after the match
	// formed (after its acceptance deadline, in a queue that asks); past
	// it the tickets fail with no_server_capacity.
	AssignDeadline time.Duration
	// RetryDelay is how long a ticket that found no match waits before its
	// next search.
	RetryDelay time.Duration
}

// Window is a limit that starts at Initial, grows by PerSecond for every
// second waited, and never passes Max.
type Window struct {
	Initial   float64
	PerSecond float64
	Max       float64
}

// At is the window after waiting d.
func (w Window) At(d time.Duration) float64 {
	if d < 0 {
		d = 0
	}
	return min(w.Initial+w.PerSecond*d.Seconds(), w.Max)
}

// PlayersPerMatch is how many players a full match holds.
func (q *Queue) PlayersPerMatch() int { return q.Teams * q.TeamSize }

// MinTeamsPerMatch is the fewest teams a match may start with.
func (q *Queue) MinTeamsPerMatch() int {
	if q.MinTeams == 0 {
		return q.Teams
	}
	return q.MinTeams
}

// LatencyLimit is the latency limit after waiting d, or +Inf when the queue
// sets none.
func (q *Queue) LatencyLimit(d time.Duration) float64 {
	if q.Latency.Max == 0 {
		return math.Inf(1)
	}
	return q.Latency.At(d)
}

// TakesRegion reports whether a ticket with latencies that has waited
// waited takes a match in region: the region is listed under the latency
// limit and, before the region wait, as good as the ticket's best. A
// ticket without latencies takes any region. It is the rule the matcher
// applies to every ticket of a selection.
func (q *Queue) TakesRegion(latencies map[string]float64, region string, waited time.Duration) bool {
	if len(latencies) == 0 {
		return true
	}
	ms, ok := latencies[region]
	if !ok || ms > q.LatencyLimit(waited) {
		return false
	}
	return q.RegionWait == 0 || waited >= q.RegionWait || ms <= BestLatency(latencies)
}

// BestLatency is a ticket's lowest latency to any region it lists, +Inf
// when it lists none.
func BestLatency(latencies map[string]float64) float64 {
	best := math.Inf(1)
	for _, ms := range latencies {
		best = min(best, ms)
	}
	return best
}

// BalanceLimit is the widest gap between team means after waiting d, or
// +Inf when the queue sets none.
func (q *Queue) BalanceLimit(d time.Duration) float64 {
	if q.Balance.Max == 0 {
		return math.Inf(1)
	}
	return q.Balance.At(d)
}

// PartySkill is the skill a party is matched by.
func (q *Queue) PartySkill(skills []float64) float64 {
	if len(skills) == 0 {
		return 0
	}
	sum, lo, hi := 0.0, skills[0], skills[0]
	for _, s := range skills {
		sum += s
		lo, hi = min(lo, s), max(hi, s)
	}
	return sum/float64(len(skills)) + q.PartySpread*(hi-lo)
}

// Validate reports the first field that makes q unusable, naming the queue
// and the field as they are spelled in a queues file.
func (q *Queue) Validate() error {
	bad := func(field, why string) error {
		return fmt.Errorf("queue %q: %s %s", q.Name, field, why)
	}
	switch {
	case q.Name == "":
		return fmt.Errorf("a queue has no name")
	case !validName(q.Name):
		return bad("name", "may hold only letters, digits, '-', '_' and '.', at most 64")
	case q.TeamSize < 1:
		return bad("team_size", "must be at least 1")
	case q.Teams < 2:
		return bad("teams", "must be at least 2")
	case q.MinTeams != 0 && (q.MinTeams < 2 || q.MinTeams > q.Teams):
		return bad("min_players", "must be between 2 and max_players")
	case q.PlayersPerMatch() > 100:
		return bad("teams", "times team_size must be at most 100 players")
	case q.FillWait < 0:
		return bad("fill_wait", "must not be negative")
	case q.Skill.Initial < 0:
		return bad("skill.initial", "must not be negative")
	case q.Skill.PerSecond < 0:
		return bad("skill.per_second", "must not be negative")
	case q.Skill.Max < q.Skill.Initial:
		return bad("skill.max", "must be at least skill.initial")
	case q.PartySpread < 0:
		return bad("party_spread", "must not be negative")
	case q.Latency.Initial < 0:
		return bad("latency.initial", "must not be negative")
	case q.Latency.PerSecond < 0:
		return bad("latency.per_second", "must not be negative")
	case q.Latency.Max != 0 && q.Latency.Max < q.Latency.Initial:
		return bad("latency.max", "must be at least latency.initial (or 0 for no limit)")
	case q.Balance.Initial < 0:
		return bad("balance.initial", "must not be negative")
	case q.Balance.PerSecond < 0:
		return bad("balance.per_second", "must not be negative")
	case q.Balance.Max != 0 && q.Balance.Max < q.Balance.Initial:
		return bad("balance.max", "must be at least balance.initial (or 0 for no limit)")
	case q.RegionWait < 0:
		return bad("region_wait", "must not be negative")
	case q.MaxWait <= 0:
		return bad("max_wait", "must be positive")
	case q.AcceptTimeout < 0 || q.AcceptTimeout > 10*time.Minute:
		return bad("accept_timeout", "must be between 0 (no acceptance) and 10m")
	case q.AssignDeadline <= 0:
		return bad("assign_deadline", "must be positive")
	case q.RetryDelay <= 0 || q.RetryDelay > q.MaxWait:
		return bad("retry_delay", "must be positive and at most max_wait")
	}
	return nil
}

func validName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Duel is the built-in 1v1 queue that works with no configuration.
func Duel() Queue {
	return Queue{
		Name:           "duel",
		Teams:          2,
		TeamSize:       1,
		Skill:          Window{Initial: 50, PerSecond: 25, Max: 500},
		MaxWait:        2 * time.Minute,
		AssignDeadline: 30 * time.Second,
		RetryDelay:     time.Second,
	}
}

// Set is the queues a deployment offers, by name.
type Set struct {
	byName map[string]Queue
	names  []string
}

// NewSet checks every queue and builds the set; names must be unique.
func NewSet(qs ...Queue) (*Set, error) {
	s := &Set{byName: make(map[string]Queue, len(qs))}
	for _, q := range qs {
		if err := q.Validate(); err != nil {
			return nil, err
		}
		if _, dup := s.byName[q.Name]; dup {
			return nil, fmt.Errorf("queue %q is defined twice", q.Name)
		}
		s.byName[q.Name] = q
		s.names = append(s.names, q.Name)
	}
	slices.Sort(s.names)
	return s, nil
}

// Get returns the queue named name.
func (s *Set) Get(name string) (Queue, bool) {
	q, ok := s.byName[name]
	return q, ok
}

// Names lists the queue names in order.
func (s *Set) Names() []string { return slices.Clone(s.names) }

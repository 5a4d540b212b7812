// Package queues defines the matchmaking queues a deployment offers and the
// rules each one matches by: team shape, skill window, region rule and the
// deadlines that bound a ticket's life.
package queues

import (
	"fmt"
	"slices"
	"time"
)

// Queue is the configuration of one matchmaking queue.
type Queue struct {
	Name string
	// Teams and TeamSize give the shape of a match: duel is 2 teams of 1.
	Teams    int
	TeamSize int
	// Skill is the widest skill gap accepted between two tickets, which
	// widens the longer a ticket waits.
	Skill Window
	// MaxLatencyMS is the highest latency a ticket accepts to the region
	// of its match; 0 means any region the ticket lists.
	MaxLatencyMS float64
	// MaxWait bounds the search: a ticket unmatched after it is expired.
	MaxWait time.Duration
	// AssignDeadline bounds the wait for a game server after the match
	// formed; past it the tickets fail with no_server_capacity.
	AssignDeadline time.Duration
	// RetryDelay is how long a ticket that found no match waits before its
	// next search.
	RetryDelay time.Duration
}

// Window is a skill gap that starts at Initial, grows by PerSecond for every
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

// Validate reports the first field that makes q unusable, naming the queue.
func (q *Queue) Validate() error {
	bad := func(field, why string) error {
		return fmt.Errorf("queue %q: %s %s", q.Name, field, why)
	}
	switch {
	case q.Name == "":
		return fmt.Errorf("queue without a name")
	case q.Teams < 2:
		return bad("teams", "must be at least 2")
	case q.TeamSize < 1:
		return bad("team_size", "must be at least 1")
	case q.Skill.Initial < 0:
		return bad("skill.initial", "must not be negative")
	case q.Skill.PerSecond < 0:
		return bad("skill.per_second", "must not be negative")
	case q.Skill.Max < q.Skill.Initial:
		return bad("skill.max", "must be at least skill.initial")
	case q.MaxLatencyMS < 0:
		return bad("max_latency_ms", "must not be negative")
	case q.MaxWait <= 0:
		return bad("max_wait", "must be positive")
	case q.AssignDeadline <= 0:
		return bad("assign_deadline", "must be positive")
	case q.RetryDelay <= 0 || q.RetryDelay > q.MaxWait:
		return bad("retry_delay", "must be positive and at most max_wait")
	}
	return nil
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

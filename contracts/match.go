package contracts

import "time"

// Match is a set of tickets the matcher has claimed together. It travels from
// the matcher to the assigner and is kept in the store until it ends.
type Match struct {
	ID    string `json:"id"`
	Queue string `json:"queue"`
	// Region is where the match should be played; empty means any region,
	// because no ticket in it stated latencies.
	Region    string     `json:"region"`
	Teams     [][]string `json:"teams"`
	TicketIDs []string   `json:"ticket_ids"`
	Players   []Player   `json:"players"`
	CreatedAt time.Time  `json:"created_at"`
	// AcceptDeadline, when set, is when the match falls through unless
	// every ticket has accepted it: the tickets wait in
	// pending_acceptance until then.
	AcceptDeadline time.Time `json:"accept_deadline,omitzero"`
	// AssignDeadline is when the assigner gives up finding a server and fails
	// the match's tickets with ReasonNoServerCapacity.
	AssignDeadline time.Time `json:"assign_deadline"`
}

// Ref is the part of the match every ticket in it shows.
func (m *Match) Ref() *MatchRef {
	return &MatchRef{ID: m.ID, Region: m.Region, Teams: m.Teams}
}

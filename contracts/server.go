package contracts

import "time"

// ServerRequest is the body of PUT /v1/servers/{id}: a registration or a
// heartbeat, which are the same call.
type ServerRequest struct {
	Address  string `json:"address"`
	Region   string `json:"region"`
	Capacity int    `json:"capacity"`
}

// Server is a game server as the registry knows it.
type Server struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Region   string `json:"region"`
	Capacity int    `json:"capacity"`
	// Allocated is how many matches the server hosts now.
	Allocated int  `json:"allocated"`
	Draining  bool `json:"draining"`
	// ExpiresAt is when the server stops getting new matches unless it
	// heartbeats again.
	ExpiresAt time.Time `json:"expires_at"`
	// Version increases by one on every change to the server's allocations;
	// it is the cursor for the allocations long-poll.
	Version int64 `json:"version"`
}

// Allocation is one match placed on a server, with what the server needs to
// admit its players.
type Allocation struct {
	MatchID     string     `json:"match_id"`
	Queue       string     `json:"queue"`
	Region      string     `json:"region"`
	Teams       [][]string `json:"teams"`
	Players     []Player   `json:"players"`
	TicketIDs   []string   `json:"ticket_ids"`
	AllocatedAt time.Time  `json:"allocated_at"`
}

// Allocations is the answer of GET /v1/servers/{id}/allocations: every match
// the server hosts now.
type Allocations struct {
	ServerID    string       `json:"server_id"`
	Version     int64        `json:"version"`
	Allocations []Allocation `json:"allocations"`
}

// BackfillRequest is the body of POST
// /v1/servers/{id}/matches/{match_id}/backfill: how many seats are open in
// each team of the match, in the order of its allocation's teams.
type BackfillRequest struct {
	Open []int `json:"open"`
}

// Backfill is a running match's request for players to fill the seats
// that players who left have opened.
type Backfill struct {
	MatchID  string `json:"match_id"`
	ServerID string `json:"server_id"`
	Queue    string `json:"queue"`
	Region   string `json:"region"`
	// Open is how many seats each team still has open; the request is
	// done, and gone, once none are.
	Open []int `json:"open"`
	// Teams are the player ids of each team, as the match stood when the
	// request was made.
	Teams [][]string `json:"teams"`
	// Skill is what the players who fill it are matched to: the mean
	// skill of the match's players.
	Skill     float64   `json:"skill"`
	CreatedAt time.Time `json:"created_at"`
}

// Seats is how many seats b has open in all.
func (b *Backfill) Seats() int {
	n := 0
	for _, o := range b.Open {
		n += o
	}
	return n
}

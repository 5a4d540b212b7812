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

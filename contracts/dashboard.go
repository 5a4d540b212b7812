package contracts

import "time"

// Dashboard is the answer of GET /v1/dashboard: the queues and the game
// servers as one process sees them.
type Dashboard struct {
	// At is when the figures were read.
	At      time.Time         `json:"at"`
	Queues  []DashboardQueue  `json:"queues"`
	Regions []DashboardRegion `json:"regions"`
}

// DashboardQueue is one matchmaking queue now.
type DashboardQueue struct {
	Name string `json:"name"`
	// PlayersPerMatch is how many players a full match holds.
	PlayersPerMatch int `json:"players_per_match"`
	// Searching tickets, Pooled among them (waiting in the pool for the
	// next searches), and matches WaitingForServer.
	Searching        int `json:"searching"`
	Pooled           int `json:"pooled"`
	WaitingForServer int `json:"waiting_for_server"`
	// Bands are the pooled tickets by skill band and region, lowest band
	// first.
	Bands []SkillBand `json:"bands"`
	// PoolTruncated says the pool holds more tickets than the dashboard
	// reads: the bands and waits then show part of it, and no departures
	// are counted.
	PoolTruncated bool `json:"pool_truncated"`
	// WaitingNow is how long the pooled tickets have waited so far.
	WaitingNow *Percentiles `json:"waiting_now,omitempty"`
	// RecentWaits are the waits of the tickets seen leaving the pool in
	// the last five minutes (matched, cancelled or expired). Tickets
	// matched on arrival never enter the pool and are not in them.
	RecentWaits *Percentiles `json:"recent_waits,omitempty"`
	// PoolDeparturesPerSecond is how many tickets left the pool per
	// second over the last minute.
	PoolDeparturesPerSecond *float64 `json:"pool_departures_per_second,omitempty"`
	// MatchesPerSecond is how many matches formed per second over the
	// last minute; only from a process that runs a matcher, which counts
	// its own.
	MatchesPerSecond *float64 `json:"matches_per_second,omitempty"`
}

// SkillBand counts the pooled tickets whose matching skill is in [From, To).
type SkillBand struct {
	From    float64 `json:"from"`
	To      float64 `json:"to"`
	Tickets int     `json:"tickets"`
	Players int     `json:"players"`
	// Regions counts the band's tickets by their best region (lowest
	// latency); RegionAny for tickets that state no latencies.
	Regions map[string]int `json:"regions"`
}

// RegionAny is the region of a ticket that states no latencies: it takes
// any region.
const RegionAny = "any"

// Percentiles summarise durations, in seconds.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// DashboardRegion is one region's game servers (store.RegionStats).
type DashboardRegion struct {
	Name      string `json:"name"`
	Servers   int    `json:"servers"`
	Live      int    `json:"live"`
	Draining  int    `json:"draining"`
	FreeSlots int    `json:"free_slots"`
}

package contracts

// Explanation is the answer of GET /v1/tickets/{id}/explain: why a ticket
// is still waiting, as far as the front can tell from the pool, the
// queue's rules and the game servers' free slots at the moment it asks.
type Explanation struct {
	TicketID string `json:"ticket_id"`
	Queue    string `json:"queue"`
	Status   Status `json:"status"`
	// WaitedSeconds is how long the ticket has waited since it was
	// created; for a ticket that has ended, how long it waited.
	WaitedSeconds float64 `json:"waited_seconds"`
	// Skill is the party's matching skill (docs/matching.md, rule 3).
	Skill float64 `json:"skill"`
	// SkillWindow is the widest skill gap the queue accepts after the
	// ticket's wait so far; a ticket that has waited longer brings its
	// own, wider window to a match with this one.
	SkillWindow float64 `json:"skill_window"`
	// LatencyLimitMS is the highest latency to a match's region the
	// ticket accepts after its wait so far; absent when the queue sets no
	// limit.
	LatencyLimitMS *float64 `json:"latency_limit_ms,omitempty"`
	// PlayersNeeded is how many players a match of this queue needs now,
	// the ticket's own included.
	PlayersNeeded int `json:"players_needed"`
	// InReach counts the searching tickets within the skill window of
	// this one (excluding itself); only while it is searching.
	InReach *Reach `json:"in_reach,omitempty"`
	// Nearest are the nearest searching tickets in skill, within the
	// queue's widest window, nearest first (at most five).
	Nearest []Neighbour `json:"nearest"`
	// Regions are the regions the ticket could be played in: those its
	// latencies list, or, without latencies, those game servers serve.
	Regions []RegionReach `json:"regions"`
	// Blockers are what stands between the ticket and a match (or its
	// server) now, as stable codes; empty when nothing the front can see
	// does.
	Blockers []Blocker `json:"blockers"`
	// Estimate is how much longer the ticket is likely to wait; absent
	// when the process has too little evidence yet, or the ticket no
	// longer searches.
	Estimate *WaitEstimate `json:"estimate,omitempty"`
	// WindowCoversInSeconds, with too_few_in_window, is when the ticket's
	// own skill window will have grown to hold enough of the tickets
	// searching now for a match, if they wait too; absent if it never
	// will.
	WindowCoversInSeconds *float64 `json:"window_covers_in_seconds,omitempty"`
}

// Reach counts what is within a ticket's skill window.
type Reach struct {
	Tickets int `json:"tickets"`
	Players int `json:"players"`
	// Capped says more tickets are in the window than were read.
	Capped bool `json:"capped"`
}

// Neighbour is one searching ticket near another in skill.
type Neighbour struct {
	// SkillGap is the distance between the two matching skills.
	SkillGap      float64 `json:"skill_gap"`
	Players       int     `json:"players"`
	WaitedSeconds float64 `json:"waited_seconds"`
	// InWindow says the gap is within the wider of the two tickets'
	// skill windows.
	InWindow bool `json:"in_window"`
}

// RegionReach is one region a ticket could be played in.
type RegionReach struct {
	Region string `json:"region"`
	// LatencyMS is the ticket's latency to the region; absent for a
	// ticket that states none.
	LatencyMS *float64 `json:"latency_ms,omitempty"`
	// Accepted says the ticket takes a match there now (under its
	// latency limit and, within the region wait, its best region).
	Accepted bool `json:"accepted"`
	// PlayersInWindow counts the players of the tickets in the skill
	// window that take a match there too, this ticket's own included.
	PlayersInWindow int `json:"players_in_window"`
	// FreeSlots are the free match slots of the live, undrained servers
	// of the region.
	FreeSlots int `json:"free_slots"`
}

// Blocker is one thing that keeps a ticket waiting.
type Blocker struct {
	Code string `json:"code"`
	// Detail says it in words, for people.
	Detail string `json:"detail"`
}

// Blocker codes, stable for programs.
const (
	// BlockTooFewInWindow: fewer players are within the ticket's skill
	// window than a match needs.
	BlockTooFewInWindow = "too_few_in_window"
	// BlockNoSharedRegion: enough players are within the skill window,
	// but not enough of them take a match in one region under their
	// latency limits.
	BlockNoSharedRegion = "no_shared_region"
	// BlockNoServerCapacity: the ticket is matched, or would be, in a
	// region whose live, undrained servers have no free slot.
	BlockNoServerCapacity = "no_server_capacity"
	// BlockWaitingForAcceptance: the ticket's match waits for its players
	// to accept it (status pending_acceptance).
	BlockWaitingForAcceptance = "waiting_for_acceptance"
)

// WaitEstimate is how much longer a waiting ticket is likely to wait.
type WaitEstimate struct {
	// RemainingSeconds is the median, and P90RemainingSeconds the 90th
	// percentile, of how much longer than this ticket's wait so far the
	// recent tickets that waited longer than it went on waiting.
	RemainingSeconds    float64 `json:"remaining_seconds"`
	P90RemainingSeconds float64 `json:"p90_remaining_seconds"`
	// BasedOn is how many tickets the figures come from.
	BasedOn int `json:"based_on"`
	// Method names how the figures were made.
	Method string `json:"method"`
}

// EstimateFromPoolDepartures: the waits of the tickets seen leaving the
// queue's pool in the last five minutes (internal/dashboard).
const EstimateFromPoolDepartures = "pool_departures"

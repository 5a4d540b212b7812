package contracts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Status is where a ticket is in its life. It moves forward: searching →
// matched → assigned, or ends in cancelled, expired or failed. In a queue
// that asks for acceptance a formed match first holds its tickets in
// pending_acceptance; from there they go on to matched when every ticket
// of the match accepts, or, when one declines or the time runs out, the
// others go back to searching.
type Status string

const (
	StatusSearching         Status = "searching"
	StatusPendingAcceptance Status = "pending_acceptance"
	StatusMatched           Status = "matched"
	StatusAssigned          Status = "assigned"
	StatusCancelled         Status = "cancelled"
	StatusExpired           Status = "expired"
	StatusFailed            Status = "failed"
)

// Terminal reports whether no further change can happen to a ticket in s.
// A player whose ticket is terminal may queue again.
func (s Status) Terminal() bool {
	switch s {
	case StatusAssigned, StatusCancelled, StatusExpired, StatusFailed:
		return true
	}
	return false
}

// Reached reports whether a ticket in s has got as far as stage: searching
// comes first, then matched, then the terminal statuses, which are as far
// as a ticket gets.
func (s Status) Reached(stage Status) bool { return s.rank() >= stage.rank() }

func (s Status) rank() int {
	switch {
	case s.Terminal():
		return 2
	case s == StatusMatched:
		return 1
	}
	return 0
}

// Reasons a ticket failed or was cancelled, stable for clients to switch
// on.
const (
	ReasonNoServerCapacity = "no_server_capacity"
	// ReasonDeclined: the ticket's player declined the match it was
	// offered, or cancelled while it was offered.
	ReasonDeclined = "declined"
	// ReasonAcceptTimeout: the ticket did not accept the match it was
	// offered before the match's acceptance deadline.
	ReasonAcceptTimeout = "accept_timeout"
)

// Player is one member of a party.
type Player struct {
	ID    string  `json:"id"`
	Skill float64 `json:"skill"`
}

// TicketRequest is the body of POST /v1/tickets.
type TicketRequest struct {
	Queue string `json:"queue"`
	// Players is a party: everyone in it ends up on the same team.
	Players []Player `json:"players"`
	// Latencies is the measured round trip to each region, in milliseconds.
	// A ticket without latencies accepts any region.
	Latencies  map[string]float64 `json:"latencies,omitempty"`
	Attributes map[string]string  `json:"attributes,omitempty"`
}

// Ticket is a party's request to be matched, as the player API shows it.
type Ticket struct {
	ID         string             `json:"id"`
	Queue      string             `json:"queue"`
	Status     Status             `json:"status"`
	Version    int64              `json:"version"`
	CreatedAt  time.Time          `json:"created_at"`
	UpdatedAt  time.Time          `json:"updated_at"`
	Players    []Player           `json:"players"`
	Latencies  map[string]float64 `json:"latencies,omitempty"`
	Attributes map[string]string  `json:"attributes,omitempty"`
	Match      *MatchRef          `json:"match,omitempty"`
	Assignment *Assignment        `json:"assignment,omitempty"`
	// Acceptance, while the ticket is pending_acceptance, says until when
	// the match waits for its answer and whether it has accepted.
	Acceptance *Acceptance `json:"acceptance,omitempty"`
	Reason     string      `json:"reason"`
}

// Acceptance is a pending match's question to one of its tickets.
type Acceptance struct {
	Deadline time.Time `json:"deadline"`
	Accepted bool      `json:"accepted"`
}

// AcceptRequest is the body of POST /v1/tickets/{id}/accept.
type AcceptRequest struct {
	Accept *bool `json:"accept"`
}

// Asked reports whether t waits for its player's answer to a match.
func (t *Ticket) Asked() bool {
	return t.Status == StatusPendingAcceptance && (t.Acceptance == nil || !t.Acceptance.Accepted)
}

// PlayerIDs lists the ids of the ticket's party in order.
func (t *Ticket) PlayerIDs() []string {
	ids := make([]string, len(t.Players))
	for i, p := range t.Players {
		ids[i] = p.ID
	}
	return ids
}

// MatchRef is what a ticket shows of the match it is in.
type MatchRef struct {
	ID     string `json:"id"`
	Region string `json:"region"`
	// Teams lists player ids per team.
	Teams [][]string `json:"teams"`
}

// Assignment tells the players of a match where to connect.
type Assignment struct {
	ServerID string `json:"server_id"`
	Address  string `json:"address"`
	Region   string `json:"region"`
}

// UnmarshalJSON requires both fields: a player without a skill would
// otherwise be matched as if rated 0. Players are decoded wherever tickets,
// pool entries and matches are read, so the usual case, an object with just
// the two fields, takes json.Unmarshal; anything else takes a strict decoder,
// which names the problem.
func (p *Player) UnmarshalJSON(b []byte) error {
	if fast, ok := decodePlayerAsWritten(b); ok {
		*p = fast
		return nil
	}
	var raw struct {
		ID    *string  `json:"id"`
		Skill *float64 `json:"skill"`
	}
	if err := json.Unmarshal(b, &raw); err != nil || raw.ID == nil || raw.Skill == nil || objectKeys(b) != 2 {
		return p.unmarshalStrict(b)
	}
	p.ID, p.Skill = *raw.ID, *raw.Skill
	return nil
}

// decodePlayerAsWritten decodes b if it is a player exactly as
// encoding/json writes one, {"id":"<id>","skill":<number>}, with an id free
// of escapes and control characters, which is every player the suite
// itself stores and sends: most players are decoded without reflection.
// Anything else is left to the decoders above, and ok is false.
func decodePlayerAsWritten(b []byte) (p Player, ok bool) {
	const head, mid = `{"id":"`, `","skill":`
	rest, found := bytes.CutPrefix(b, []byte(head))
	if !found {
		return p, false
	}
	id, rest, found := bytes.Cut(rest, []byte(mid))
	if !found || len(rest) < 2 || rest[len(rest)-1] != '}' || !plainString(id) {
		return p, false
	}
	num := rest[:len(rest)-1]
	if !jsonNumber(num) {
		return p, false
	}
	skill, err := strconv.ParseFloat(string(num), 64)
	if err != nil {
		return p, false // out of range: the decoders above say so
	}
	return Player{ID: string(id), Skill: skill}, true
}

// plainString reports whether s, the inside of a JSON string, needs no
// decoding: valid UTF-8 without quotes, escapes or control characters.
func plainString(s []byte) bool {
	for _, c := range s {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return utf8.Valid(s)
}

// jsonNumber reports whether s is a JSON number:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func jsonNumber(s []byte) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

func (p *Player) unmarshalStrict(b []byte) error {
	var raw struct {
		ID    *string  `json:"id"`
		Skill *float64 `json:"skill"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return decodeError(err)
	}
	switch {
	case raw.ID == nil:
		return fmt.Errorf("%w: a player has no id", ErrBadRequest)
	case raw.Skill == nil:
		return fmt.Errorf("%w: player %q has no skill", ErrBadRequest, *raw.ID)
	}
	p.ID, p.Skill = *raw.ID, *raw.Skill
	return nil
}

// objectKeys counts the keys of the JSON object b, which json.Unmarshal has
// found valid: the colons outside strings at the object's own depth.
func objectKeys(b []byte) int {
	n, depth, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		case c == ':' && depth == 1:
			n++
		}
	}
	return n
}

package contracts

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SchemaVersion is the newest version of the queue messages this build
// reads, and the version of the ticket messages it writes. Consumers read
// every version from MinSchemaVersion up to it, so that messages queued by
// the previous build are still handled during a rolling upgrade, and
// dead-letter any other rather than guess at its meaning.
//
// Version 2 carries many tickets per ticket message; version 1 carried one.
// Match messages are the same in both, and are still written as version 1
// (MatchSchemaVersion), so that assigners of the previous build read the
// matches of this one while an upgrade rolls.
const SchemaVersion = 2

// MatchSchemaVersion is the version of the match messages this build
// writes.
const MatchSchemaVersion = 1

// MinSchemaVersion is the oldest message version this build reads.
const MinSchemaVersion = 1

// MaxTicketsPerMessage bounds the tickets of one ticket message, so that a
// message stays small enough for the broker to move as one.
const MaxTicketsPerMessage = 256

// TicketMessage asks a matcher to find matches for tickets, usually the
// tickets of one queue that a front created within a millisecond or two,
// or a matcher sent back to retry together. Each carries a snapshot of what
// matching needs so that the first attempt reads nothing; the store stays
// the authority on a ticket's status.
type TicketMessage struct {
	V       int         `json:"v"`
	Tickets []TicketTry `json:"tickets"`
}

// TicketTry is one ticket of a ticket message.
type TicketTry struct {
	Ticket Ticket `json:"ticket"`
	// Attempt counts the ticket's deliveries through the retry queue, from 0.
	Attempt int `json:"attempt"`
}

// RejectedTicket is an entry of a ticket message that failed its checks
// while the rest of the message was good: the consumer dead-letters it on
// its own and handles the others.
type RejectedTicket struct {
	// Body is a message of the entry alone, its bytes as they were, for
	// the dead-letter queue.
	Body []byte
	Err  error
}

// MatchMessage asks an assigner to place a match on a game server.
type MatchMessage struct {
	V       int   `json:"v"`
	Match   Match `json:"match"`
	Attempt int   `json:"attempt"`
}

// ErrBadMessage marks a message that can never be processed. Consumers
// dead-letter it instead of retrying.
var ErrBadMessage = errors.New("bad message")

// EncodeTicketMessage encodes tries as one ticket message of the current
// version; the caller keeps to MaxTicketsPerMessage.
func EncodeTicketMessage(tries ...TicketTry) ([]byte, error) {
	if len(tries) == 0 || len(tries) > MaxTicketsPerMessage {
		return nil, fmt.Errorf("encoding a ticket message of %d tickets: want 1 to %d", len(tries), MaxTicketsPerMessage)
	}
	b, err := json.Marshal(TicketMessage{V: SchemaVersion, Tickets: tries})
	if err != nil {
		return nil, fmt.Errorf("encoding a ticket message: %w", err)
	}
	return b, nil
}

// EncodeMatchMessage encodes the message asking to place m, on its
// attempt'th trip through the retry queue. The message carries what an
// assigner reads of the match (matchWire); its teams and players stay in
// the store, where placement takes them from, so a decoded message has
// none.
func EncodeMatchMessage(m Match, attempt int) ([]byte, error) {
	b, err := json.Marshal(matchMessageWire{V: MatchSchemaVersion, Attempt: attempt, Match: matchWire{
		ID: m.ID, Queue: m.Queue, Region: m.Region, TicketIDs: m.TicketIDs,
		CreatedAt: m.CreatedAt, AcceptDeadline: m.AcceptDeadline, AssignDeadline: m.AssignDeadline,
	}})
	if err != nil {
		return nil, fmt.Errorf("encoding match message %s: %w", m.ID, err)
	}
	return b, nil
}

// matchMessageWire is a match message as it is sent.
type matchMessageWire struct {
	V       int       `json:"v"`
	Match   matchWire `json:"match"`
	Attempt int       `json:"attempt"`
}

// matchWire is a match as its message carries it: what assigners of this
// version and the one before read (id, queue and region, the tickets, when
// it formed, its deadlines). A match message used to carry the teams and
// players too, which no assigner read: they were a fifth of an assigner's
// time, decoded for nothing. Messages that still carry them decode as
// before.
type matchWire struct {
	ID             string    `json:"id"`
	Queue          string    `json:"queue"`
	Region         string    `json:"region"`
	TicketIDs      []string  `json:"ticket_ids"`
	CreatedAt      time.Time `json:"created_at"`
	AcceptDeadline time.Time `json:"accept_deadline,omitzero"`
	AssignDeadline time.Time `json:"assign_deadline"`
}

// ticketWire is a ticket message of any version as it is sent: version 1
// has ticket and attempt at the top, version 2 a list of entries.
type ticketWire struct {
	V       int         `json:"v"`
	Tickets []TicketTry `json:"tickets"`
	Ticket  *Ticket     `json:"ticket"`
	Attempt int         `json:"attempt"`
}

// DecodeTicketMessage decodes a ticket message of any version it reads,
// answering it as version 2. An error (wrapping ErrBadMessage) condemns the
// whole message; an entry that alone fails its checks is answered among
// the rejected, for the consumer to dead-letter without holding up the
// rest. A message with no good entry is an error.
//
// A good message is decoded in one pass; only one with a bad entry is
// decoded again, entry by entry, to keep the bad entries' bytes.
func DecodeTicketMessage(b []byte) (TicketMessage, []RejectedTicket, error) {
	var w ticketWire
	if err := json.Unmarshal(b, &w); err != nil {
		return decodeTicketEntries(b, fmt.Errorf("%w: %v", ErrBadMessage, err))
	}
	if err := checkVersion(w.V); err != nil {
		return TicketMessage{}, nil, err
	}
	if w.V == 1 {
		if w.Ticket == nil {
			return TicketMessage{}, nil, fmt.Errorf("%w: ticket is missing", ErrBadMessage)
		}
		try := TicketTry{Ticket: *w.Ticket, Attempt: w.Attempt}
		if err := try.check(); err != nil {
			return TicketMessage{}, nil, err
		}
		return TicketMessage{V: SchemaVersion, Tickets: []TicketTry{try}}, nil, nil
	}
	if err := checkCount(len(w.Tickets)); err != nil {
		return TicketMessage{}, nil, err
	}
	for i := range w.Tickets {
		if err := w.Tickets[i].check(); err != nil {
			return decodeTicketEntries(b, err)
		}
	}
	return TicketMessage{V: SchemaVersion, Tickets: w.Tickets}, nil, nil
}

// decodeTicketEntries decodes a version 2 message whose one-pass decoding
// failed with cause, entry by entry, keeping the good entries and
// rejecting the others with their bytes. It answers cause when the message
// is not even a list of entries.
func decodeTicketEntries(b []byte, cause error) (TicketMessage, []RejectedTicket, error) {
	var w struct {
		V       int               `json:"v"`
		Tickets []json.RawMessage `json:"tickets"`
	}
	if err := json.Unmarshal(b, &w); err != nil || w.V != 2 {
		return TicketMessage{}, nil, cause
	}
	if err := checkCount(len(w.Tickets)); err != nil {
		return TicketMessage{}, nil, err
	}
	m := TicketMessage{V: SchemaVersion, Tickets: make([]TicketTry, 0, len(w.Tickets))}
	var rejected []RejectedTicket
	for i, raw := range w.Tickets {
		var try TicketTry
		err := json.Unmarshal(raw, &try)
		if err != nil {
			err = fmt.Errorf("%w: ticket %d: %v", ErrBadMessage, i, err)
		} else {
			err = try.check()
		}
		if err != nil {
			body := append(append([]byte(`{"v":2,"tickets":[`), raw...), "]}"...)
			rejected = append(rejected, RejectedTicket{Body: body, Err: err})
			continue
		}
		m.Tickets = append(m.Tickets, try)
	}
	if len(m.Tickets) == 0 {
		return TicketMessage{}, nil, fmt.Errorf("no good ticket in the message: %w", rejected[0].Err)
	}
	return m, rejected, nil
}

func checkCount(n int) error {
	switch {
	case n == 0:
		return fmt.Errorf("%w: no tickets", ErrBadMessage)
	case n > MaxTicketsPerMessage:
		return fmt.Errorf("%w: %d tickets, more than %d", ErrBadMessage, n, MaxTicketsPerMessage)
	}
	return nil
}

func (t *TicketTry) check() error {
	switch {
	case t.Ticket.ID == "":
		return fmt.Errorf("%w: ticket id is missing", ErrBadMessage)
	case t.Ticket.Queue == "":
		return fmt.Errorf("%w: ticket %s has no queue", ErrBadMessage, t.Ticket.ID)
	case len(t.Ticket.Players) == 0:
		return fmt.Errorf("%w: ticket %s has no players", ErrBadMessage, t.Ticket.ID)
	case t.Attempt < 0:
		return fmt.Errorf("%w: ticket %s: negative attempt", ErrBadMessage, t.Ticket.ID)
	}
	return nil
}

// DecodeMatchMessage decodes and checks a match message.
func DecodeMatchMessage(b []byte) (MatchMessage, error) {
	var m MatchMessage
	if err := decodeMessage(b, &m, &m.V); err != nil {
		return MatchMessage{}, err
	}
	switch {
	case m.Match.ID == "":
		return MatchMessage{}, fmt.Errorf("%w: match id is missing", ErrBadMessage)
	case len(m.Match.TicketIDs) == 0:
		return MatchMessage{}, fmt.Errorf("%w: match %s has no tickets", ErrBadMessage, m.Match.ID)
	case m.Attempt < 0:
		return MatchMessage{}, fmt.Errorf("%w: negative attempt", ErrBadMessage)
	}
	return m, nil
}

// decodeMessage decodes b into dst, whose schema version field is
// version. json.Unmarshal refuses data after the message.
func decodeMessage(b []byte, dst any, version *int) error {
	if err := json.Unmarshal(b, dst); err != nil {
		return fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	return checkVersion(*version)
}

func checkVersion(v int) error {
	if v < MinSchemaVersion || v > SchemaVersion {
		return fmt.Errorf("%w: schema version %d, want %d to %d", ErrBadMessage, v, MinSchemaVersion, SchemaVersion)
	}
	return nil
}

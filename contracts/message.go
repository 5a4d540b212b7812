package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// SchemaVersion is the version of the queue messages this build writes and
// reads. A consumer dead-letters a message of any other version rather than
// guess at its meaning.
const SchemaVersion = 1

// TicketMessage asks a matcher to find a match for one ticket. It carries a
// snapshot of what matching needs so the first attempt reads nothing; the
// store stays the authority on the ticket's status.
type TicketMessage struct {
	V      int    `json:"v"`
	Ticket Ticket `json:"ticket"`
	// Attempt counts the deliveries through the retry queue, from 0.
	Attempt int `json:"attempt"`
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

// DecodeTicketMessage decodes and checks a ticket message.
func DecodeTicketMessage(b []byte) (TicketMessage, error) {
	var m TicketMessage
	if err := decodeMessage(b, &m, &m.V); err != nil {
		return TicketMessage{}, err
	}
	t := &m.Ticket
	switch {
	case t.ID == "":
		return TicketMessage{}, fmt.Errorf("%w: ticket id is missing", ErrBadMessage)
	case t.Queue == "":
		return TicketMessage{}, fmt.Errorf("%w: ticket %s has no queue", ErrBadMessage, t.ID)
	case len(t.Players) == 0:
		return TicketMessage{}, fmt.Errorf("%w: ticket %s has no players", ErrBadMessage, t.ID)
	case m.Attempt < 0:
		return TicketMessage{}, fmt.Errorf("%w: negative attempt", ErrBadMessage)
	}
	return m, nil
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

func decodeMessage(b []byte, dst any, version *int) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("%w: %v", ErrBadMessage, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the message", ErrBadMessage)
	}
	if *version != SchemaVersion {
		return fmt.Errorf("%w: schema version %d, want %d", ErrBadMessage, *version, SchemaVersion)
	}
	return nil
}

package redisstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

// fmtTime is how records keep times: as JSON does, so that a time reads
// back as it would from the API.
func fmtTime(t time.Time) string { return t.Format(time.RFC3339Nano) }

func parseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

// timeKey renders t as 20 decimal digits that sort as the times do, so that
// scripts can compare times to the nanosecond as strings; Lua numbers are
// doubles and cannot hold nanoseconds since 1970.
func timeKey(t time.Time) string {
	return fmt.Sprintf("%020d", uint64(t.UnixNano())^(1<<63))
}

// ticketFields lays out t as the field/value pairs of its hash.
func ticketFields(t *contracts.Ticket, expiresAt time.Time) ([]any, error) {
	players, err := json.Marshal(t.Players)
	if err != nil {
		return nil, err
	}
	pids, err := json.Marshal(t.PlayerIDs())
	if err != nil {
		return nil, err
	}
	fields := []any{
		"id", t.ID,
		"queue", t.Queue,
		"status", string(t.Status),
		"version", t.Version,
		"created_at", fmtTime(t.CreatedAt),
		"updated_at", fmtTime(t.UpdatedAt),
		"players", players,
		"pids", pids,
		"reason", t.Reason,
		"exp", timeKey(expiresAt),
	}
	for _, f := range []struct {
		name  string
		value any
		set   bool
	}{
		{"latencies", t.Latencies, t.Latencies != nil},
		{"attributes", t.Attributes, t.Attributes != nil},
		{"match", t.Match, t.Match != nil},
		{"assignment", t.Assignment, t.Assignment != nil},
	} {
		if !f.set {
			continue
		}
		b, err := json.Marshal(f.value)
		if err != nil {
			return nil, err
		}
		fields = append(fields, f.name, b)
	}
	return fields, nil
}

// decodeTicket reads a ticket hash back.
func decodeTicket(h map[string]string) (contracts.Ticket, error) {
	t := contracts.Ticket{
		ID:     h["id"],
		Queue:  h["queue"],
		Status: contracts.Status(h["status"]),
		Reason: h["reason"],
	}
	var err error
	if t.Version, err = strconv.ParseInt(h["version"], 10, 64); err != nil {
		return t, fmt.Errorf("decoding ticket version: %w", err)
	}
	if t.CreatedAt, err = parseTime(h["created_at"]); err != nil {
		return t, fmt.Errorf("decoding ticket created_at: %w", err)
	}
	if t.UpdatedAt, err = parseTime(h["updated_at"]); err != nil {
		return t, fmt.Errorf("decoding ticket updated_at: %w", err)
	}
	for _, f := range []struct {
		name string
		dst  any
	}{
		{"players", &t.Players},
		{"latencies", &t.Latencies},
		{"attributes", &t.Attributes},
		{"match", &t.Match},
		{"assignment", &t.Assignment},
		{"acceptance", &t.Acceptance},
	} {
		raw, ok := h[f.name]
		if !ok {
			continue
		}
		if err := json.Unmarshal([]byte(raw), f.dst); err != nil {
			return t, fmt.Errorf("decoding ticket %s: %w", f.name, err)
		}
	}
	return t, nil
}

// decodeTicketState reads back the state a ticket's change carries: its
// hash fields as "<name> <length> <value>", run together (stateOf in
// scripts.go), decoded as the hash itself is.
func decodeTicketState(raw string) (contracts.Ticket, error) {
	h := make(map[string]string, 12)
	for raw != "" {
		name, rest, ok := strings.Cut(raw, " ")
		if !ok {
			return contracts.Ticket{}, errors.New("decoding ticket state: field without a length")
		}
		ln, rest, ok := strings.Cut(rest, " ")
		n, err := strconv.Atoi(ln)
		if !ok || err != nil || n < 0 || n > len(rest) {
			return contracts.Ticket{}, fmt.Errorf("decoding ticket state: bad length of field %q", name)
		}
		h[name], raw = rest[:n], rest[n:]
	}
	return decodeTicket(h)
}

// decodeServer reads a server hash back.
func decodeServer(h map[string]string) (contracts.Server, error) {
	srv := contracts.Server{
		ID:       h["id"],
		Address:  h["address"],
		Region:   h["region"],
		Draining: h["draining"] == "1",
	}
	var err error
	if srv.Capacity, err = strconv.Atoi(h["capacity"]); err != nil {
		return srv, fmt.Errorf("decoding server capacity: %w", err)
	}
	if srv.Allocated, err = strconv.Atoi(h["allocated"]); err != nil {
		return srv, fmt.Errorf("decoding server allocated: %w", err)
	}
	if srv.Version, err = strconv.ParseInt(h["version"], 10, 64); err != nil {
		return srv, fmt.Errorf("decoding server version: %w", err)
	}
	if srv.ExpiresAt, err = parseTime(h["expires_at"]); err != nil {
		return srv, fmt.Errorf("decoding server expires_at: %w", err)
	}
	return srv, nil
}

// hashOf turns the flat field/value list that HGETALL gives a script into a
// map.
func hashOf(v any) map[string]string {
	l, _ := v.([]any)
	h := make(map[string]string, len(l)/2)
	for i := 0; i+1 < len(l); i += 2 {
		k, _ := l[i].(string)
		v, _ := l[i+1].(string)
		h[k] = v
	}
	return h
}

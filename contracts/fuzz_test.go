package contracts_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/quickmatch/quickmatch/contracts"
)

// The fuzzers check what the services rely on when they read untrusted
// bytes: decoding never panics; a rejection always wraps the sentinel that
// makes a handler answer 400 or a consumer dead-letter; and whatever is
// accepted survives being written and read again unchanged, since every
// accepted value is re-encoded on its way to the store or the broker.

// reencode marshals v, decodes the result with decode and checks that the
// second value marshals to the same bytes as the first. Comparing encodings
// rather than values treats an empty map like a nil one and two equal times
// in different *time.Location values alike, as the wire does.
func reencode[T any](t *testing.T, v T, decode func([]byte) (T, error)) T {
	t.Helper()
	b1, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding the accepted value %+v: %v", v, err)
	}
	v2, err := decode(b1)
	if err != nil {
		t.Fatalf("decoding the re-encoded value %s: %v", b1, err)
	}
	b2, err := json.Marshal(v2)
	if err != nil {
		t.Fatalf("encoding the second value %+v: %v", v2, err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatalf("value changed on a round trip:\nfirst  %s\nsecond %s", b1, b2)
	}
	return v2
}

func FuzzDecodeTicketRequest(f *testing.F) {
	for _, s := range []string{
		`{"queue":"duel","players":[{"id":"p-1","skill":1520}],"latencies":{"eu-west":31,"us-east":112},"attributes":{"platform":"pc"}}`,
		`{"queue":"duel","players":[{"id":"a","skill":-3.5},{"id":"b","skill":0}]}`,
		`{"queue":"duel","players":[{"id":"a","skill":1e9}],"latencies":{},"attributes":{"k":"\u00e9\ud800"}}`,
		`{"queue":"duel","players":[{"id":"a","skill":1}]} {}`,
		`{"queue":"duel","players":[{"id":"a","skill":1}],"Queue":"x","PLAYERS":null}`,
		`{"queue":"duel","players":[{"id":"a","skill":"1"}]}`,
		`{"queue":"duel","players":[{"id":"a","skill":1,"x":1}]}`,
		`{"queue":"duel","players":[{"id":"a","skill":1e400}]}`,
		`{"queue":7}`,
		`null`,
		`[`,
		``,
	} {
		f.Add([]byte(s))
	}
	decode := func(b []byte) (contracts.TicketRequest, error) {
		return contracts.DecodeTicketRequest(bytes.NewReader(b))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decode(data)
		if err != nil {
			// A bytes.Reader never fails, so every error is the input's.
			if !errors.Is(err, contracts.ErrBadRequest) {
				t.Fatalf("DecodeTicketRequest(%q): %v does not wrap ErrBadRequest", data, err)
			}
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("DecodeTicketRequest(%q) accepted a request that fails Validate: %v", data, err)
		}
		again := reencode(t, req, decode)
		if err := again.Validate(); err != nil {
			t.Fatalf("re-decoded request fails Validate: %v", err)
		}
	})
}

func FuzzDecodeServerRequest(f *testing.F) {
	for _, s := range []string{
		`{"address":"10.0.0.7:7777","region":"eu-west","capacity":4}`,
		`{"address":"\u00e9","region":"eu","capacity":10000}`,
		`{"address":"h","region":"eu","capacity":1.0}`,
		`{"address":"h","region":"eu","capacity":0}`,
		`{"address":"h","region":"eu","capacity":1} x`,
		`{"address":"h","region":"eu","capacity":1,"x":1}`,
		`{}`,
		``,
	} {
		f.Add([]byte(s))
	}
	decode := func(b []byte) (contracts.ServerRequest, error) {
		return contracts.DecodeServerRequest(bytes.NewReader(b))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decode(data)
		if err != nil {
			if !errors.Is(err, contracts.ErrBadRequest) {
				t.Fatalf("DecodeServerRequest(%q): %v does not wrap ErrBadRequest", data, err)
			}
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("DecodeServerRequest(%q) accepted a request that fails Validate: %v", data, err)
		}
		if again := reencode(t, req, decode); again != req {
			t.Fatalf("round trip changed %+v into %+v", req, again)
		}
	})
}

func FuzzDecodeAcceptRequest(f *testing.F) {
	for _, s := range []string{
		`{"accept":true}`, `{"accept":false}`, `{"accept":null}`, `{"accept":1}`,
		`{"accept":true,"accept":false}`, `{"accept":true} x`, `{"accept":true,"x":1}`, `{}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		accept, err := contracts.DecodeAcceptRequest(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, contracts.ErrBadRequest) {
				t.Fatalf("DecodeAcceptRequest(%q): %v does not wrap ErrBadRequest", data, err)
			}
			return
		}
		var raw map[string]bool
		if json.Unmarshal(data, &raw) != nil || len(raw) != 1 || raw["accept"] != accept {
			t.Fatalf("DecodeAcceptRequest(%q) = %v, which the JSON does not say", data, accept)
		}
	})
}

func FuzzDecodeTicketMessage(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"ticket":` + ticketJSON + `,"attempt":2}`,
		`{"v":1,"ticket":{"id":"t","queue":"q","players":[{"id":"p"}],"created_at":"2025-01-02T03:04:05.123456789+05:30",` +
			`"match":{"id":"m","region":"","teams":[[],null]},"assignment":{"server_id":"s","address":"a","region":"r"}}}`,
		`{"v":1,"ticket":{"id":"t","queue":"q","players":[{"id":"p"}]},"attempt":-1}`,
		`{"v":3,"ticket":{"id":"t","queue":"q","players":[{"id":"p"}]}}`,
		`{"v":2,"tickets":[{"ticket":{"id":"t","queue":"q","players":[{"id":"p"}]},"attempt":1},{"ticket":{"id":""}},3]}`,
		`{"v":2,"tickets":[]}`,
		`{"v":1,"ticket":{"id":"t","queue":"q","players":[{"id":"p"}],"updated_at":"0000-01-01T00:00:00Z"}}`,
		`{"v":1,"ticket":{"id":"t","queue":"q","players":[{"id":"p"}],"updated_at":"9999-12-31T23:59:59-23:59"}}`,
		`{"v":1,"ticket":{"id":"t","queue":"q","players":[]}} {}`,
		`{"v":1}`,
		`null`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, rejected, err := contracts.DecodeTicketMessage(data)
		if err != nil {
			if !errors.Is(err, contracts.ErrBadMessage) {
				t.Fatalf("DecodeTicketMessage(%q): %v does not wrap ErrBadMessage", data, err)
			}
			return
		}
		if m.V != contracts.SchemaVersion || len(m.Tickets) == 0 || len(m.Tickets)+len(rejected) > contracts.MaxTicketsPerMessage {
			t.Fatalf("DecodeTicketMessage(%q) accepted a bad message: %+v", data, m)
		}
		for _, try := range m.Tickets {
			if try.Ticket.ID == "" || try.Ticket.Queue == "" || len(try.Ticket.Players) == 0 || try.Attempt < 0 {
				t.Fatalf("DecodeTicketMessage(%q) accepted an incomplete ticket: %+v", data, try)
			}
		}
		for _, r := range rejected {
			if !errors.Is(r.Err, contracts.ErrBadMessage) {
				t.Fatalf("DecodeTicketMessage(%q) rejected an entry with %v, which does not wrap ErrBadMessage", data, r.Err)
			}
		}
		reencode(t, m, func(b []byte) (contracts.TicketMessage, error) {
			m, _, err := contracts.DecodeTicketMessage(b)
			return m, err
		})
	})
}

func FuzzDecodeMatchMessage(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"match":` + matchJSON + `,"attempt":3}`,
		`{"v":1,"match":{"id":"m","region":"","ticket_ids":["t"],"teams":[null,[]],"players":null}}`,
		`{"v":1,"match":{"id":"m","ticket_ids":["t"],"assign_deadline":"2025-01-02T03:04:05.1-00:00"}}`,
		`{"v":1,"match":{"id":"m","ticket_ids":[]}}`,
		`{"v":1,"match":{"id":"m","ticket_ids":["t"]},"attempt":1e3}`,
		`{"v":3,"match":{"id":"m","ticket_ids":["t"]}}`,
		`{"v":1,"match":{"id":"m","ticket_ids":["t"]}}]`,
		`"x"`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := contracts.DecodeMatchMessage(data)
		if err != nil {
			if !errors.Is(err, contracts.ErrBadMessage) {
				t.Fatalf("DecodeMatchMessage(%q): %v does not wrap ErrBadMessage", data, err)
			}
			return
		}
		if m.V < contracts.MinSchemaVersion || m.V > contracts.SchemaVersion || m.Match.ID == "" || len(m.Match.TicketIDs) == 0 || m.Attempt < 0 {
			t.Fatalf("DecodeMatchMessage(%q) accepted an incomplete message: %+v", data, m)
		}
		reencode(t, m, contracts.DecodeMatchMessage)
	})
}

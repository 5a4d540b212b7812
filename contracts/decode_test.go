package contracts_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

// players returns a JSON array of n distinct players.
func players(n int) string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprintf(`{"id":"p-%d","skill":%d}`, i, 1000+i)
	}
	return "[" + strings.Join(ps, ",") + "]"
}

// jsonMap returns a JSON object of n entries made by entry(i).
func jsonMap(n int, entry func(i int) string) string {
	es := make([]string, n)
	for i := range es {
		es[i] = entry(i)
	}
	return "{" + strings.Join(es, ",") + "}"
}

func TestDecodeTicketRequest(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name    string
		body    string
		want    *contracts.TicketRequest // checked when not nil
		wantErr error
	}{
		{
			name: "full",
			body: `{"queue":"duel","players":[{"id":"p-1","skill":1520}],
				"latencies":{"eu-west":31,"us-east":112},"attributes":{"platform":"pc"}}`,
			want: &contracts.TicketRequest{
				Queue:      "duel",
				Players:    []contracts.Player{{ID: "p-1", Skill: 1520}},
				Latencies:  map[string]float64{"eu-west": 31, "us-east": 112},
				Attributes: map[string]string{"platform": "pc"},
			},
		},
		{
			name: "minimal party of two",
			body: `{"queue":"duel","players":[{"id":"a","skill":-3.5},{"id":"b","skill":0}]}`,
			want: &contracts.TicketRequest{
				Queue:   "duel",
				Players: []contracts.Player{{ID: "a", Skill: -3.5}, {ID: "b"}},
			},
		},
		{name: "trailing whitespace", body: `{"queue":"duel","players":[{"id":"a","skill":1}]}` + " \n\t"},
		{name: "limits reached", body: fmt.Sprintf(`{"queue":%q,"players":%s,"latencies":%s,"attributes":%s}`,
			long(contracts.MaxIDLength), players(contracts.MaxPartySize),
			jsonMap(contracts.MaxRegions, func(i int) string { return fmt.Sprintf(`"r%d":%d`, i, contracts.MaxLatencyMS) }),
			jsonMap(contracts.MaxAttributes, func(i int) string {
				return fmt.Sprintf(`"%s%02d":%q`, long(contracts.MaxAttrKeyLen-2), i, long(contracts.MaxAttrValueLen))
			}))},
		{name: "skill at the limit", body: `{"queue":"duel","players":[{"id":"a","skill":-1e9}]}`},

		{name: "same key in another object", body: `{"queue":"duel","players":[{"id":"a","skill":1},{"id":"b","skill":2}],"attributes":{"queue":"x"}}`},
		{name: "quotes and colons inside strings", body: `{"queue":"duel","players":[{"id":"a","skill":1}],"attributes":{"k":"a\":b","k2":"[{\"k\":1}]"}}`},
		{name: "nested arrays and objects", body: `{"queue":"duel","players":[{"id":"a","skill":1}],"latencies":{"a":1,"b":2},"attributes":{}}`},

		{name: "empty body", body: ``, wantErr: contracts.ErrBadRequest},
		// encoding/json keeps the last of duplicate keys; a proxy or a log
		// may read the first.
		{name: "duplicate top-level key", body: `{"queue":"nope","queue":"duel","players":[{"id":"a","skill":1}]}`, wantErr: contracts.ErrBadRequest},
		{name: "duplicate key in a player", body: `{"queue":"duel","players":[{"id":"a","id":"b","skill":1}]}`, wantErr: contracts.ErrBadRequest},
		{name: "duplicate key spelled with an escape", body: `{"queue":"duel","\u0071ueue":"duel","players":[{"id":"a","skill":1}]}`, wantErr: contracts.ErrBadRequest},
		{name: "duplicate key in a map", body: `{"queue":"duel","players":[{"id":"a","skill":1}],"latencies":{"eu":1,"eu":2}}`, wantErr: contracts.ErrBadRequest},
		// encoding/json would turn these bytes into U+FFFD before any
		// check saw them.
		{name: "invalid UTF-8 in a value", body: "{\"queue\":\"duel\",\"players\":[{\"id\":\"a\",\"skill\":1}],\"attributes\":{\"k\":\"\xff\xfe\"}}", wantErr: contracts.ErrBadRequest},
		{name: "invalid UTF-8 in a key", body: "{\"queue\":\"duel\",\"players\":[{\"id\":\"a\",\"skill\":1}],\"attributes\":{\"\xc3\":\"v\"}}", wantErr: contracts.ErrBadRequest},
		{name: "only whitespace", body: " \n", wantErr: contracts.ErrBadRequest},
		{name: "null", body: `null`, wantErr: contracts.ErrBadRequest},
		{name: "malformed", body: `{"queue":"duel",}`, wantErr: contracts.ErrBadRequest},
		{name: "truncated", body: `{"queue":"duel","players":[`, wantErr: contracts.ErrBadRequest},
		{name: "not an object", body: `["duel"]`, wantErr: contracts.ErrBadRequest},
		{name: "trailing object", body: `{"queue":"duel","players":[{"id":"a","skill":1}]}{}`, wantErr: contracts.ErrBadRequest},
		{name: "trailing garbage", body: `{"queue":"duel","players":[{"id":"a","skill":1}]} x`, wantErr: contracts.ErrBadRequest},
		{name: "trailing brace", body: `{"queue":"duel","players":[{"id":"a","skill":1}]}}`, wantErr: contracts.ErrBadRequest},
		{name: "unknown field", body: `{"queue":"duel","players":[{"id":"a","skill":1}],"mode":"ranked"}`, wantErr: contracts.ErrBadRequest},
		{name: "unknown player field", body: `{"queue":"duel","players":[{"id":"a","skill":1,"elo":3}]}`, wantErr: contracts.ErrBadRequest},
		{name: "player without skill", body: `{"queue":"duel","players":[{"id":"a"}]}`, wantErr: contracts.ErrBadRequest},
		{name: "player without id", body: `{"queue":"duel","players":[{"skill":1}]}`, wantErr: contracts.ErrBadRequest},
		{name: "player skill of the wrong type", body: `{"queue":"duel","players":[{"id":"a","skill":"high"}]}`, wantErr: contracts.ErrBadRequest},
		{name: "queue is a number", body: `{"queue":7,"players":[{"id":"a","skill":1}]}`, wantErr: contracts.ErrBadRequest},
		{name: "skill is a string", body: `{"queue":"duel","players":[{"id":"a","skill":"high"}]}`, wantErr: contracts.ErrBadRequest},
		{name: "players is an object", body: `{"queue":"duel","players":{"id":"a"}}`, wantErr: contracts.ErrBadRequest},
		{name: "latency is a string", body: `{"queue":"duel","players":[{"id":"a","skill":1}],"latencies":{"eu":"31"}}`, wantErr: contracts.ErrBadRequest},
		{name: "attribute is a number", body: `{"queue":"duel","players":[{"id":"a","skill":1}],"attributes":{"k":1}}`, wantErr: contracts.ErrBadRequest},
		{name: "skill out of float range", body: `{"queue":"duel","players":[{"id":"a","skill":1e400}]}`, wantErr: contracts.ErrBadRequest},
		{name: "missing queue", body: `{"players":[{"id":"a","skill":1}]}`, wantErr: contracts.ErrBadRequest},
		{name: "queue with space", body: `{"queue":"du el","players":[{"id":"a","skill":1}]}`, wantErr: contracts.ErrBadRequest},
		{name: "queue with slash", body: `{"queue":"a/b","players":[{"id":"a","skill":1}]}`, wantErr: contracts.ErrBadRequest},
		{name: "queue too long", body: fmt.Sprintf(`{"queue":%q,"players":[{"id":"a","skill":1}]}`, long(contracts.MaxIDLength+1)), wantErr: contracts.ErrBadRequest},
		{name: "missing players", body: `{"queue":"duel"}`, wantErr: contracts.ErrBadRequest},
		{name: "empty party", body: `{"queue":"duel","players":[]}`, wantErr: contracts.ErrBadRequest},
		{name: "party too large", body: fmt.Sprintf(`{"queue":"duel","players":%s}`, players(contracts.MaxPartySize+1)), wantErr: contracts.ErrBadRequest},
		{name: "player without id", body: `{"queue":"duel","players":[{"skill":1}]}`, wantErr: contracts.ErrBadRequest},
		{name: "player id not ASCII", body: `{"queue":"duel","players":[{"id":"é","skill":1}]}`, wantErr: contracts.ErrBadRequest},
		{name: "player listed twice", body: `{"queue":"duel","players":[{"id":"a","skill":1},{"id":"a","skill":2}]}`, wantErr: contracts.ErrBadRequest},
		{name: "skill too high", body: `{"queue":"duel","players":[{"id":"a","skill":1000000001}]}`, wantErr: contracts.ErrBadRequest},
		{name: "too many regions", body: fmt.Sprintf(`{"queue":"duel","players":[{"id":"a","skill":1}],"latencies":%s}`,
			jsonMap(contracts.MaxRegions+1, func(i int) string { return fmt.Sprintf(`"r%d":1`, i) })), wantErr: contracts.ErrBadRequest},
		{name: "empty region", body: `{"queue":"duel","players":[{"id":"a","skill":1}],"latencies":{"":1}}`, wantErr: contracts.ErrBadRequest},
		{name: "negative latency", body: `{"queue":"duel","players":[{"id":"a","skill":1}],"latencies":{"eu":-1}}`, wantErr: contracts.ErrBadRequest},
		{name: "latency too high", body: `{"queue":"duel","players":[{"id":"a","skill":1}],"latencies":{"eu":60001}}`, wantErr: contracts.ErrBadRequest},
		{name: "too many attributes", body: fmt.Sprintf(`{"queue":"duel","players":[{"id":"a","skill":1}],"attributes":%s}`,
			jsonMap(contracts.MaxAttributes+1, func(i int) string { return fmt.Sprintf(`"k%d":"v"`, i) })), wantErr: contracts.ErrBadRequest},
		{name: "attribute key too long", body: fmt.Sprintf(`{"queue":"duel","players":[{"id":"a","skill":1}],"attributes":{%q:"v"}}`,
			long(contracts.MaxAttrKeyLen+1)), wantErr: contracts.ErrBadRequest},
		{name: "attribute value too long", body: fmt.Sprintf(`{"queue":"duel","players":[{"id":"a","skill":1}],"attributes":{"k":%q}}`,
			long(contracts.MaxAttrValueLen+1)), wantErr: contracts.ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := contracts.DecodeTicketRequest(strings.NewReader(tt.body))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("DecodeTicketRequest = %+v, %v; want an error wrapping %v", got, err, tt.wantErr)
				}
				if !reflect.DeepEqual(got, contracts.TicketRequest{}) {
					t.Errorf("DecodeTicketRequest returned %+v with its error; want the zero value", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeTicketRequest: %v", err)
			}
			if tt.want != nil && !reflect.DeepEqual(got, *tt.want) {
				t.Errorf("DecodeTicketRequest = %+v, want %+v", got, *tt.want)
			}
		})
	}
}

func TestCheckJSONContentType(t *testing.T) {
	for _, tt := range []struct {
		contentType string
		ok          bool
	}{
		{"", true},
		{"application/json", true},
		{"application/json; charset=utf-8", true},
		{"Application/JSON", true},
		{"application/problem+json", true},
		{"application/x-www-form-urlencoded", false},
		{"text/plain", false},
		{"multipart/form-data; boundary=x", false},
		{"application/json; charset", false}, // malformed parameter
		{"text/json+", false},
	} {
		err := contracts.CheckJSONContentType(tt.contentType)
		if tt.ok && err != nil {
			t.Errorf("CheckJSONContentType(%q) = %v; want nil", tt.contentType, err)
		}
		if !tt.ok && !errors.Is(err, contracts.ErrUnsupportedMediaType) {
			t.Errorf("CheckJSONContentType(%q) = %v; want ErrUnsupportedMediaType", tt.contentType, err)
		}
	}
}

func TestDecodeServerRequest(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    *contracts.ServerRequest
		wantErr error
	}{
		{
			name: "good",
			body: `{"address":"10.0.0.7:7777","region":"eu-west","capacity":4}`,
			want: &contracts.ServerRequest{Address: "10.0.0.7:7777", Region: "eu-west", Capacity: 4},
		},
		{name: "capacity at the limit", body: `{"address":"h:1","region":"eu","capacity":10000}`},
		{name: "address at the limit", body: fmt.Sprintf(`{"address":%q,"region":"eu","capacity":1}`, strings.Repeat("a", 256))},

		{name: "empty body", body: ``, wantErr: contracts.ErrBadRequest},
		{name: "malformed", body: `{"address":"h:1" "region":"eu"}`, wantErr: contracts.ErrBadRequest},
		{name: "truncated", body: `{"address":"h:1","region":"eu","capa`, wantErr: contracts.ErrBadRequest},
		{name: "trailing data", body: `{"address":"h:1","region":"eu","capacity":1} 1`, wantErr: contracts.ErrBadRequest},
		{name: "unknown field", body: `{"address":"h:1","region":"eu","capacity":1,"port":7777}`, wantErr: contracts.ErrBadRequest},
		{name: "capacity is a string", body: `{"address":"h:1","region":"eu","capacity":"4"}`, wantErr: contracts.ErrBadRequest},
		{name: "capacity is fractional", body: `{"address":"h:1","region":"eu","capacity":1.5}`, wantErr: contracts.ErrBadRequest},
		{name: "capacity overflows", body: `{"address":"h:1","region":"eu","capacity":99999999999999999999}`, wantErr: contracts.ErrBadRequest},
		{name: "address is a number", body: `{"address":7777,"region":"eu","capacity":1}`, wantErr: contracts.ErrBadRequest},
		{name: "capacity zero", body: `{"address":"h:1","region":"eu","capacity":0}`, wantErr: contracts.ErrBadRequest},
		{name: "capacity missing", body: `{"address":"h:1","region":"eu"}`, wantErr: contracts.ErrBadRequest},
		{name: "capacity negative", body: `{"address":"h:1","region":"eu","capacity":-1}`, wantErr: contracts.ErrBadRequest},
		{name: "capacity too high", body: `{"address":"h:1","region":"eu","capacity":10001}`, wantErr: contracts.ErrBadRequest},
		{name: "missing region", body: `{"address":"h:1","capacity":1}`, wantErr: contracts.ErrBadRequest},
		{name: "region with space", body: `{"address":"h:1","region":"eu west","capacity":1}`, wantErr: contracts.ErrBadRequest},
		{name: "missing address", body: `{"region":"eu","capacity":1}`, wantErr: contracts.ErrBadRequest},
		{name: "address too long", body: fmt.Sprintf(`{"address":%q,"region":"eu","capacity":1}`, strings.Repeat("a", 257)), wantErr: contracts.ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := contracts.DecodeServerRequest(strings.NewReader(tt.body))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("DecodeServerRequest = %+v, %v; want an error wrapping %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeServerRequest: %v", err)
			}
			if tt.want != nil && got != *tt.want {
				t.Errorf("DecodeServerRequest = %+v, want %+v", got, *tt.want)
			}
		})
	}
}

// TestDecodeRequestReadError checks that a failing reader is reported as
// such, not blamed on the client's JSON, so that a handler can tell a body
// that is too large (413) from a malformed one (400).
func TestDecodeRequestReadError(t *testing.T) {
	errBroken := errors.New("connection reset")
	decoders := []struct {
		name   string
		good   string
		decode func(io.Reader) error
	}{
		{
			name: "ticket",
			good: `{"queue":"duel","players":[{"id":"a","skill":1}]}`,
			decode: func(r io.Reader) error {
				_, err := contracts.DecodeTicketRequest(r)
				return err
			},
		},
		{
			name: "server",
			good: `{"address":"h:1","region":"eu","capacity":1}`,
			decode: func(r io.Reader) error {
				_, err := contracts.DecodeServerRequest(r)
				return err
			},
		},
	}
	isBroken := func(err error) bool { return errors.Is(err, errBroken) }
	tests := []struct {
		name string
		r    func(good string) io.Reader
		want func(error) bool
	}{
		{
			name: "failing reader",
			r:    func(string) io.Reader { return iotest.ErrReader(errBroken) },
			want: isBroken,
		},
		{
			name: "failing after a prefix",
			r: func(good string) io.Reader {
				return io.MultiReader(strings.NewReader(good[:10]), iotest.ErrReader(errBroken))
			},
			want: isBroken,
		},
		{
			name: "failing after the value",
			r: func(good string) io.Reader {
				return io.MultiReader(strings.NewReader(good), iotest.ErrReader(errBroken))
			},
			want: isBroken,
		},
		{
			name: "over the byte limit",
			r: func(good string) io.Reader {
				// A string value that outgrows the limit inside the object.
				body := good[:len(good)-1] + `,"x":"` + strings.Repeat("v", contracts.MaxRequestBytes) + `"}`
				return http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader(body)), contracts.MaxRequestBytes)
			},
			want: func(err error) bool {
				var tooLarge *http.MaxBytesError
				return errors.As(err, &tooLarge)
			},
		},
	}
	for _, d := range decoders {
		for _, tt := range tests {
			t.Run(d.name+"/"+tt.name, func(t *testing.T) {
				err := d.decode(tt.r(d.good))
				if err == nil || !tt.want(err) {
					t.Fatalf("decode: %v; want the reader's error", err)
				}
				if errors.Is(err, contracts.ErrBadRequest) {
					t.Errorf("decode: %v wraps ErrBadRequest; a read error is not the client's fault", err)
				}
			})
		}
	}
}

const ticketJSON = `{"id":"t-1","queue":"duel","status":"searching","version":1,
	"created_at":"2025-01-02T03:04:05Z","updated_at":"2025-01-02T03:04:05Z",
	"players":[{"id":"p-1","skill":1520}],"latencies":{"eu-west":31},"reason":""}`

func TestDecodeTicketMessage(t *testing.T) {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	ticket := contracts.Ticket{
		ID: "t-1", Queue: "duel", Status: contracts.StatusSearching, Version: 1,
		CreatedAt: created, UpdatedAt: created,
		Players:   []contracts.Player{{ID: "p-1", Skill: 1520}},
		Latencies: map[string]float64{"eu-west": 31},
	}
	second := `{"ticket":{"id":"t-2","queue":"duel","players":[{"id":"p-2","skill":1}]},"attempt":1}`
	tests := []struct {
		name     string
		body     string
		want     *contracts.TicketMessage
		rejected int
		wantErr  bool
	}{
		{
			name: "version 1",
			body: `{"v":1,"ticket":` + ticketJSON + `,"attempt":2}`,
			want: &contracts.TicketMessage{V: 2, Tickets: []contracts.TicketTry{{Ticket: ticket, Attempt: 2}}},
		},
		{
			name: "version 2",
			body: `{"v":2,"tickets":[{"ticket":` + ticketJSON + `,"attempt":2},` + second + `]}`,
			want: &contracts.TicketMessage{V: 2, Tickets: []contracts.TicketTry{
				{Ticket: ticket, Attempt: 2},
				{Ticket: contracts.Ticket{ID: "t-2", Queue: "duel", Players: []contracts.Player{{ID: "p-2", Skill: 1}}}, Attempt: 1},
			}},
		},
		{name: "attempt omitted", body: `{"v":1,"ticket":` + ticketJSON + `}`},
		{name: "attempt omitted in a batch", body: `{"v":2,"tickets":[{"ticket":` + ticketJSON + `}]}`},
		// A newer producer may add fields; the schema version, not the
		// field set, says when a message can no longer be read.
		{name: "unknown field", body: `{"v":1,"ticket":` + ticketJSON + `,"attempt":0,"trace":"abc"}`},
		{name: "unknown field in a batch", body: `{"v":2,"tickets":[{"ticket":` + ticketJSON + `,"trace":"abc"}],"trace":1}`},

		// One bad entry is rejected alone; the rest is handled.
		{name: "entry without id", body: `{"v":2,"tickets":[` + second + `,{"ticket":{"queue":"q","players":[{"id":"p"}]}}]}`, rejected: 1},
		{name: "entry of the wrong type", body: `{"v":2,"tickets":[` + second + `,7,"x",null]}`, rejected: 3},
		{name: "entry with a negative attempt", body: `{"v":2,"tickets":[{"ticket":` + ticketJSON + `,"attempt":-1},` + second + `]}`, rejected: 1},
		{name: "no good entry", body: `{"v":2,"tickets":[{"ticket":{"id":"t","queue":"q","players":[]}}]}`, wantErr: true},
		{name: "no entries", body: `{"v":2,"tickets":[]}`, wantErr: true},
		{name: "tickets missing", body: `{"v":2}`, wantErr: true},
		{name: "tickets not a list", body: `{"v":2,"tickets":{}}`, wantErr: true},
		{name: "too many entries", body: `{"v":2,"tickets":[` + strings.Repeat(second+",", contracts.MaxTicketsPerMessage) + second + `]}`, wantErr: true},

		{name: "empty", body: ``, wantErr: true},
		{name: "null", body: `null`, wantErr: true},
		{name: "malformed", body: `{"v":1,"ticket":`, wantErr: true},
		{name: "not an object", body: `[1]`, wantErr: true},
		{name: "trailing data", body: `{"v":1,"ticket":` + ticketJSON + `} {}`, wantErr: true},
		{name: "trailing garbage", body: `{"v":1,"ticket":` + ticketJSON + `}]`, wantErr: true},
		{name: "version missing", body: `{"ticket":` + ticketJSON + `}`, wantErr: true},
		{name: "version from the future", body: `{"v":3,"tickets":[` + second + `]}`, wantErr: true},
		{name: "version is a string", body: `{"v":"1","ticket":` + ticketJSON + `}`, wantErr: true},
		{name: "attempt is a string", body: `{"v":1,"ticket":` + ticketJSON + `,"attempt":"1"}`, wantErr: true},
		{name: "negative attempt", body: `{"v":1,"ticket":` + ticketJSON + `,"attempt":-1}`, wantErr: true},
		{name: "bad time", body: `{"v":1,"ticket":{"id":"t","queue":"q","players":[{"id":"p"}],"created_at":"yesterday"}}`, wantErr: true},
		{name: "ticket missing", body: `{"v":1}`, wantErr: true},
		{name: "ticket without id", body: `{"v":1,"ticket":{"queue":"q","players":[{"id":"p"}]}}`, wantErr: true},
		{name: "ticket without queue", body: `{"v":1,"ticket":{"id":"t","players":[{"id":"p"}]}}`, wantErr: true},
		{name: "ticket without players", body: `{"v":1,"ticket":{"id":"t","queue":"q","players":[]}}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rejected, err := contracts.DecodeTicketMessage([]byte(tt.body))
			if tt.wantErr {
				if !errors.Is(err, contracts.ErrBadMessage) {
					t.Fatalf("DecodeTicketMessage = %+v, %v; want an error wrapping ErrBadMessage", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeTicketMessage: %v", err)
			}
			if len(rejected) != tt.rejected {
				t.Errorf("DecodeTicketMessage rejected %d entries (%+v), want %d", len(rejected), rejected, tt.rejected)
			}
			for _, r := range rejected {
				if !errors.Is(r.Err, contracts.ErrBadMessage) || !json.Valid(r.Body) || !bytes.HasPrefix(r.Body, []byte(`{"v":2,"tickets":[`)) {
					t.Errorf("rejected entry %q: %v; want a message of it alone and an error wrapping ErrBadMessage", r.Body, r.Err)
				}
			}
			if tt.want != nil && !reflect.DeepEqual(got, *tt.want) {
				t.Errorf("DecodeTicketMessage = %+v, want %+v", got, *tt.want)
			}
		})
	}
}

func TestEncodeTicketMessage(t *testing.T) {
	tries := []contracts.TicketTry{
		{Ticket: contracts.Ticket{ID: "t-1", Queue: "duel", Players: []contracts.Player{{ID: "p-1", Skill: 1}}}},
		{Ticket: contracts.Ticket{ID: "t-2", Queue: "duel", Players: []contracts.Player{{ID: "p-2", Skill: 2}}}, Attempt: 3},
	}
	b, err := contracts.EncodeTicketMessage(tries...)
	if err != nil {
		t.Fatalf("EncodeTicketMessage: %v", err)
	}
	got, rejected, err := contracts.DecodeTicketMessage(b)
	if err != nil || len(rejected) != 0 {
		t.Fatalf("DecodeTicketMessage(%s) = %v, %v", b, rejected, err)
	}
	if got.V != contracts.SchemaVersion || !reflect.DeepEqual(got.Tickets, tries) {
		t.Errorf("round trip = %+v, want version %d with %+v", got, contracts.SchemaVersion, tries)
	}
	for _, n := range []int{0, contracts.MaxTicketsPerMessage + 1} {
		if _, err := contracts.EncodeTicketMessage(make([]contracts.TicketTry, n)...); err == nil {
			t.Errorf("EncodeTicketMessage of %d tickets succeeded", n)
		}
	}
}

const matchJSON = `{"id":"m-1","queue":"duel","region":"eu-west","teams":[["p-1"],["p-2"]],
	"ticket_ids":["t-1","t-2"],"players":[{"id":"p-1","skill":1500},{"id":"p-2","skill":1510}],
	"created_at":"2025-01-02T03:04:05Z","assign_deadline":"2025-01-02T03:04:35Z"}`

func TestDecodeMatchMessage(t *testing.T) {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name    string
		body    string
		want    *contracts.MatchMessage
		wantErr bool
	}{
		{
			name: "good",
			body: `{"v":1,"match":` + matchJSON + `,"attempt":3}`,
			want: &contracts.MatchMessage{V: 1, Attempt: 3, Match: contracts.Match{
				ID: "m-1", Queue: "duel", Region: "eu-west",
				Teams:          [][]string{{"p-1"}, {"p-2"}},
				TicketIDs:      []string{"t-1", "t-2"},
				Players:        []contracts.Player{{ID: "p-1", Skill: 1500}, {ID: "p-2", Skill: 1510}},
				CreatedAt:      created,
				AssignDeadline: created.Add(30 * time.Second),
			}},
		},
		{name: "any region", body: `{"v":1,"match":{"id":"m","region":"","ticket_ids":["t"]}}`},
		{name: "unknown field", body: `{"v":1,"match":` + matchJSON + `,"extra":[1,2]}`},

		{name: "empty", body: ``, wantErr: true},
		{name: "whitespace", body: "  ", wantErr: true},
		{name: "malformed", body: `{"v":1,"match":{"id":"m",}}`, wantErr: true},
		{name: "not an object", body: `"match"`, wantErr: true},
		{name: "trailing data", body: `{"v":1,"match":` + matchJSON + `}{"v":1}`, wantErr: true},
		{name: "version missing", body: `{"match":` + matchJSON + `}`, wantErr: true},
		{name: "version zero", body: `{"v":0,"match":` + matchJSON + `}`, wantErr: true},
		{name: "version 2", body: `{"v":2,"match":` + matchJSON + `}`},
		{name: "version from the future", body: `{"v":3,"match":` + matchJSON + `}`, wantErr: true},
		{name: "version fractional", body: `{"v":1.5,"match":` + matchJSON + `}`, wantErr: true},
		{name: "teams wrong type", body: `{"v":1,"match":{"id":"m","ticket_ids":["t"],"teams":["p-1"]}}`, wantErr: true},
		{name: "ticket ids wrong type", body: `{"v":1,"match":{"id":"m","ticket_ids":"t"}}`, wantErr: true},
		{name: "bad deadline", body: `{"v":1,"match":{"id":"m","ticket_ids":["t"],"assign_deadline":12}}`, wantErr: true},
		{name: "negative attempt", body: `{"v":1,"match":` + matchJSON + `,"attempt":-2}`, wantErr: true},
		{name: "match without id", body: `{"v":1,"match":{"ticket_ids":["t"]}}`, wantErr: true},
		{name: "match without tickets", body: `{"v":1,"match":{"id":"m","ticket_ids":[]}}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := contracts.DecodeMatchMessage([]byte(tt.body))
			if tt.wantErr {
				if !errors.Is(err, contracts.ErrBadMessage) {
					t.Fatalf("DecodeMatchMessage = %+v, %v; want an error wrapping ErrBadMessage", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeMatchMessage: %v", err)
			}
			if tt.want != nil && !reflect.DeepEqual(got, *tt.want) {
				t.Errorf("DecodeMatchMessage = %+v, want %+v", got, *tt.want)
			}
		})
	}
}

// BenchmarkDecodeTicketRequest decodes a typical create: one player, two
// regions, one attribute.
func BenchmarkDecodeTicketRequest(b *testing.B) {
	body := []byte(`{"queue":"duel","players":[{"id":"p-1","skill":1520}],"latencies":{"eu-west":31,"us-east":112},"attributes":{"platform":"pc"}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := contracts.DecodeTicketRequest(bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeTicketMessage(b *testing.B) {
	tk := contracts.Ticket{ID: "duel.0123456789abcdef", Queue: "duel", Status: contracts.StatusSearching, Version: 1,
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), UpdatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Players:    []contracts.Player{{ID: "player-0123456789", Skill: 1520}},
		Latencies:  map[string]float64{"eu-west": 31, "us-east": 110},
		Attributes: map[string]string{"platform": "pc"}}
	for _, n := range []int{1, 16} {
		tries := make([]contracts.TicketTry, n)
		for i := range tries {
			tries[i] = contracts.TicketTry{Ticket: tk}
		}
		body, err := contracts.EncodeTicketMessage(tries...)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("tickets=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := contracts.DecodeTicketMessage(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMatchMessage encodes the message of a 5v5 match, as a matcher
// does, and decodes it, as an assigner does.
func BenchmarkMatchMessage(b *testing.B) {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	m := contracts.Match{ID: "ranked-5v5.6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", Queue: "ranked-5v5", Region: "eu-west",
		CreatedAt: created, AssignDeadline: created.Add(45 * time.Second), Teams: make([][]string, 2)}
	for i := range 10 {
		id := fmt.Sprintf("player-%02d", i)
		m.Players = append(m.Players, contracts.Player{ID: id, Skill: 1500 + float64(i)})
		m.Teams[i%2] = append(m.Teams[i%2], id)
		m.TicketIDs = append(m.TicketIDs, fmt.Sprintf("ranked-5v5.6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a%02d", i))
	}
	b.ReportAllocs()
	for b.Loop() {
		body, err := contracts.EncodeMatchMessage(m, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := contracts.DecodeMatchMessage(body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMatchMessageCarriesWhatAssignersRead: a match message carries the
// fields an assigner reads and not the teams and players, which stay in
// the store; it decodes, here and in the previous version's decoder (the
// same function, which ignores absent fields), to the match less those.
func TestMatchMessageCarriesWhatAssignersRead(t *testing.T) {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	m := contracts.Match{ID: "duel.m", Queue: "duel", Region: "eu-west", TicketIDs: []string{"duel.a", "duel.b"},
		Teams: [][]string{{"p-a"}, {"p-b"}}, Players: []contracts.Player{{ID: "p-a", Skill: 1}, {ID: "p-b", Skill: 2}},
		CreatedAt: created, AcceptDeadline: created.Add(10 * time.Second), AssignDeadline: created.Add(40 * time.Second)}
	body, err := contracts.EncodeMatchMessage(m, 2)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), "players") || strings.Contains(string(body), "teams") || strings.Contains(string(body), "p-a") {
		t.Errorf("match message %s carries the teams or players", body)
	}
	got, err := contracts.DecodeMatchMessage(body)
	if err != nil {
		t.Fatal(err)
	}
	want := m
	want.Teams, want.Players = nil, nil
	if got.V != contracts.MatchSchemaVersion || got.Attempt != 2 || !reflect.DeepEqual(got.Match, want) {
		t.Errorf("decoded %+v, want %+v at attempt 2", got, want)
	}
}

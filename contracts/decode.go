package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits on a ticket request. They bound what one request can make the suite
// store and compare, whatever the queue.
const (
	MaxRequestBytes = 16 << 10
	MaxPartySize    = 100
	MaxIDLength     = 128
	MaxRegionLength = 64
	MaxRegions      = 32
	MaxLatencyMS    = 60_000
	MaxAttributes   = 32
	MaxAttrKeyLen   = 64
	MaxAttrValueLen = 256
	// MaxSkill bounds skill ratings so that sums over teams stay exact.
	MaxSkill = 1e9
)

// ErrBadRequest marks a request the client must change before it can succeed.
var ErrBadRequest = errors.New("bad request")

// DecodeTicketRequest reads one JSON ticket request from r and checks what
// can be checked without knowing the queue's rules. Unknown fields, trailing
// data and wrong types are errors wrapping ErrBadRequest; a read error
// (such as *http.MaxBytesError) is returned wrapped as it is.
func DecodeTicketRequest(r io.Reader) (TicketRequest, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return TicketRequest{}, fmt.Errorf("reading body: %w", err)
	}
	return DecodeTicketRequestBytes(body)
}

// DecodeTicketRequestBytes is DecodeTicketRequest of a body already read,
// for a caller that needs the bytes too (the front digests them for the
// Idempotency-Key).
func DecodeTicketRequestBytes(body []byte) (TicketRequest, error) {
	var req TicketRequest
	if err := decodeStrictBytes(body, &req); err != nil {
		return TicketRequest{}, err
	}
	if err := req.Validate(); err != nil {
		return TicketRequest{}, err
	}
	return req, nil
}

// DecodeServerRequest reads and checks one JSON server registration.
func DecodeServerRequest(r io.Reader) (ServerRequest, error) {
	var req ServerRequest
	if err := decodeStrict(r, &req); err != nil {
		return ServerRequest{}, err
	}
	if err := req.Validate(); err != nil {
		return ServerRequest{}, err
	}
	return req, nil
}

// decodeStrict decodes one JSON value into dst, refusing what
// encoding/json lets through: invalid UTF-8, which it would replace with
// U+FFFD before any check could see it, and duplicate object keys, of
// which it would keep the last, so that a proxy or log reading the first
// would see another request than the one served.
func decodeStrict(r io.Reader, dst any) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	return decodeStrictBytes(body, dst)
}

func decodeStrictBytes(body []byte, dst any) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: the body is not valid UTF-8", ErrBadRequest)
	}
	if err := checkNoDuplicateKeys(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil && !isSyntaxOrEOF(err) {
			return fmt.Errorf("reading body: %w", err)
		}
		return fmt.Errorf("%w: data after the JSON value", ErrBadRequest)
	}
	return nil
}

// checkNoDuplicateKeys refuses an object that names a key twice. It scans
// the bytes rather than the decoder's tokens, which would cost a create
// twice its decoding; malformed JSON passes here, for the decoder to
// explain.
func checkNoDuplicateKeys(body []byte) error {
	var (
		keys [][]byte // the keys of every open object, innermost last
		open []int    // per open container, where its keys start; -1 for an array
	)
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '{':
			open = append(open, len(keys))
		case '[':
			open = append(open, -1)
		case '}', ']':
			if len(open) == 0 {
				return nil
			}
			if start := open[len(open)-1]; start >= 0 {
				keys = keys[:start]
			}
			open = open[:len(open)-1]
		case '"':
			end, escaped := stringEnd(body, i)
			if end < 0 {
				return nil
			}
			raw := body[i : end+1]
			i = end
			// Only an object's keys are followed by a colon.
			if len(open) == 0 || open[len(open)-1] < 0 || !colonAt(body, end+1) {
				continue
			}
			key := raw[1 : len(raw)-1]
			if escaped {
				var k string
				if json.Unmarshal(raw, &k) != nil {
					return nil
				}
				key = []byte(k)
			}
			for _, seen := range keys[open[len(open)-1]:] {
				if bytes.Equal(seen, key) {
					return fmt.Errorf("%w: key %q appears twice in one object", ErrBadRequest, key)
				}
			}
			keys = append(keys, key)
		}
	}
	return nil
}

// stringEnd returns the index of the quote that closes the JSON string
// opening at body[start], or -1, and whether the string has escapes.
func stringEnd(body []byte, start int) (int, bool) {
	escaped := false
	for i := start + 1; i < len(body); i++ {
		switch body[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i, escaped
		}
	}
	return -1, escaped
}

// colonAt reports whether the first byte at or after i that is not JSON
// whitespace is a colon.
func colonAt(body []byte, i int) bool {
	for ; i < len(body); i++ {
		switch body[i] {
		case ' ', '\t', '\n', '\r':
		case ':':
			return true
		default:
			return false
		}
	}
	return false
}

func isSyntaxOrEOF(err error) bool {
	var syn *json.SyntaxError
	return errors.As(err, &syn) || errors.Is(err, io.ErrUnexpectedEOF)
}

func decodeError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, ErrBadRequest):
		return err
	case errors.As(err, &syn):
		return fmt.Errorf("%w: malformed JSON at byte %d: %v", ErrBadRequest, syn.Offset, syn)
	case errors.As(err, &typ):
		return fmt.Errorf("%w: field %q must be %s, not %s", ErrBadRequest, typ.Field, typ.Type, typ.Value)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: empty body", ErrBadRequest)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: truncated JSON", ErrBadRequest)
	}
	// Unknown fields come as plain errors from encoding/json; anything else
	// is the reader failing, such as *http.MaxBytesError.
	msg := err.Error()
	if len(msg) > 5 && msg[:5] == "json:" {
		return fmt.Errorf("%w: %s", ErrBadRequest, msg[6:])
	}
	return fmt.Errorf("reading body: %w", err)
}

// Validate checks the request's shape and limits.
func (req *TicketRequest) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadRequest}, args...)...)
	}
	if err := checkName("queue", req.Queue, MaxIDLength); err != nil {
		return err
	}
	if len(req.Players) == 0 {
		return bad("players must list at least one player")
	}
	if len(req.Players) > MaxPartySize {
		return bad("a party has at most %d players", MaxPartySize)
	}
	seen := make(map[string]bool, len(req.Players))
	for i, p := range req.Players {
		if err := checkName(fmt.Sprintf("players[%d].id", i), p.ID, MaxIDLength); err != nil {
			return err
		}
		if seen[p.ID] {
			return bad("player %q is listed twice", p.ID)
		}
		seen[p.ID] = true
		if math.IsNaN(p.Skill) || math.Abs(p.Skill) > MaxSkill {
			return bad("players[%d].skill must be between %g and %g", i, -MaxSkill, MaxSkill)
		}
	}
	if len(req.Latencies) > MaxRegions {
		return bad("latencies lists at most %d regions", MaxRegions)
	}
	for region, ms := range req.Latencies {
		if err := checkName("latencies region", region, MaxRegionLength); err != nil {
			return err
		}
		if math.IsNaN(ms) || ms < 0 || ms > MaxLatencyMS {
			return bad("latency to %q must be between 0 and %d ms", region, MaxLatencyMS)
		}
	}
	if len(req.Attributes) > MaxAttributes {
		return bad("attributes holds at most %d entries", MaxAttributes)
	}
	for k, v := range req.Attributes {
		if err := checkName("attribute key", k, MaxAttrKeyLen); err != nil {
			return err
		}
		if len(v) > MaxAttrValueLen || !utf8.ValidString(v) {
			return bad("attribute %q must be valid UTF-8 of at most %d bytes", k, MaxAttrValueLen)
		}
	}
	return nil
}

// Validate checks a server registration.
func (req *ServerRequest) Validate() error {
	if req.Address == "" || len(req.Address) > 256 || !utf8.ValidString(req.Address) {
		return fmt.Errorf("%w: address must be a non-empty string of at most 256 bytes", ErrBadRequest)
	}
	if err := CheckRegion(req.Region); err != nil {
		return err
	}
	if req.Capacity < 1 || req.Capacity > 10_000 {
		return fmt.Errorf("%w: capacity must be between 1 and 10000", ErrBadRequest)
	}
	return nil
}

// CheckID checks an identifier taken from a URL path.
func CheckID(what, id string) error { return checkName(what, id, MaxIDLength) }

// CheckRegion checks a region name as a ticket's latencies or a server's
// registration must spell it.
func CheckRegion(region string) error { return checkName("region", region, MaxRegionLength) }

// checkName accepts printable ASCII without spaces or slashes, so that names
// are safe in URLs, log lines, Redis keys and queue names alike.
func checkName(what, s string, max int) error {
	if s == "" {
		return fmt.Errorf("%w: %s is required", ErrBadRequest, what)
	}
	if len(s) > max {
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrBadRequest, what, max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == '{' || c == '}' || c == '"' || c == '\\' {
			return fmt.Errorf("%w: %s may hold only printable ASCII without spaces, slashes, quotes or braces", ErrBadRequest, what)
		}
	}
	return nil
}

// ErrUnsupportedMediaType: a request body declared as something other than
// JSON.
var ErrUnsupportedMediaType = errors.New("unsupported media type")

// CheckJSONContentType accepts a request body declared as JSON
// (application/json or a +json type) or not declared at all, and refuses
// any other declared type, such as the form encoding curl's -d sends.
func CheckJSONContentType(contentType string) error {
	if contentType == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("%w: Content-Type %q: %v", ErrUnsupportedMediaType, contentType, err)
	}
	if mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return fmt.Errorf("%w: the body must be application/json, not %s", ErrUnsupportedMediaType, mt)
}

// DecodeAcceptRequest reads one answer to a match's acceptance:
// {"accept": true} or {"accept": false}.
func DecodeAcceptRequest(r io.Reader) (bool, error) {
	var req AcceptRequest
	if err := decodeStrict(r, &req); err != nil {
		return false, err
	}
	if req.Accept == nil {
		return false, fmt.Errorf("%w: accept is required, true or false", ErrBadRequest)
	}
	return *req.Accept, nil
}

// MaxTeams bounds the teams of a backfill request.
const MaxTeams = 64

// DecodeBackfillRequest reads and checks what can be checked of a
// backfill request without the match: one count per team, none negative
// or above MaxPartySize.
func DecodeBackfillRequest(r io.Reader) (BackfillRequest, error) {
	var req BackfillRequest
	if err := decodeStrict(r, &req); err != nil {
		return BackfillRequest{}, err
	}
	switch {
	case len(req.Open) == 0 || len(req.Open) > MaxTeams:
		return BackfillRequest{}, fmt.Errorf("%w: open must list 1 to %d teams' open seats", ErrBadRequest, MaxTeams)
	case slices.ContainsFunc(req.Open, func(n int) bool { return n < 0 || n > MaxPartySize }):
		return BackfillRequest{}, fmt.Errorf("%w: a team's open seats must be 0 to %d", ErrBadRequest, MaxPartySize)
	}
	return req, nil
}

package contracts

import (
	"encoding/json"
	"testing"
)

// FuzzPlayerAsWritten checks the reflection-free path for players against
// the decoders it stands in for: whatever it accepts, they accept with the
// same result.
func FuzzPlayerAsWritten(f *testing.F) {
	for _, s := range []string{
		`{"id":"p-1","skill":1520}`, `{"id":"p-1","skill":-0.5e+3}`, `{"id":"","skill":0}`,
		`{"id":"é","skill":1E9}`, `{"id":"p","skill":01}`, `{"id":"p","skill":1.}`, `{"id":"p","skill":1e999}`,
		`{"id":"a\"b","skill":1}`, `{"id":"p","skill":1,"x":2}`, `{ "id":"p","skill":1}`, `{"id":"p","skill":0x10}`,
		`{"id":"p","skill":Infinity}`, `{"id":"p","skill":-}`, "{\"id\":\"\xff\",\"skill\":1}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodePlayerAsWritten(b)
		if !ok {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		var slow Player
		if err := slow.unmarshalStrict(b); err != nil {
			t.Fatalf("accepted %q, which the strict decoder refuses: %v", b, err)
		}
		if fast != slow {
			t.Fatalf("%q: fast %+v, strict %+v", b, fast, slow)
		}
	})
}

func TestPlayerAsWritten(t *testing.T) {
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{`{"id":"p-1","skill":1520}`, true},
		{`{"id":"p-1","skill":-12.5e-3}`, true},
		{`{"id":"p","skill":01}`, false},
		{`{"id":"p","skill":1.}`, false},
		{`{"id":"a\"b","skill":1}`, false},
		{`{"id":"p","skill":1,"x":2}`, false},
		{`{"skill":1,"id":"p"}`, false},
		{`{"id":"p","skill":1e999}`, false},
		{"{\"id\":\"\xff\",\"skill\":1}", false},
	} {
		if _, ok := decodePlayerAsWritten([]byte(tt.in)); ok != tt.ok {
			t.Errorf("decodePlayerAsWritten(%q) ok = %v, want %v", tt.in, ok, tt.ok)
		}
	}
}

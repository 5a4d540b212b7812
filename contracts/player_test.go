package contracts

import (
	"errors"
	"testing"
)

// FuzzPlayerFastPath checks that the quick way of decoding a player accepts
// and rejects exactly what the strict decoder does, with the same result.
func FuzzPlayerFastPath(f *testing.F) {
	for _, s := range []string{
		`{"id":"p-1","skill":1520}`,
		`{"skill":3.5,"id":"a\"b"}`,
		`{"ID":"p","SKILL":1}`,
		`{"id":"p","skill":1,"extra":2}`,
		`{"id":"p","id":"q","skill":1}`,
		`{"id":"p","skill":null}`,
		`{"id":null,"skill":1}`,
		`{"id":"p:{}","skill":1}`,
		`{"id":"p","skill":1e400}`,
		`[1,2]`, `null`, `{}`, `{"id":"p"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, strict Player
		errFast := fast.UnmarshalJSON(b)
		errStrict := strict.unmarshalStrict(b)
		if (errFast == nil) != (errStrict == nil) {
			t.Fatalf("%q: fast path says %v, strict decoder %v", b, errFast, errStrict)
		}
		if errFast != nil {
			if !errors.Is(errFast, ErrBadRequest) {
				t.Fatalf("%q: rejection %v does not wrap ErrBadRequest", b, errFast)
			}
			return
		}
		if fast != strict {
			t.Fatalf("%q: fast path gives %+v, strict decoder %+v", b, fast, strict)
		}
	})
}

func TestObjectKeys(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{`{}`, 0},
		{`{"a":1}`, 1},
		{`{"a":{"b":1,"c":2},"d":[{"e":3}]}`, 2},
		{`{"a:b":"c:d","e\":":1}`, 2},
		{`{"a":"\\","b":1}`, 2},
	}
	for _, tt := range tests {
		if got := objectKeys([]byte(tt.in)); got != tt.want {
			t.Errorf("objectKeys(%s) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestStatusReached(t *testing.T) {
	tests := []struct {
		status, stage Status
		want          bool
	}{
		{StatusSearching, StatusMatched, false},
		{StatusMatched, StatusMatched, true},
		{StatusMatched, StatusAssigned, false},
		{StatusAssigned, StatusMatched, true},
		{StatusAssigned, StatusAssigned, true},
		{StatusCancelled, StatusAssigned, true},
		{StatusExpired, StatusMatched, true},
		{StatusFailed, StatusAssigned, true},
		{StatusSearching, StatusSearching, true},
	}
	for _, tt := range tests {
		if got := tt.status.Reached(tt.stage); got != tt.want {
			t.Errorf("%s.Reached(%s) = %v, want %v", tt.status, tt.stage, got, tt.want)
		}
	}
}

package apiclient

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/internal/apiclient/apiclienttest"
)

func TestEventReader(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  []Event
		final error
	}{
		{"the suite's events", "id: 1\nevent: ticket\ndata: {\"a\":1}\n\n: ping\n\nid: 2\nevent: ticket\ndata: {}\n\n",
			[]Event{{ID: 1, HasID: true, Type: "ticket", Data: []byte(`{"a":1}`)}, {ID: 2, HasID: true, Type: "ticket", Data: []byte(`{}`)}}, io.EOF},
		{"CRLF and no space", "id:3\r\nevent:x\r\ndata:y\r\n\r\n", []Event{{ID: 3, HasID: true, Type: "x", Data: []byte("y")}}, io.EOF},
		{"data lines join", "data: a\ndata: b\n\n", []Event{{Type: "message", Data: []byte("a\nb")}}, io.EOF},
		{"blank lines and comments alone", "\n\n: hi\n\n", nil, io.EOF},
		{"an event cut short is dropped", "id: 1\ndata: x\n\nid: 2\ndata: {\"cut", []Event{{ID: 1, HasID: true, Type: "message", Data: []byte("x")}}, io.ErrUnexpectedEOF},
		{"an id that is no number", "id: x\ndata: y\n\n", []Event{{Type: "message", Data: []byte("y")}}, io.EOF},
		{"unknown fields", "retry: 10\nfoo: bar\ndata: z\n\n", []Event{{Type: "message", Data: []byte("z")}}, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			er := &eventReader{r: bufio.NewReaderSize(strings.NewReader(tt.in), 16)}
			var got []Event
			for {
				ev, err := er.next()
				if err != nil {
					if !errors.Is(err, tt.final) {
						t.Errorf("ended with %v, want %v", err, tt.final)
					}
					break
				}
				ev.Data = append([]byte(nil), ev.Data...)
				got = append(got, ev)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// streamFront serves a scripted event stream: the events with ids above
// the request's cursor, then, if drop, it cuts the connection; or it
// stays silent.
type streamFront struct {
	events []int64
	drop   bool
	silent bool

	mu       sync.Mutex
	requests []http.Header
	queries  []string
}

func (f *streamFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Header.Clone())
	f.queries = append(f.queries, r.URL.RawQuery)
	f.mu.Unlock()
	var after int64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		fmt.Sscan(v, &after)
	} else {
		fmt.Sscan(r.URL.Query().Get("after"), &after)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	if f.silent {
		<-r.Context().Done()
		return
	}
	for _, id := range f.events {
		// A front that replays what the client has is what the client
		// must cope with; the suite does not, but a proxy might.
		fmt.Fprintf(w, "id: %d\nevent: x\ndata: {\"v\":%d}\n\n: ping\n\n", id, id)
	}
	rc.Flush()
	if f.drop {
		apiclienttest.DropConn(w)
		return
	}
	<-r.Context().Done()
}

func (f *streamFront) seen() ([]http.Header, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]http.Header(nil), f.requests...), append([]string(nil), f.queries...)
}

// TestWatchResumes: a stream that drops is resumed on the next base with
// Last-Event-ID, and no version is handed on twice, though the second
// base sends them again.
func TestWatchResumes(t *testing.T) {
	a := &streamFront{events: []int64{4, 5}, drop: true}
	b := &streamFront{events: []int64{4, 5, 6, 7}}
	sa, sb := httptest.NewServer(a), httptest.NewServer(b)
	defer sa.Close()
	defer sb.Close()
	c := newTestClient(t, &apiclienttest.Clock{}, 0, sa.URL, sb.URL)
	var got []int64
	err := c.Watch(t.Context(), Watch{Path: "/s", After: 3, Handle: func(ev Event) error {
		got = append(got, ev.ID)
		if ev.ID == 7 {
			return ErrStop
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{4, 5, 6, 7}; !reflect.DeepEqual(got, want) {
		t.Errorf("handed on %v, want %v", got, want)
	}
	ha, qa := a.seen()
	hb, qb := b.seen()
	if len(ha) != 1 || qa[0] != "after=3" || ha[0].Get("Last-Event-ID") != "" {
		t.Errorf("first base: %d requests, queries %q", len(ha), qa)
	}
	if len(hb) != 1 || hb[0].Get("Last-Event-ID") != "5" || qb[0] != "" || hb[0].Get("Accept") != "text/event-stream" {
		t.Errorf("second base: queries %q, headers %v; want Last-Event-ID 5 and no after", qb, hb)
	}
}

// TestWatchIdle: a stream silent past its idle timeout is taken for lost
// and resumed elsewhere.
func TestWatchIdle(t *testing.T) {
	a := &streamFront{silent: true}
	b := &streamFront{events: []int64{1}}
	sa, sb := httptest.NewServer(a), httptest.NewServer(b)
	defer sa.Close()
	defer sb.Close()
	c := newTestClient(t, &apiclienttest.Clock{}, 0, sa.URL, sb.URL)
	var lost []error
	c.onError = func(err error) { lost = append(lost, err) }
	start := time.Now()
	err := c.Watch(t.Context(), Watch{Path: "/s", IdleTimeout: 100 * time.Millisecond, Handle: func(Event) error { return ErrStop }})
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != 1 || !errors.Is(lost[0], errIdle) {
		t.Errorf("reported %v; want one idle stream", lost)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestWatchRefused: a suite without streams answers 404 or 405, or
// something that is not a stream: the caller falls back, unreported.
func TestWatchRefused(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }},
		{"405", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusMethodNotAllowed) }},
		{"not a stream", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			c := newTestClient(t, &apiclienttest.Clock{}, 0, srv.URL)
			reported := 0
			c.onError = func(error) { reported++ }
			err := c.Watch(t.Context(), Watch{Path: "/s", Handle: func(Event) error { return nil }})
			if !Refused(err) || reported != 0 {
				t.Errorf("Watch = %v, reported %d; want refused, unreported", err, reported)
			}
		})
	}
}

// TestWatchGivesUp: failures in a row with nothing coming through end the
// watch after the policy's tries.
func TestWatchGivesUp(t *testing.T) {
	s := &script{answers: []answer{{status: 503, retryAfter: 1}}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	clock := &apiclienttest.Clock{}
	c := newTestClient(t, clock, 4, srv.URL)
	err := c.Watch(t.Context(), Watch{Path: "/s", Handle: func(Event) error { return nil }})
	if !errors.Is(err, ErrUnavailable) || len(s.requests()) != 4 || len(clock.Waits()) != 3 {
		t.Errorf("Watch = %v after %d requests and waits %v; want unavailable after 4", err, len(s.requests()), clock.Waits())
	}
	for _, w := range clock.Waits() {
		if w < time.Second {
			t.Errorf("waited %v, less than the Retry-After", w)
		}
	}
}

func TestWatchHandlerError(t *testing.T) {
	srv := httptest.NewServer(&streamFront{events: []int64{1}})
	defer srv.Close()
	c := newTestClient(t, &apiclienttest.Clock{}, 0, srv.URL)
	boom := &Error{Status: 418} // an *Error of the handler's own is still the handler's
	if err := c.Watch(t.Context(), Watch{Path: "/s", Handle: func(Event) error { return boom }}); err != boom {
		t.Errorf("Watch = %v; want the handler's error", err)
	}
}

package longpoll

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// streamEnv serves Stream of one record whose documents carry a padding of
// pad bytes, and a stop channel for shutdown.
type streamEnv struct {
	poller *Poller
	feed   *feed
	rec    *padded
	srv    *httptest.Server
	stop   chan struct{}
}

// padded is a record whose status and size a test sets.
type padded struct {
	mu      sync.Mutex
	version int64
	status  contracts.Status
	pad     string
}

type paddedDoc struct {
	Version int64            `json:"version"`
	Status  contracts.Status `json:"status"`
	Pad     string           `json:"pad,omitempty"`
}

func (p *padded) read(context.Context) (any, int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return paddedDoc{Version: p.version, Status: p.status, Pad: p.pad}, p.version, nil
}

func (p *padded) bump(t *testing.T, f *feed, st contracts.Status) {
	t.Helper()
	p.mu.Lock()
	p.version++
	p.status = st
	v := p.version
	p.mu.Unlock()
	f.send(t, store.Change{Kind: store.ChangeTicket, ID: "r-1", Version: v})
}

func newStreamEnv(t *testing.T, pad int) *streamEnv {
	t.Helper()
	// Random, so that no compression shrinks it.
	raw := make([]byte, pad*3/4)
	rand.Read(raw)
	e := &streamEnv{feed: newFeed(), rec: &padded{version: 1, status: contracts.StatusSearching, pad: base64.StdEncoding.EncodeToString(raw)},
		stop: make(chan struct{})}
	hub := NewHub(nil)
	runHub(t, hub, e.feed)
	e.poller = &Poller{Hub: hub, MaxWait: 5 * time.Second, Stopping: e.stop, Heartbeat: 50 * time.Millisecond}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.poller.Stream(w, r, store.ChangeTicket, "r-1", Source{Read: e.rec.read}, StreamSpec{
			Event: "ticket",
			Final: func(v any) bool { return v.(paddedDoc).Status.Terminal() },
		})
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// sseEvent is one event of a stream, or a heartbeat comment.
type sseEvent struct {
	id, event string
	data      paddedDoc
	comment   bool
}

// readSSE reads events from r onto out until the stream ends.
func readSSE(t *testing.T, resp *http.Response, out chan<- sseEvent) {
	defer close(out)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.event != "" || ev.comment {
				out <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			ev.comment = true
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(line[6:]), &ev.data); err != nil {
				t.Errorf("data %q: %v", line, err)
			}
		}
	}
}

func (e *streamEnv) openSSE(t *testing.T, header http.Header, query string) (*http.Response, <-chan sseEvent) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+"/?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	events := make(chan sseEvent, 64)
	if resp.StatusCode == http.StatusOK {
		go readSSE(t, resp, events)
	} else {
		close(events)
	}
	return resp, events
}

// next is the next event that is not a heartbeat.
func next(t *testing.T, events <-chan sseEvent) (sseEvent, bool) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return ev, false
			}
			if ev.comment {
				continue
			}
			return ev, true
		case <-timeout:
			t.Fatal("no event within 5 s")
		}
	}
}

// TestStreamSSE: each version is one event (id the version), the stream
// starts after Last-Event-ID or ?after, heartbeats while idle, and ends
// after the final version.
func TestStreamSSE(t *testing.T) {
	e := newStreamEnv(t, 0)
	resp, events := e.openSSE(t, nil, "")
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	ev, _ := next(t, events)
	if ev.id != "1" || ev.event != "ticket" || ev.data.Version != 1 {
		t.Fatalf("first event %+v, want the record at version 1", ev)
	}
	// A heartbeat comes while nothing changes.
	select {
	case hb := <-events:
		if !hb.comment {
			t.Fatalf("got %+v while idle, want a heartbeat", hb)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat while idle")
	}
	for _, st := range []contracts.Status{contracts.StatusMatched, contracts.StatusAssigned} {
		e.rec.bump(t, e.feed, st)
		ev, ok := next(t, events)
		if want := e.rec.version; !ok || ev.id != strconv.FormatInt(want, 10) || ev.data.Version != want || ev.data.Status != st {
			t.Fatalf("event %+v (open %v), want version %d %s", ev, ok, want, st)
		}
	}
	if ev, ok := next(t, events); ok {
		t.Fatalf("event %+v after the final version; the stream should have ended", ev)
	}

	// Resumed: only what is newer than Last-Event-ID, or ?after.
	for _, c := range []struct {
		name   string
		header http.Header
		query  string
	}{
		{"Last-Event-ID", http.Header{"Last-Event-Id": {"2"}}, ""},
		{"after", nil, "after=2"},
	} {
		_, events := e.openSSE(t, c.header, c.query)
		ev, ok := next(t, events)
		if !ok || ev.data.Version != 3 {
			t.Errorf("%s 2: first event %+v, want version 3", c.name, ev)
		}
		if ev, ok := next(t, events); ok {
			t.Errorf("%s 2: event %+v after the final one", c.name, ev)
		}
	}
	for _, bad := range []string{"after=-1", "after=x"} {
		resp, _ := e.openSSE(t, nil, bad)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != contracts.ProblemContentType {
			t.Errorf("%s: %d %s, want 400 problem", bad, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// TestStreamShutdown: at shutdown a stream ends, so that its client
// resumes on another front.
func TestStreamShutdown(t *testing.T) {
	e := newStreamEnv(t, 0)
	_, events := e.openSSE(t, nil, "")
	next(t, events)
	close(e.stop)
	if ev, ok := next(t, events); ok {
		t.Fatalf("event %+v after shutdown", ev)
	}
}

func dial(t *testing.T, e *streamEnv) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 22)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// TestStreamWebSocket: one JSON text message per version, a normal close
// after the final one.
func TestStreamWebSocket(t *testing.T) {
	e := newStreamEnv(t, 0)
	c := dial(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	read := func() (paddedDoc, error) {
		typ, b, err := c.Read(ctx)
		if err != nil {
			return paddedDoc{}, err
		}
		if typ != websocket.MessageText {
			t.Fatalf("message of type %v", typ)
		}
		var d paddedDoc
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		return d, nil
	}
	if d, err := read(); err != nil || d.Version != 1 {
		t.Fatalf("first message %+v, %v", d, err)
	}
	for want, st := range []contracts.Status{contracts.StatusMatched, contracts.StatusCancelled} {
		e.rec.bump(t, e.feed, st)
		if d, err := read(); err != nil || d.Version != int64(want)+2 {
			t.Fatalf("message %+v, %v; want version %d", d, err, want+2)
		}
	}
	if _, err := read(); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("after the final version: %v, want a normal closure", err)
	}
}

// TestStreamSlowWebSocket: a client that never reads is dropped with
// StatusSlowConsumer, while a client reading at once gets every version.
func TestStreamSlowWebSocket(t *testing.T) {
	// Big documents fill the connection's buffers in a few dozen
	// versions, after which the slow client's queue fills.
	e := newStreamEnv(t, 512<<10)
	slow, fast := dial(t, e), dial(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const versions = 120
	got := make(chan int64, versions+1)
	fastErr := make(chan error, 1)
	go func() {
		for {
			_, b, err := fast.Read(ctx)
			if err != nil {
				fastErr <- err
				return
			}
			var d paddedDoc
			if err := json.Unmarshal(b, &d); err != nil {
				fastErr <- err
				return
			}
			got <- d.Version
		}
	}()
	if v := <-got; v != 1 {
		t.Fatalf("fast client's first version %d", v)
	}
	for i := 2; i <= versions; i++ {
		st := contracts.StatusSearching
		if i == versions {
			st = contracts.StatusCancelled
		}
		e.rec.bump(t, e.feed, st)
		// Each in turn: the test is of the slow client, not of merging.
		select {
		case v := <-got:
			if v != int64(i) {
				t.Fatalf("fast client got version %d, want %d", v, i)
			}
		case err := <-fastErr:
			t.Fatalf("fast client after version %d: %v", i-1, err)
		case <-ctx.Done():
			t.Fatalf("fast client did not get version %d", i)
		}
	}
	if err := <-fastErr; websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("fast client ended with %v, want a normal closure", err)
	}
	// The slow client now reads: what was sent, then the close.
	n := 0
	for {
		_, _, err := slow.Read(ctx)
		if err == nil {
			n++
			continue
		}
		t.Logf("slow client read %d messages", n)
		if code := websocket.CloseStatus(err); code != StatusSlowConsumer {
			var ce websocket.CloseError
			t.Fatalf("slow client ended with %v (close status %v, %v), want %d", err, code, errors.As(err, &ce), StatusSlowConsumer)
		}
		break
	}
}

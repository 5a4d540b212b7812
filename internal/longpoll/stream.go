package longpoll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Stream defaults.
const (
	// DefaultHeartbeat is how often an idle stream shows it is alive: an
	// SSE comment or a WebSocket ping, well inside the 15 s the API
	// promises and the idle timeouts of common proxies.
	DefaultHeartbeat = 10 * time.Second
	// streamWriteTimeout bounds one write to a stream's client: a client
	// that takes longer is dropped rather than held on to.
	streamWriteTimeout = 10 * time.Second
	// sendBuffer is how many versions a WebSocket may have waiting for its
	// client; past it the client is too slow and is dropped.
	sendBuffer = 16
	// watchBuffer is how many changes a stream may have waiting: more than
	// a poll's one, so that versions in quick succession each get their
	// event.
	watchBuffer = 8
)

// StatusSlowConsumer is the close code of a WebSocket dropped because it
// did not read its events as fast as they came (RFC 6455 leaves 4000–4999
// to applications).
const StatusSlowConsumer websocket.StatusCode = 4008

// StreamSpec says what a stream sends.
type StreamSpec struct {
	// Event names the SSE events: "ticket" or "allocations".
	Event string
	// Final, if set, reports whether a record is the last: the stream
	// ends once it has sent it.
	Final func(v any) bool
}

// Stream serves the versions of a record as they come: as Server-Sent
// Events (one event per version: id the version, data the record's JSON),
// or, when the request asks to upgrade, over a WebSocket (one JSON text
// message per version). It starts after the version in Last-Event-ID or
// ?after (0 when neither: the record as it is comes first), sends a
// heartbeat when idle, and ends after a Final record, at shutdown (the
// client resumes on another front from the last id it got), or when the
// client leaves. Errors before the first event are problem details.
func (p *Poller) Stream(w http.ResponseWriter, r *http.Request, kind store.ChangeKind, id string, src Source, spec StreamSpec) {
	after, err := streamAfter(r)
	if err != nil {
		httpapi.WriteProblem(w, r, p.Log, err)
		return
	}
	ctx := r.Context()
	changed, unwatch := p.Hub.WatchBuffered(kind, id, watchBuffer)
	defer unwatch()
	read := src.hold()
	v, version, err := read(ctx)
	if err != nil {
		httpapi.WriteProblem(w, r, p.Log, err)
		return
	}
	var out sink
	if isUpgrade(r) {
		ws, err := openWebSocket(w, r, p)
		if err != nil {
			return // Accept has answered the client
		}
		out = ws
	} else {
		out = openSSE(w, p)
	}
	defer out.close()
	ctx = out.context(ctx)
	if p.Gauge != nil {
		g := p.Gauge.WithLabelValues(kindLabel(kind) + "_stream")
		g.Inc()
		defer g.Dec()
	}
	beat := time.NewTicker(p.heartbeat())
	defer beat.Stop()
	for {
		if version > after {
			if err := out.send(ctx, spec.Event, version, v); err != nil {
				p.debug("stream: dropping a client", "id", id, "err", err)
				return
			}
			after = version
			if spec.Final != nil && spec.Final(v) {
				out.finish()
				return
			}
		}
		select {
		case c := <-changed:
			if stale(c, version) {
				continue
			}
			nv, nversion, ok := p.carried(src, c)
			if !ok {
				if nv, nversion, err = read(ctx); err != nil {
					p.debug("stream: reading the record", "id", id, "err", err)
					return
				}
			}
			if nversion > version {
				v, version = nv, nversion
			}
		case <-beat.C:
			if err := out.heartbeat(ctx); err != nil {
				p.debug("stream: heartbeat failed", "id", id, "err", err)
				return
			}
		case <-p.Stopping:
			out.goingAway()
			return
		case <-ctx.Done():
			return
		}
	}
}

func (p *Poller) debug(msg string, args ...any) {
	if p.Log != nil {
		p.Log.Debug(msg, args...)
	}
}

// streamAfter is the version a stream starts after: Last-Event-ID, which a
// reconnecting EventSource sends, or else ?after.
func streamAfter(r *http.Request) (int64, error) {
	raw, what := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if raw == "" {
		raw, what = r.URL.Query().Get("after"), "after"
	}
	if raw == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%w: %s must be a version, a whole number of 0 or more, not %q", contracts.ErrBadRequest, what, raw)
	}
	return v, nil
}

// isUpgrade reports whether r asks for a WebSocket.
func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// sink is where a stream's events go.
type sink interface {
	// context is the stream's context: it ends when the client leaves.
	context(ctx context.Context) context.Context
	send(ctx context.Context, event string, version int64, v any) error
	heartbeat(ctx context.Context) error
	// finish ends the stream after its final record; goingAway at
	// shutdown; close releases what is left in any case.
	finish()
	goingAway()
	close()
}

// sse writes Server-Sent Events.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func openSSE(w http.ResponseWriter, p *Poller) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	// nginx and others buffer answers unless told not to.
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: http.NewResponseController(w)}
	if err := errors.Join(s.deadline(), s.flush()); err != nil {
		p.debug("stream: starting", "err", err)
	}
	return s
}

func (s *sse) context(ctx context.Context) context.Context { return ctx }

// flush sends what was written.
func (s *sse) flush() error { return s.rc.Flush() }

// deadline gives the next write and flush a deadline of their own: the
// server's write timeout is sized for quick answers, not for streams.
func (s *sse) deadline() error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

func (s *sse) send(_ context.Context, event string, version int64, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// encoding/json escapes newlines in strings, so data is one line,
	// as an SSE data field must be.
	if err := s.deadline(); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.w, "id: %d\nevent: %s\ndata: %s\n\n", version, event, data); err != nil {
		return err
	}
	return s.flush()
}

func (s *sse) heartbeat(context.Context) error {
	if err := s.deadline(); err != nil {
		return err
	}
	if _, err := s.w.Write([]byte(": ping\n\n")); err != nil {
		return err
	}
	return s.flush()
}

func (s *sse) finish()    {}
func (s *sse) goingAway() {}
func (s *sse) close()     {}

// wsSink sends over a WebSocket. Versions wait in a bounded buffer for a
// writer of their own, so that a client that does not read is noticed
// (the buffer fills once the connection's own buffers have) and dropped,
// and never holds up the stream's loop or the hub.
type wsSink struct {
	conn *websocket.Conn
	// beat is how often the writer pings the client: the writer's job, so
	// that a client slow to answer holds up its writer, whose queue then
	// fills, and not the stream.
	beat   time.Duration
	queue  chan []byte
	closed bool // queue
	done   chan struct{}
	err    error // the writer's, once done is closed
	cancel context.CancelFunc
}

func openWebSocket(w http.ResponseWriter, r *http.Request, p *Poller) (*wsSink, error) {
	// The server's deadlines, meant for quick answers, would stay on the
	// connection once it is taken over; the stream sets its own.
	rc := http.NewResponseController(w)
	for _, clear := range []func(time.Time) error{rc.SetReadDeadline, rc.SetWriteDeadline} {
		if err := clear(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return nil, err
		}
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		p.debug("stream: websocket upgrade refused", "err", err)
		return nil, err
	}
	return &wsSink{conn: conn, beat: p.heartbeat(), queue: make(chan []byte, sendBuffer), done: make(chan struct{})}, nil
}

// context ends when the client closes its side; reading is what answers
// its pings and sees its close. It starts the writer, which close waits
// for.
func (s *wsSink) context(ctx context.Context) context.Context {
	ctx, s.cancel = context.WithCancel(s.conn.CloseRead(ctx))
	go s.write(ctx)
	return ctx
}

// write sends the queued versions, and pings when idle, until the queue is
// closed or a write fails.
func (s *wsSink) write(ctx context.Context) {
	defer close(s.done)
	ping := time.NewTicker(s.beat)
	defer ping.Stop()
	for {
		var err error
		select {
		case msg, ok := <-s.queue:
			if !ok {
				return
			}
			wctx, cancel := context.WithTimeout(ctx, streamWriteTimeout)
			err = s.conn.Write(wctx, websocket.MessageText, msg)
			cancel()
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, streamWriteTimeout)
			err = s.conn.Ping(pctx)
			cancel()
		}
		if err != nil {
			s.err = err
			return
		}
	}
}

func (s *wsSink) send(_ context.Context, _ string, _ int64, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	select {
	case <-s.done:
		return fmt.Errorf("writing to the websocket: %w", s.err)
	default:
	}
	select {
	case s.queue <- data:
		return nil
	default:
		s.conn.Close(StatusSlowConsumer, "slow consumer: the send buffer is full")
		return errors.New("the client does not read its events: dropped")
	}
}

// heartbeat reports how the writer does; the writer pings.
func (s *wsSink) heartbeat(context.Context) error {
	select {
	case <-s.done:
		return fmt.Errorf("writing to the websocket: %w", s.err)
	default:
		return nil
	}
}

func (s *wsSink) closeQueue() {
	if !s.closed {
		s.closed = true
		close(s.queue)
	}
}

// finish lets the writer send what is queued, then closes normally.
func (s *wsSink) finish() {
	s.closeQueue()
	<-s.done
	if s.err == nil {
		s.conn.Close(websocket.StatusNormalClosure, "final version sent")
	}
}

func (s *wsSink) goingAway() {
	s.conn.Close(websocket.StatusGoingAway, "server shutting down: resume on another front")
}

func (s *wsSink) close() {
	s.closeQueue()
	if s.cancel != nil {
		s.cancel()
	}
	s.conn.CloseNow()
	if s.cancel != nil {
		<-s.done // the writer was started
	}
}

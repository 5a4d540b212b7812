package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// DefaultIdleTimeout is how long a stream may stay silent before the
// client takes it for lost: three of the suite's pings, which come at
// least every 15 s.
const DefaultIdleTimeout = 45 * time.Second

// maxEventLine bounds one line of a stream: an event's data is one line.
const maxEventLine = maxAnswer

// Event is one Server-Sent Event.
type Event struct {
	// ID is the event's id, the version of the record it carries; 0 when
	// the event had none.
	ID    int64
	Type  string
	Data  []byte
	HasID bool
}

// eventReader reads the events of a text/event-stream (the WHATWG HTML
// standard's format: lines of field: value, an event per blank line,
// comments starting with a colon).
type eventReader struct {
	r *bufio.Reader
	// seen is called whenever a line arrives, comments included: what
	// shows the stream is alive.
	seen func()
}

// next returns the next event, or the error that ended the stream (io.EOF
// when it ended cleanly; an event cut short by the end is dropped).
func (er *eventReader) next() (Event, error) {
	var (
		ev      Event
		data    bytes.Buffer
		hasData bool
	)
	for {
		line, err := er.line()
		if err != nil {
			return Event{}, err
		}
		if er.seen != nil {
			er.seen()
		}
		if len(line) == 0 {
			if !hasData {
				ev = Event{ID: ev.ID, HasID: ev.HasID} // nothing to dispatch
				continue
			}
			ev.Data = data.Bytes()
			if ev.Type == "" {
				ev.Type = "message"
			}
			return ev, nil
		}
		if line[0] == ':' {
			continue // a comment: the suite's ping
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			ev.Type = string(value)
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.Write(value)
			hasData = true
		case "id":
			if v, err := strconv.ParseInt(string(value), 10, 64); err == nil {
				ev.ID, ev.HasID = v, true
			}
		}
		// retry and unknown fields are ignored: the client's policy says
		// when to reconnect.
	}
}

// line reads one line without its end (\n or \r\n), at most maxEventLine
// bytes.
func (er *eventReader) line() ([]byte, error) {
	var long []byte
	for {
		frag, err := er.r.ReadSlice('\n')
		switch {
		case err == nil:
			if long != nil {
				frag = append(long, frag...)
			}
			frag = bytes.TrimSuffix(frag[:len(frag)-1], []byte("\r"))
			return frag, nil
		case errors.Is(err, bufio.ErrBufferFull):
			if len(long)+len(frag) > maxEventLine {
				return nil, fmt.Errorf("a stream line longer than %d bytes", maxEventLine)
			}
			long = append(long, frag...)
		case errors.Is(err, io.EOF) && (len(frag) > 0 || long != nil):
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// ErrStop, returned by a watch's handler, ends the watch without an error.
var ErrStop = errors.New("stop the watch")

// Watch is a stream of a record's versions to follow.
type Watch struct {
	// Path is the stream's path, without query.
	Path string
	// After is the version the caller has seen: only later ones come.
	After int64
	// IdleTimeout is how long the stream may stay silent before it is
	// taken for lost; DefaultIdleTimeout if zero.
	IdleTimeout time.Duration
	// Handle is called with each event whose id is past the last seen,
	// in order; returning ErrStop ends the watch with nil, any other error
	// ends it with that error.
	Handle func(Event) error
}

// Refused reports whether err is a stream the suite does not serve: a
// suite older than streams answers 404 or 405, and the caller should fall
// back to long-polls. (A record the caller may not see answers 404 too;
// the long-poll then answers it the same.)
func Refused(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Status == http.StatusNotFound || e.Status == http.StatusMethodNotAllowed ||
		errors.Is(e.Err, errNotStream))
}

// errNotStream marks a 200 that is not an event stream.
var errNotStream = errors.New("the answer is not a text/event-stream")

// Watch follows w's stream: it sends the first request with ?after, and
// after the connection is lost (an error, the server closing it, or
// IdleTimeout of silence) it connects again, to the next base URL, with
// Last-Event-ID set to the last id it handed on, so that no version is
// handed on twice. Failures to connect are retried under the retry policy,
// which bounds the failures in a row; a connection that brought anything
// resets the count. It returns nil once Handle returns ErrStop, Handle's
// error, ctx's error wrapped in an *Error, or the *Error of the last
// failure (see Refused for one that says streams are not served).
func (c *Client) Watch(ctx context.Context, w Watch) error {
	last, resumed := w.After, false
	idle := w.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	for n := 1; ; n++ {
		front, i := c.base()
		header := http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}}
		path := w.Path + "?after=" + strconv.FormatInt(last, 10)
		if resumed {
			// As an EventSource resumes: the suite takes Last-Event-ID
			// over ?after.
			path = w.Path
			header.Set("Last-Event-ID", strconv.FormatInt(last, 10))
		}
		alive, err := c.follow(ctx, front, path, header, idle, &last, w.Handle)
		var he handlerError
		if errors.As(err, &he) {
			if errors.Is(he.err, ErrStop) {
				return nil
			}
			return he.err
		}
		e := err.(*Error)
		if ctx.Err() != nil {
			if e.Status == 0 {
				e.Err = fmt.Errorf("%w: %w", errCallerDone, ctx.Err())
			}
			return e
		}
		if Refused(e) {
			return e // not a failure: the caller falls back to long-polls
		}
		c.report(ctx, e)
		if alive {
			n = 1 // the connection was up: count the failures afresh
		}
		if movesOn(e) {
			c.moveOn(i)
		}
		if !Retryable(e) {
			return e
		}
		resumed = true
		ok, serr := c.retry.Wait(ctx, n, e.RetryAfter)
		if serr != nil {
			return &Error{Method: http.MethodGet, Path: w.Path, Front: front, Err: fmt.Errorf("%w: %w (the stream: %w)", errCallerDone, serr, e)}
		}
		if !ok {
			return e
		}
	}
}

// handlerError carries an error of a watch's Handle, which ends the watch
// as it is.
type handlerError struct{ err error }

func (h handlerError) Error() string { return h.err.Error() }

// Causes of a stream cut by the client.
var (
	errConnectTimeout = errors.New("no answer within the request timeout")
	errIdle           = errors.New("the stream was silent past its idle timeout")
)

// follow connects to the stream once and hands its events on until it
// ends. alive reports whether anything came over the connection. Any end
// of the stream is an *Error (of Status 0 once the stream had started),
// unless Handle ended it, which is a handlerError.
func (c *Client) follow(ctx context.Context, front, path string, header http.Header, idle time.Duration, last *int64, handle func(Event) error) (alive bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// One timer guards the connection: first the wait for the answer's
	// header, then the silences between lines.
	var streaming atomic.Bool
	watchdog := time.AfterFunc(c.timeout, func() {
		if streaming.Load() {
			cancel(errIdle)
		} else {
			cancel(errConnectTimeout)
		}
	})
	defer watchdog.Stop()
	fail := func(err error) *Error {
		if cause := context.Cause(ctx); ctx.Err() != nil && !errors.Is(cause, context.Canceled) && !errors.Is(err, cause) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		return &Error{Method: http.MethodGet, Path: path, Front: front, Err: err}
	}
	resp, err := c.send(ctx, front, http.MethodGet, path, nil, header)
	if err != nil {
		e := err.(*Error)
		if e.Status == 0 && !errors.Is(e.Err, errNoToken) {
			e = fail(e.Err)
		}
		return false, e
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, problemOf(resp, http.MethodGet, path, front)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return false, &Error{Method: http.MethodGet, Path: path, Front: front, Status: resp.StatusCode, Err: errNotStream,
			Detail: errNotStream.Error()}
	}
	streaming.Store(true)
	watchdog.Reset(idle)
	er := &eventReader{r: bufio.NewReaderSize(resp.Body, 64<<10), seen: func() {
		alive = true
		watchdog.Reset(idle)
	}}
	for {
		ev, err := er.next()
		if err != nil {
			return alive, fail(fmt.Errorf("the stream ended: %w", err))
		}
		if ev.HasID && ev.ID <= *last {
			continue // sent before the connection was lost
		}
		if err := handle(ev); err != nil {
			return true, handlerError{err}
		}
		if ev.HasID {
			*last = ev.ID
		}
	}
}

package longpoll

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/store"
)

// writeMargin is added to a held poll's wait for its write deadline: time
// to read the record once more and send it.
const writeMargin = 10 * time.Second

// Poller serves long-poll requests: GET a record, optionally waiting for a
// version newer than the client has seen.
type Poller struct {
	Hub *Hub
	// MaxWait caps the wait a client may ask for.
	MaxWait time.Duration
	// Stopping is closed at shutdown: held polls answer at once with the
	// record as it is, so that the server can drain.
	Stopping <-chan struct{}
	// Gauge, if set, counts the polls held now by kind (metrics.LongPollsWaiting).
	Gauge *prometheus.GaugeVec
	Log   *slog.Logger
}

// Serve answers r with the record read returns. With ?wait it holds the
// request until the record's version passes ?after (by default, the version
// first read), the wait ends, the client leaves or the server stops; the
// answer is always the record as last read.
func (p *Poller) Serve(w http.ResponseWriter, r *http.Request, kind store.ChangeKind, id string,
	read func(ctx context.Context) (v any, version int64, err error)) {
	p.ServeUntil(w, r, kind, id, read, nil)
}

// ServeUntil is Serve that, with ready not nil, holds the request past
// newer versions until ready also accepts the record: a client that only
// wants the outcome is not woken for each step on the way.
func (p *Poller) ServeUntil(w http.ResponseWriter, r *http.Request, kind store.ChangeKind, id string,
	read func(ctx context.Context) (v any, version int64, err error), ready func(v any) bool) {
	poll, err := httpapi.ParsePoll(r, p.MaxWait)
	if err != nil {
		httpapi.WriteProblem(w, r, p.Log, err)
		return
	}
	ctx := r.Context()
	if poll.Wait == 0 {
		v, _, err := read(ctx)
		p.answer(w, r, v, err)
		return
	}

	// Subscribe first, then read: a change that lands between the read
	// and the wait still wakes us.
	changed, unwatch := p.Hub.Watch(kind, id)
	defer unwatch()
	v, version, err := read(ctx)
	if err != nil {
		httpapi.WriteProblem(w, r, p.Log, err)
		return
	}
	after := poll.After
	if !poll.HasAfter {
		after = version
	}
	done := func() bool { return version > after && (ready == nil || ready(v)) }
	if done() || p.stopping() {
		httpapi.WriteJSON(w, http.StatusOK, v)
		return
	}

	if p.Gauge != nil {
		g := p.Gauge.WithLabelValues(kindLabel(kind))
		g.Inc()
		defer g.Dec()
	}
	// The server's write timeout is sized for quick answers; a held poll
	// needs its own, or the answer would be cut off.
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Now().Add(poll.Wait + writeMargin)); err != nil && !errors.Is(err, http.ErrNotSupported) && p.Log != nil {
		p.Log.Debug("long-poll: extending write deadline", "err", err)
	}
	timer := time.NewTimer(poll.Wait)
	defer timer.Stop()
	for {
		select {
		case <-changed:
			v, version, err = read(ctx)
			if err != nil {
				httpapi.WriteProblem(w, r, p.Log, err)
				return
			}
			if done() {
				httpapi.WriteJSON(w, http.StatusOK, v)
				return
			}
		case <-timer.C:
			httpapi.WriteJSON(w, http.StatusOK, v)
			return
		case <-p.Stopping:
			httpapi.WriteJSON(w, http.StatusOK, v)
			return
		case <-ctx.Done():
			return
		}
	}
}

func (p *Poller) answer(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		httpapi.WriteProblem(w, r, p.Log, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
}

func (p *Poller) stopping() bool {
	select {
	case <-p.Stopping:
		return true
	default:
		return false
	}
}

// kindLabel names a change kind for the gauge's bounded label.
func kindLabel(k store.ChangeKind) string {
	switch k {
	case store.ChangeTicket:
		return "ticket"
	case store.ChangeServer:
		return "server"
	}
	return "other"
}

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
	// Heartbeat is how often an idle stream sends a heartbeat;
	// DefaultHeartbeat if zero.
	Heartbeat time.Duration
}

// Source is how a poll gets its record.
type Source struct {
	// Read reads the record from the store, with its version.
	Read func(ctx context.Context) (v any, version int64, err error)
	// Hold, if set, is Read for a poll about to be held: a store that
	// routes changes to the processes that ask for them is asked here
	// (store.WatchTicket), in the same step as the read.
	Hold func(ctx context.Context) (v any, version int64, err error)
	// Carried, if set, takes the record from a change that carried it
	// (CarriedTicket for a ticket), so that a wake-up needs no read; ok
	// false sends the poll to Read.
	Carried func(c store.Change) (v any, version int64, ok bool)
	// Ready, if set, holds the poll past newer versions until it also
	// accepts the record.
	Ready func(v any) bool
}

// Serve answers r with the record read returns. With ?wait it holds the
// request until the record's version passes ?after (by default, the version
// first read), the wait ends, the client leaves or the server stops; the
// answer is always the record as last read.
func (p *Poller) Serve(w http.ResponseWriter, r *http.Request, kind store.ChangeKind, id string,
	read func(ctx context.Context) (v any, version int64, err error)) {
	p.ServeWith(w, r, kind, id, Source{Read: read})
}

// ServeWith is Serve on src. The first read is always src.Read, after
// subscribing; a wake-up whose change carries the record takes it from
// there (src.Carried) and reads nothing, one that brings nothing newer
// than the record held is passed over, and any other (a resync, a change
// without the record) reads again.
func (p *Poller) ServeWith(w http.ResponseWriter, r *http.Request, kind store.ChangeKind, id string, src Source) {
	poll, err := httpapi.ParsePoll(r, p.MaxWait)
	if err != nil {
		httpapi.WriteProblem(w, r, p.Log, err)
		return
	}
	ctx := r.Context()
	if poll.Wait == 0 {
		v, _, err := src.Read(ctx)
		p.answer(w, r, v, err)
		return
	}

	// Subscribe first, then read: a change that lands between the read
	// and the wait still wakes us.
	changed, unwatch := p.Hub.Watch(kind, id)
	defer unwatch()
	hold := src.hold()
	v, version, err := hold(ctx)
	if err != nil {
		httpapi.WriteProblem(w, r, p.Log, err)
		return
	}
	after := poll.After
	if !poll.HasAfter {
		after = version
	}
	done := func() bool { return version > after && (src.Ready == nil || src.Ready(v)) }
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
		case c := <-changed:
			if stale(c, version) {
				continue
			}
			nv, nversion, ok := p.carried(src, c)
			if !ok {
				if nv, nversion, err = hold(ctx); err != nil {
					httpapi.WriteProblem(w, r, p.Log, err)
					return
				}
			} else if nversion <= version {
				continue
			}
			v, version = nv, nversion
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

// hold is how a poll about to be held, or a stream, reads its record:
// Hold if set, else Read.
func (src Source) hold() func(ctx context.Context) (any, int64, error) {
	if src.Hold != nil {
		return src.Hold
	}
	return src.Read
}

// stale reports whether change c brings nothing newer than version: a
// change repeated, or overtaken by one already seen. A resync always
// counts.
func stale(c store.Change, version int64) bool {
	return c.Kind != store.ChangeResync && c.Version > 0 && c.Version <= version
}

// heartbeat is how often an idle stream shows it is alive.
func (p *Poller) heartbeat() time.Duration {
	if p.Heartbeat > 0 {
		return p.Heartbeat
	}
	return DefaultHeartbeat
}

// carried is the record c carries, if src can take it from there.
func (p *Poller) carried(src Source, c store.Change) (any, int64, bool) {
	if src.Carried == nil || c.Kind == store.ChangeResync {
		return nil, 0, false
	}
	return src.Carried(c)
}

// CarriedTicket is a Source.Carried for a ticket poll whose Read answers a
// contracts.Ticket: the ticket a ChangeTicket carries, if it carries one
// that decodes.
func CarriedTicket(c store.Change) (any, int64, bool) {
	if c.Kind != store.ChangeTicket || c.Ticket == nil {
		return nil, 0, false
	}
	t, err := c.Ticket.Get()
	if err != nil {
		return nil, 0, false
	}
	return t, t.Version, true
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

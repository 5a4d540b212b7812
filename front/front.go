// Package front is the player-facing HTTP API: players create a ticket,
// long-poll it until it is assigned a game server, and may cancel it while
// it is searching (DESIGN §5). The front keeps no state of its own; any
// replica answers any ticket.
package front

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/longpoll"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Store is the part of the store the front uses.
type Store interface {
	CreateTicket(ctx context.Context, t contracts.Ticket, expiresAt time.Time) error
	DeleteTicket(ctx context.Context, id string) error
	Ticket(ctx context.Context, id string) (contracts.Ticket, error)
	CancelTicket(ctx context.Context, id string, now time.Time) (contracts.Ticket, error)
}

// Publisher hands ticket messages to the matchers.
type Publisher interface {
	Publish(ctx context.Context, name string, bodies ...[]byte) error
}

// Config is what an API is built from.
type Config struct {
	Queues    *queues.Set
	Store     Store
	Publisher Publisher
	// Poller serves the ticket long-poll; its Hub must be running on the
	// store's changes for polls to wake before their wait ends.
	Poller  *longpoll.Poller
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// MaxCreates bounds the creates in progress at once; past it a create
	// is answered 503 overloaded at once, with Retry-After. Zero means no
	// bound.
	MaxCreates int
}

// finishTimeout bounds the steps of a create that must complete once the
// ticket is stored, whether or not the client is still there.
const finishTimeout = 10 * time.Second

// API serves the player API.
type API struct {
	queues  *queues.Set
	store   Store
	pub     Publisher
	poller  *longpoll.Poller
	metrics *metrics.Metrics
	log     *slog.Logger
	now     func() time.Time
	// creating holds a token per create in progress, when bounded.
	creating chan struct{}
}

// New builds the API from cfg.
func New(cfg Config) *API {
	a := &API{
		queues:  cfg.Queues,
		store:   cfg.Store,
		pub:     cfg.Publisher,
		poller:  cfg.Poller,
		metrics: cfg.Metrics,
		log:     cfg.Log,
		now:     cfg.Now,
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.metrics == nil {
		a.metrics = metrics.NewUnregistered()
	}
	if cfg.MaxCreates > 0 {
		a.creating = make(chan struct{}, cfg.MaxCreates)
	}
	return a
}

// Mount adds the player API's routes to r.
func (a *API) Mount(r chi.Router) {
	r.Post("/v1/tickets", a.createTicket)
	r.Get("/v1/tickets/{id}", a.getTicket)
	r.Delete("/v1/tickets/{id}", a.cancelTicket)
}

func (a *API) createTicket(w http.ResponseWriter, r *http.Request) {
	// Past its capacity a front that took every create would hold them all
	// until the clients gave up; refusing the excess at once keeps the
	// creates it takes quick, and tells the others when to come back.
	if a.creating != nil {
		select {
		case a.creating <- struct{}{}:
			defer func() { <-a.creating }()
		default:
			httpapi.WriteProblem(w, r, a.log, fmt.Errorf("%w: %d creates in progress", httpapi.ErrOverloaded, cap(a.creating)))
			return
		}
	}
	t, q, err := a.newTicket(w, r)
	if err != nil {
		httpapi.WriteProblem(w, r, a.log, err)
		return
	}
	if err := a.create(r.Context(), t, q); err != nil {
		httpapi.WriteProblem(w, r, a.log, err)
		return
	}
	a.metrics.TicketsCreated.WithLabelValues(q.Name).Inc()
	w.Header().Set("Location", httpapi.TicketPath(t.ID))
	httpapi.WriteJSON(w, http.StatusCreated, t)
}

// newTicket reads and checks the request, and makes the ticket it asks for.
func (a *API) newTicket(w http.ResponseWriter, r *http.Request) (contracts.Ticket, queues.Queue, error) {
	if err := contracts.CheckJSONContentType(r.Header.Get("Content-Type")); err != nil {
		return contracts.Ticket{}, queues.Queue{}, err
	}
	req, err := contracts.DecodeTicketRequest(http.MaxBytesReader(w, r.Body, contracts.MaxRequestBytes))
	if err != nil {
		return contracts.Ticket{}, queues.Queue{}, err
	}
	q, ok := a.queues.Get(req.Queue)
	if !ok {
		return contracts.Ticket{}, queues.Queue{}, fmt.Errorf("%w: %q", httpapi.ErrUnknownQueue, req.Queue)
	}
	if len(req.Players) > q.TeamSize {
		return contracts.Ticket{}, queues.Queue{}, fmt.Errorf("%w: queue %q takes parties of at most %d players, not %d",
			contracts.ErrBadRequest, q.Name, q.TeamSize, len(req.Players))
	}
	now := a.now().UTC()
	return contracts.Ticket{
		ID:         store.NewID(q.Name),
		Queue:      q.Name,
		Status:     contracts.StatusSearching,
		Version:    1,
		CreatedAt:  now,
		UpdatedAt:  now,
		Players:    req.Players,
		Latencies:  req.Latencies,
		Attributes: req.Attributes,
	}, q, nil
}

// create stores t and announces it to the matchers. Either both happen or,
// as far as the store can be reached, neither: a ticket no matcher will
// ever see would hold its players until it expired.
func (a *API) create(ctx context.Context, t contracts.Ticket, q queues.Queue) error {
	body, err := json.Marshal(contracts.TicketMessage{V: contracts.SchemaVersion, Ticket: t})
	if err != nil {
		return fmt.Errorf("encoding ticket message: %w", err)
	}
	if err := a.store.CreateTicket(ctx, t, t.CreatedAt.Add(q.MaxWait)); err != nil {
		return storeErr("creating ticket", err)
	}
	// The ticket is stored: finish the job even if the client leaves now,
	// so that it is either announced or removed.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	pubErr := a.pub.Publish(ctx, contracts.TicketQueue(q.Name), body)
	if pubErr == nil {
		return nil
	}
	// An unconfirmed publish may still have been delivered, so the
	// ticket's state decides: the store removes it only while no matcher
	// has claimed it. A claimed ticket was announced after all, and the
	// create succeeded; telling the client otherwise would have it retry
	// into a second match.
	err = a.store.DeleteTicket(ctx, t.ID)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrConflict):
		a.log.Warn("ticket announced although its publish failed", "ticket", t.ID, "queue", q.Name, "err", pubErr)
		return nil
	default:
		// The ticket stays until the reaper expires it at its max wait;
		// its players cannot queue again until then.
		a.log.Error("removing unannounced ticket", "ticket", t.ID, "queue", q.Name, "err", err)
	}
	return fmt.Errorf("%w: publishing ticket: %w", httpapi.ErrUnavailable, pubErr)
}

func (a *API) getTicket(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if err := contracts.CheckID("ticket id", id); err != nil {
		httpapi.WriteProblem(w, r, a.log, err)
		return
	}
	a.poller.Serve(w, r, store.ChangeTicket, id, func(ctx context.Context) (any, int64, error) {
		t, err := a.store.Ticket(ctx, id)
		if err != nil {
			return nil, 0, storeErr("reading ticket", err)
		}
		return t, t.Version, nil
	})
}

func (a *API) cancelTicket(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if err := contracts.CheckID("ticket id", id); err != nil {
		httpapi.WriteProblem(w, r, a.log, err)
		return
	}
	t, err := a.store.CancelTicket(r.Context(), id, a.now().UTC())
	if err != nil {
		httpapi.WriteProblem(w, r, a.log, storeErr("cancelling ticket", err))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, t)
}

// storeErr wraps a store error for the client: the store's verdicts on the
// request (not found, conflict, busy player) keep their meaning, and any
// other failure is the store being unreachable, which the client may retry.
func storeErr(doing string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrPlayerBusy),
		errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", doing, err)
	}
	return fmt.Errorf("%w: %s: %w", httpapi.ErrUnavailable, doing, err)
}

// Package front is the player-facing HTTP API: players create a ticket,
// long-poll it until it is assigned a game server, and may cancel it while
// it is searching (contracts/openapi.yaml). The front keeps no state of its own; any
// replica answers any ticket.
package front

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/auth"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/longpoll"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

// Store is the part of the store the front uses.
type Store interface {
	CreateTicketOnce(ctx context.Context, t contracts.Ticket, expiresAt time.Time, idem store.Idempotency) error
	DeleteTicket(ctx context.Context, id string) error
	Ticket(ctx context.Context, id string) (contracts.Ticket, error)
	WatchTicket(ctx context.Context, id string) (contracts.Ticket, error)
	CancelTicket(ctx context.Context, id string, now time.Time) (contracts.Ticket, error)
	AnswerMatch(ctx context.Context, id string, accept bool, now time.Time) (store.Answer, error)
	Regions(ctx context.Context) ([]string, error)
	// An explanation reads the pool near the ticket and the counts
	// (store.CachingStats shares one reading of them among explanations).
	Candidates(ctx context.Context, queue string, skill, maxGap float64, limit int) ([]store.PoolEntry, error)
	Stats(ctx context.Context, now time.Time) (store.Stats, error)
}

// Publisher hands ticket messages to the matchers, and returns once the
// broker has them.
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
	// Auth establishes who makes each request; without one, every request
	// is refused.
	Auth *httpapi.Authenticator
	// PlayerCreates and ServiceCreates limit the creates of each player
	// and of each service principal; past a limit a create is answered
	// 429 rate_limited with Retry-After. Nil means no limit.
	PlayerCreates, ServiceCreates *auth.Limiter
	// Regions are the regions a ticket may name besides those game
	// servers have registered in.
	Regions []string
	// Waits estimates the rest of a searching ticket's wait for its
	// explanation (explain.go); nil gives none.
	Waits WaitEstimator
	// PlayerExplains limits each player's explanations, which read the
	// pool: 429 past it. Nil means no limit.
	PlayerExplains *auth.Limiter
	// FinishTimeout bounds the steps of a create once its ticket may be
	// stored (announcing it, or removing it after a failure);
	// DefaultFinishTimeout if zero.
	FinishTimeout time.Duration
}

// DefaultFinishTimeout bounds the steps of a create that must complete
// once the ticket may be stored, whether or not the client is still there,
// and of an answer to a match once it is recorded.
const DefaultFinishTimeout = 10 * time.Second

// API serves the player API.
type API struct {
	queues    *queues.Set
	store     Store
	announcer *announcer
	poller    *longpoll.Poller
	metrics   *metrics.Metrics
	log       *slog.Logger
	now       func() time.Time
	// creating holds a token per create in progress, when bounded.
	creating chan struct{}
	auth     *httpapi.Authenticator
	limits   map[auth.Role]*auth.Limiter
	regions  *regions
	explain  *explainer
	explains *auth.Limiter
	finish   time.Duration
}

// New builds the API from cfg.
func New(cfg Config) *API {
	a := &API{
		queues:    cfg.Queues,
		store:     cfg.Store,
		announcer: &announcer{pub: cfg.Publisher},
		poller:    cfg.Poller,
		metrics:   cfg.Metrics,
		log:       cfg.Log,
		now:       cfg.Now,
		auth:      cfg.Auth,
		limits:    map[auth.Role]*auth.Limiter{auth.RolePlayer: cfg.PlayerCreates, auth.RoleService: cfg.ServiceCreates},
		explain:   &explainer{waits: cfg.Waits},
		explains:  cfg.PlayerExplains,
		finish:    cmp.Or(cfg.FinishTimeout, DefaultFinishTimeout),
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.regions = newRegions(cfg.Regions, cfg.Store, a.now)
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
	r.Group(func(r chi.Router) {
		if a.auth != nil {
			r.Use(a.auth.Handler)
		}
		r.Post("/v1/tickets", a.createTicket)
		r.Get("/v1/tickets/{id}", a.getTicket)
		r.Get("/v1/tickets/{id}/events", a.streamTicket)
		r.Get("/v1/tickets/{id}/explain", a.explainTicket)
		r.Delete("/v1/tickets/{id}", a.cancelTicket)
		r.Post("/v1/tickets/{id}/accept", a.acceptTicket)
	})
}

// The roles that may call the player API: a game server has no business
// with tickets.
var ticketRoles = []auth.Role{auth.RolePlayer, auth.RoleService}

func (a *API) createTicket(w http.ResponseWriter, r *http.Request) {
	p, err := httpapi.Caller(r, ticketRoles...)
	if err != nil {
		httpapi.WriteProblem(w, r, a.log, err)
		return
	}
	// A create refused for its rate costs no more than this check, so a
	// client that sends too many cannot make the front do more.
	if limit := a.limits[p.Role]; limit != nil && !httpapi.Anonymous(p) {
		if ok, after := limit.Allow(p.Subject, a.now()); !ok {
			httpapi.WriteProblem(w, r, a.log, &httpapi.RateLimitedError{What: "ticket creates", RetryAfter: after})
			return
		}
	}
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
	t, q, idem, err := a.newTicket(w, r, p)
	if err != nil {
		httpapi.WriteProblem(w, r, a.log, err)
		return
	}
	err = a.create(r.Context(), t, q, idem)
	var replay *store.ReplayError
	if errors.As(err, &replay) && !replay.Mismatch {
		a.answerReplay(w, r, replay.TicketID)
		return
	}
	if err != nil {
		httpapi.WriteProblem(w, r, a.log, hideBusyTicket(err, p))
		return
	}
	a.metrics.TicketsCreated.WithLabelValues(q.Name).Inc()
	w.Header().Set("Location", httpapi.TicketPath(t.ID))
	httpapi.WriteJSON(w, http.StatusCreated, t)
}

// answerReplay answers a create whose Idempotency-Key an earlier create
// used as that one was answered, 201 with the ticket, as it is now.
func (a *API) answerReplay(w http.ResponseWriter, r *http.Request, id string) {
	t, err := a.store.Ticket(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		// Deleted since the key was checked: the first create failed after
		// all, and a retry will make the ticket anew.
		err = fmt.Errorf("%w: the first create with this idempotency key was undone", httpapi.ErrUnavailable)
	}
	if err != nil {
		httpapi.WriteProblem(w, r, a.log, storeErr("reading the ticket of the idempotency key", err))
		return
	}
	w.Header().Set("Location", httpapi.TicketPath(t.ID))
	w.Header().Set(replayedHeader, "true")
	httpapi.WriteJSON(w, http.StatusCreated, t)
}

// Idempotency-Key (IETF httpapi draft) makes a create safe to retry: a
// retry whose first attempt got no answer gets that attempt's ticket.
const (
	idempotencyHeader = "Idempotency-Key"
	replayedHeader    = "Idempotent-Replayed"
	maxIdempotencyKey = 255
)

// idempotencyOf reads the request's Idempotency-Key, if any, for a create
// whose body is body. The draft makes the header a structured-field
// string, which is quoted; most clients send the bare key, so both are
// taken and mean the same key.
func idempotencyOf(r *http.Request, p auth.Principal, body []byte) (store.Idempotency, error) {
	v := r.Header.Get(idempotencyHeader)
	if v == "" {
		return store.Idempotency{}, nil
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	if v == "" || len(v) > maxIdempotencyKey || strings.IndexFunc(v, func(c rune) bool { return c < 0x20 || c > 0x7e || c == '"' || c == '\\' }) >= 0 {
		return store.Idempotency{}, fmt.Errorf("%w: %s must be 1 to %d printable ASCII characters", contracts.ErrBadRequest, idempotencyHeader, maxIdempotencyKey)
	}
	sum := sha256.Sum256(body)
	// Each principal's keys are its own, so that nobody can replay, or
	// learn of, another's create by guessing its key. Without auth every
	// client shares one scope and the keys' randomness keeps them apart.
	scope := string(p.Role) + ":" + p.Subject
	return store.Idempotency{Key: scope + "\x00" + v, Fingerprint: hex.EncodeToString(sum[:16])}, nil
}

// hideBusyTicket keeps the ticket of a busy player from anyone but that
// player: a player who may name its party must not learn their tickets,
// which would let it read or cancel them.
func hideBusyTicket(err error, p auth.Principal) error {
	var busy *store.PlayerBusyError
	if !errors.As(err, &busy) || busy.TicketID == "" || httpapi.Anonymous(p) ||
		(p.Role == auth.RolePlayer && p.Subject == busy.PlayerID) {
		return err
	}
	return &store.PlayerBusyError{PlayerID: busy.PlayerID}
}

// mayCreate checks that p may queue the players of req: a service anyone,
// a player itself with members of its party claim, each with the skill its
// token gives it, if any.
func mayCreate(p auth.Principal, req contracts.TicketRequest) error {
	if p.Role != auth.RolePlayer {
		return nil
	}
	self := false
	for _, pl := range req.Players {
		skill, ok := p.Member(pl.ID)
		if !ok {
			return fmt.Errorf("%w: player %s may queue only itself and the members of its party claim, and %s is neither", httpapi.ErrForbidden, p.Subject, pl.ID)
		}
		if claimed, ok := skill.For(req.Queue); ok && claimed != pl.Skill {
			return fmt.Errorf("%w: the skill of player %s in queue %s is set by its token", httpapi.ErrForbidden, pl.ID, req.Queue)
		}
		self = self || pl.ID == p.Subject
	}
	if !self {
		return fmt.Errorf("%w: a ticket made by player %s must include it", httpapi.ErrForbidden, p.Subject)
	}
	return nil
}

// mayRead reports whether p may see ticket t: a service any, a player only
// those it is in.
func mayRead(p auth.Principal, t contracts.Ticket) bool {
	if p.Role != auth.RolePlayer {
		return true
	}
	for _, pl := range t.Players {
		if pl.ID == p.Subject {
			return true
		}
	}
	return false
}

// errNoTicket answers for a ticket that does not exist and for one the
// caller may not see, alike, so that ids cannot be probed.
var errNoTicket = &httpapi.NotFoundError{What: "ticket"}

// newTicket reads and checks the request, and makes the ticket it asks for.
// The idempotency key is read before the body is decoded, so that a bad
// key is refused whatever the body holds.
func (a *API) newTicket(w http.ResponseWriter, r *http.Request, p auth.Principal) (t contracts.Ticket, q queues.Queue, idem store.Idempotency, err error) {
	if err := contracts.CheckJSONContentType(r.Header.Get("Content-Type")); err != nil {
		return t, q, idem, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, contracts.MaxRequestBytes))
	if err != nil {
		return t, q, idem, fmt.Errorf("reading body: %w", err)
	}
	if idem, err = idempotencyOf(r, p, body); err != nil {
		return t, q, idem, err
	}
	req, err := contracts.DecodeTicketRequestBytes(body)
	if err != nil {
		return t, q, idem, err
	}
	q, ok := a.queues.Get(req.Queue)
	if !ok {
		return t, q, idem, fmt.Errorf("%w: %q", httpapi.ErrUnknownQueue, req.Queue)
	}
	if len(req.Players) > q.TeamSize {
		return t, q, idem, fmt.Errorf("%w: queue %q takes parties of at most %d players, not %d",
			contracts.ErrBadRequest, q.Name, q.TeamSize, len(req.Players))
	}
	if err := mayCreate(p, req); err != nil {
		return t, q, idem, err
	}
	if err := a.regions.check(r.Context(), req.Latencies); err != nil {
		return t, q, idem, err
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
	}, q, idem, nil
}

// create stores t and announces it to the matchers. Either both happen or
// neither, as far as the store can be reached within the finish timeout: a
// 503 unavailable tells the client that no ticket was made, so a ticket
// that may have been stored is removed before the answer. A ticket left
// behind would be found and announced by the reaper, and matched for a
// player who was told it failed. When the store cannot be reached again in
// time to remove it, the answer is 503 outcome_unknown instead.
func (a *API) create(ctx context.Context, t contracts.Ticket, q queues.Queue, idem store.Idempotency) error {
	// Whatever happens next is finished even if the client leaves now,
	// so that the ticket is either announced or removed.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.finish)
	defer cancel()
	err := a.store.CreateTicketOnce(ctx, t, t.CreatedAt.Add(q.MaxWait), idem)
	switch {
	case errors.Is(err, store.ErrReplay):
		return err
	case err == nil:
	case errors.Is(err, store.ErrPlayerBusy), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrUnreachable):
		return storeErr("creating ticket", err) // nothing was stored
	default:
		// The reply may have been lost after the ticket was written.
		return a.undo(ctx, t, fmt.Errorf("creating ticket: %w", err))
	}
	if err := a.announcer.announce(ctx, t); err != nil {
		return a.undo(ctx, t, fmt.Errorf("announcing ticket: %w", err))
	}
	return nil
}

// Backoff of undo's tries.
const (
	undoFirstWait = 50 * time.Millisecond
	undoMaxWait   = time.Second
)

// undo removes ticket t after its create failed by cause, trying until ctx
// ends, and answers the create's outcome. An unconfirmed publish may still
// have been delivered, so the ticket's state decides: the store removes it
// only while no matcher has claimed it. A claimed ticket was announced
// after all, and the create succeeded (nil); telling the client otherwise
// would have it retry into a second match.
func (a *API) undo(ctx context.Context, t contracts.Ticket, cause error) error {
	for wait := undoFirstWait; ; wait = min(2*wait, undoMaxWait) {
		err := a.store.DeleteTicket(ctx, t.ID)
		switch {
		case err == nil:
			return fmt.Errorf("%w: %w", httpapi.ErrUnavailable, cause)
		case errors.Is(err, store.ErrConflict):
			a.log.Warn("ticket announced although its create failed", "ticket", t.ID, "queue", t.Queue, "err", cause)
			return nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			// The ticket may exist (the reaper will announce it if so):
			// the client is told that the outcome is unknown, never that
			// the create failed, and its retry with the same
			// idempotency key learns it once the store is back.
			a.log.Error("could not remove the ticket of a failed create", "ticket", t.ID, "queue", t.Queue, "cause", cause, "err", err)
			return fmt.Errorf("%w: %w", httpapi.ErrOutcomeUnknown, cause)
		case <-timer.C:
		}
	}
}

func (a *API) getTicket(w http.ResponseWriter, r *http.Request) {
	p, id, ok := a.ticketCall(w, r)
	if !ok {
		return
	}
	ready, err := untilOf(r)
	if err != nil {
		httpapi.WriteProblem(w, r, a.log, err)
		return
	}
	src := a.ticketSource(p, id)
	src.Ready = ready
	a.poller.ServeWith(w, r, store.ChangeTicket, id, src)
}

// ticketCall is the caller and the checked ticket id of a request on
// /v1/tickets/{id}, or false once it has answered the request with a
// problem.
func (a *API) ticketCall(w http.ResponseWriter, r *http.Request) (auth.Principal, string, bool) {
	p, err := httpapi.Caller(r, ticketRoles...)
	if err == nil {
		id := chi.URLParam(r, "id")
		if err = contracts.CheckID("ticket id", id); err == nil {
			return p, id, true
		}
	}
	httpapi.WriteProblem(w, r, a.log, err)
	return auth.Principal{}, "", false
}

// readTicket reads ticket id with get for p: a ticket p may not see is
// answered errNoTicket, word for word as an unknown one.
func readTicket(ctx context.Context, get func(context.Context, string) (contracts.Ticket, error), p auth.Principal, id string) (contracts.Ticket, error) {
	t, err := get(ctx, id)
	switch {
	case err != nil:
		return contracts.Ticket{}, storeErr("reading ticket", err)
	case !mayRead(p, t):
		return contracts.Ticket{}, errNoTicket
	}
	return t, nil
}

// ticketSource is how a poll or a stream of ticket id reads it for p. A
// held poll or a stream is answered from the ticket its change carries; it
// reads the store first, asking for the ticket's changes to be sent here,
// and again only when a change brings no ticket.
func (a *API) ticketSource(p auth.Principal, id string) longpoll.Source {
	read := func(get func(context.Context, string) (contracts.Ticket, error)) func(context.Context) (any, int64, error) {
		return func(ctx context.Context) (any, int64, error) {
			t, err := readTicket(ctx, get, p, id)
			return t, t.Version, err
		}
	}
	return longpoll.Source{
		Read:    read(a.store.Ticket),
		Hold:    read(a.store.WatchTicket),
		Carried: longpoll.CarriedTicket,
	}
}

// streamTicket streams the ticket's versions (Server-Sent Events, or a
// WebSocket when asked) until it is terminal, under the rules of a read.
func (a *API) streamTicket(w http.ResponseWriter, r *http.Request) {
	p, id, ok := a.ticketCall(w, r)
	if !ok {
		return
	}
	a.poller.Stream(w, r, store.ChangeTicket, id, a.ticketSource(p, id), longpoll.StreamSpec{
		Event: "ticket",
		Final: func(v any) bool {
			t, ok := v.(contracts.Ticket)
			return ok && t.Status.Terminal()
		},
	})
}

// untilOf reads a ticket poll's ?until: matched or assigned holds the poll
// until the ticket has got that far (or ended), however many versions it
// passes on the way; a client that only wants its server skips the wake-up
// and the second poll of the matched step.
func untilOf(r *http.Request) (func(any) bool, error) {
	q := r.URL.Query()
	if !q.Has("until") {
		return nil, nil
	}
	stage := contracts.Status(q.Get("until"))
	if stage != contracts.StatusMatched && stage != contracts.StatusAssigned {
		return nil, fmt.Errorf("%w: until must be matched or assigned, not %q", contracts.ErrBadRequest, stage)
	}
	// A ticket whose player must answer a match answers the poll too:
	// the match waits for the answer.
	return func(v any) bool {
		t, ok := v.(contracts.Ticket)
		return ok && (t.Status.Reached(stage) || t.Asked())
	}, nil
}

func (a *API) cancelTicket(w http.ResponseWriter, r *http.Request) {
	p, id, ok := a.ticketCall(w, r)
	if !ok {
		return
	}
	if p.Role == auth.RolePlayer {
		// A ticket's players never change, so reading them before the
		// cancel decides as well as reading them in it would.
		if _, err := readTicket(r.Context(), a.store.Ticket, p, id); err != nil {
			httpapi.WriteProblem(w, r, a.log, err)
			return
		}
	}
	now := a.now().UTC()
	t, declined, err := a.cancel(r.Context(), id, now)
	if err != nil {
		httpapi.WriteProblem(w, r, a.log, err)
		return
	}
	if declined {
		httpapi.WriteJSON(w, http.StatusOK, t)
		return
	}
	if t.UpdatedAt.Equal(now) {
		// This cancel made the change; a repeated one finds it made.
		a.metrics.TicketsFinished.WithLabelValues(t.Queue, string(contracts.StatusCancelled)).Inc()
	}
	httpapi.WriteJSON(w, http.StatusOK, t)
}

// storeErr wraps a store error for the client: the store's verdicts on the
// request (not found, conflict, busy player) keep their meaning, and any
// other failure is the store being unreachable, which the client may retry.
func storeErr(doing string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errNoTicket // the store's words name its keys
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrPlayerBusy),
		errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", doing, err)
	}
	return fmt.Errorf("%w: %s: %w", httpapi.ErrUnavailable, doing, err)
}

package assigner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/auth"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/longpoll"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

// DefaultServerTTL is how long a registration lasts without a heartbeat when
// HTTPConfig.ServerTTL is not set.
const DefaultServerTTL = 15 * time.Second

// ServerStore is what the game-server API needs of the shared state.
type ServerStore interface {
	RegisterServer(ctx context.Context, id string, req contracts.ServerRequest, ttl time.Duration, now time.Time) (contracts.Server, error)
	DrainServer(ctx context.Context, id string) (contracts.Server, error)
	Server(ctx context.Context, id string) (contracts.Server, error)
	Allocations(ctx context.Context, serverID string) (contracts.Allocations, error)
	EndMatch(ctx context.Context, serverID, matchID string, now time.Time) error
	RequestBackfill(ctx context.Context, b contracts.Backfill) (contracts.Backfill, error)
}

// HTTPConfig is what the game-server API is built from.
type HTTPConfig struct {
	Store ServerStore
	// Poller serves the allocations long-poll; its Hub must be running on
	// the store's changes for polls to wake before their wait ends.
	Poller *longpoll.Poller
	// ServerTTL is how long a registration or heartbeat keeps a server
	// live; DefaultServerTTL if zero.
	ServerTTL time.Duration
	Log       *slog.Logger
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Auth establishes who makes each request; without one, every request
	// is refused.
	Auth *httpapi.Authenticator
	// Queues are the queues served, whose rules bound a backfill request.
	Queues *queues.Set
}

// HTTP serves the game-server API (contracts/openapi.yaml): game servers register and
// heartbeat, long-poll the matches placed on them, end matches and drain.
// Every call is outbound from the game server, so it needs no open port.
type HTTP struct {
	store  ServerStore
	poller *longpoll.Poller
	ttl    time.Duration
	log    *slog.Logger
	now    func() time.Time
	auth   *httpapi.Authenticator
	queues *queues.Set
}

// NewHTTP builds the game-server API from cfg.
func NewHTTP(cfg HTTPConfig) *HTTP {
	h := &HTTP{
		store:  cfg.Store,
		poller: cfg.Poller,
		ttl:    cfg.ServerTTL,
		log:    cfg.Log,
		now:    cfg.Now,
		auth:   cfg.Auth,
		queues: cfg.Queues,
	}
	if h.ttl <= 0 {
		h.ttl = DefaultServerTTL
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.queues == nil {
		h.queues, _ = queues.NewSet(queues.Duel())
	}
	return h
}

// Mount adds the game-server API's routes to r.
func (h *HTTP) Mount(r chi.Router) {
	r.Group(func(r chi.Router) {
		if h.auth != nil {
			r.Use(h.auth.Handler)
		}
		r.Put("/v1/servers/{id}", h.registerServer)
		r.Get("/v1/servers/{id}", h.getServer)
		r.Delete("/v1/servers/{id}", h.drainServer)
		r.Get("/v1/servers/{id}/allocations", h.allocations)
		r.Get("/v1/servers/{id}/allocations/events", h.streamAllocations)
		r.Delete("/v1/servers/{id}/matches/{match_id}", h.endMatch)
		r.Post("/v1/servers/{id}/matches/{match_id}/backfill", h.requestBackfill)
	})
}

// serverID returns the checked server id of r's path if the caller may act
// for that server, or answers r with a problem and returns false. Only the
// server itself may: its token's subject is its id. Not even a service
// token speaks for a server, so that no other credential can move players
// to another address.
func (h *HTTP) serverID(w http.ResponseWriter, r *http.Request) (string, bool) {
	p, err := httpapi.Caller(r)
	if err != nil {
		httpapi.WriteProblem(w, r, h.log, err)
		return "", false
	}
	id := chi.URLParam(r, "id")
	if err := contracts.CheckID("server id", id); err != nil {
		httpapi.WriteProblem(w, r, h.log, err)
		return "", false
	}
	if !httpapi.Anonymous(p) && (p.Role != auth.RoleServer || p.Subject != id) {
		httpapi.WriteProblem(w, r, h.log, fmt.Errorf("%w: only the token of server %s may act for it", httpapi.ErrForbidden, id))
		return "", false
	}
	return id, true
}

func (h *HTTP) registerServer(w http.ResponseWriter, r *http.Request) {
	id, ok := h.serverID(w, r)
	if !ok {
		return
	}
	req, err := httpapi.ReadJSON(w, r, contracts.DecodeServerRequest)
	if err != nil {
		httpapi.WriteProblem(w, r, h.log, err)
		return
	}
	srv, err := h.store.RegisterServer(r.Context(), id, req, h.ttl, h.now().UTC())
	if err != nil {
		httpapi.WriteProblem(w, r, h.log, serverStoreErr("registering server", err))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, srv)
}

func (h *HTTP) getServer(w http.ResponseWriter, r *http.Request) {
	id, ok := h.serverID(w, r)
	if !ok {
		return
	}
	srv, err := h.store.Server(r.Context(), id)
	if err != nil {
		httpapi.WriteProblem(w, r, h.log, serverStoreErr("reading server", err))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, srv)
}

func (h *HTTP) drainServer(w http.ResponseWriter, r *http.Request) {
	id, ok := h.serverID(w, r)
	if !ok {
		return
	}
	srv, err := h.store.DrainServer(r.Context(), id)
	if err != nil {
		httpapi.WriteProblem(w, r, h.log, serverStoreErr("draining server", err))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, srv)
}

func (h *HTTP) allocations(w http.ResponseWriter, r *http.Request) {
	id, ok := h.serverID(w, r)
	if !ok {
		return
	}
	h.poller.Serve(w, r, store.ChangeServer, id, h.readAllocations(id))
}

// streamAllocations streams the server's allocations, a version at a time,
// as Server-Sent Events or over a WebSocket.
func (h *HTTP) streamAllocations(w http.ResponseWriter, r *http.Request) {
	id, ok := h.serverID(w, r)
	if !ok {
		return
	}
	h.poller.Stream(w, r, store.ChangeServer, id, longpoll.Source{Read: h.readAllocations(id)}, longpoll.StreamSpec{Event: "allocations"})
}

func (h *HTTP) readAllocations(id string) func(ctx context.Context) (any, int64, error) {
	return func(ctx context.Context) (any, int64, error) {
		a, err := h.store.Allocations(ctx, id)
		if err != nil {
			return nil, 0, serverStoreErr("reading allocations", err)
		}
		if a.Allocations == nil {
			// An idle server reads [] rather than null, as the
			// document promises.
			a.Allocations = []contracts.Allocation{}
		}
		return a, a.Version, nil
	}
}

// serverMatch is serverID for the routes of one of the server's matches:
// it also answers the checked match id of r's path.
func (h *HTTP) serverMatch(w http.ResponseWriter, r *http.Request) (server, match string, ok bool) {
	server, ok = h.serverID(w, r)
	if !ok {
		return "", "", false
	}
	match = chi.URLParam(r, "match_id")
	if err := contracts.CheckID("match id", match); err != nil {
		httpapi.WriteProblem(w, r, h.log, err)
		return "", "", false
	}
	return server, match, true
}

func (h *HTTP) endMatch(w http.ResponseWriter, r *http.Request) {
	id, matchID, ok := h.serverMatch(w, r)
	if !ok {
		return
	}
	if err := h.store.EndMatch(r.Context(), id, matchID, h.now().UTC()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = &httpapi.NotFoundError{What: "match on this server"}
		}
		httpapi.WriteProblem(w, r, h.log, serverStoreErr("ending match", err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// serverStoreErr wraps a store error for the game server: not found keeps
// its meaning, and any other failure is the store being unreachable, which
// the game server may retry.
func serverStoreErr(doing string, err error) error {
	var nf *httpapi.NotFoundError
	switch {
	case errors.As(err, &nf):
		return nf
	case errors.Is(err, store.ErrNotFound):
		return &httpapi.NotFoundError{What: "server"} // the store's words name its keys
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", doing, err)
	}
	return fmt.Errorf("%w: %s: %w", httpapi.ErrUnavailable, doing, err)
}

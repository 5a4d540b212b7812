package assigner

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/store"
)

// requestBackfill serves POST /v1/servers/{id}/matches/{match_id}/backfill:
// a game server whose match lost players asks for the seats they opened,
// per team, to be filled from the pool. Asking again replaces the seats
// asked for; asking for none withdraws the request, and so does ending
// the match.
func (h *HTTP) requestBackfill(w http.ResponseWriter, r *http.Request) {
	id, matchID, ok := h.serverMatch(w, r)
	if !ok {
		return
	}
	req, err := httpapi.ReadJSON(w, r, contracts.DecodeBackfillRequest)
	if err != nil {
		httpapi.WriteProblem(w, r, h.log, err)
		return
	}
	allocs, err := h.store.Allocations(r.Context(), id)
	if err != nil {
		httpapi.WriteProblem(w, r, h.log, serverStoreErr("reading the server's allocations", err))
		return
	}
	i := slices.IndexFunc(allocs.Allocations, func(a contracts.Allocation) bool { return a.MatchID == matchID })
	if i < 0 {
		httpapi.WriteProblem(w, r, h.log, &httpapi.NotFoundError{What: "match on this server"})
		return
	}
	b, err := h.backfillOf(id, allocs.Allocations[i], req)
	if err != nil {
		httpapi.WriteProblem(w, r, h.log, err)
		return
	}
	b, err = h.store.RequestBackfill(r.Context(), b)
	if errors.Is(err, store.ErrNotFound) {
		err = &httpapi.NotFoundError{What: "match on this server"} // ended meanwhile
	}
	if err != nil {
		httpapi.WriteProblem(w, r, h.log, serverStoreErr("requesting backfill", err))
		return
	}
	httpapi.WriteJSON(w, http.StatusAccepted, b)
}

// backfillOf checks req against the match of a and the rules of its queue,
// and makes the request: one count per team of the match, none above the
// queue's team size, matched to the mean skill of the match's players.
func (h *HTTP) backfillOf(server string, a contracts.Allocation, req contracts.BackfillRequest) (contracts.Backfill, error) {
	q, ok := h.queues.Get(a.Queue)
	if !ok {
		return contracts.Backfill{}, fmt.Errorf("%w: queue %q of the match is no longer served", contracts.ErrBadRequest, a.Queue)
	}
	if len(req.Open) != len(a.Teams) {
		return contracts.Backfill{}, fmt.Errorf("%w: the match has %d teams, and open lists %d", contracts.ErrBadRequest, len(a.Teams), len(req.Open))
	}
	for t, n := range req.Open {
		if n > q.TeamSize {
			return contracts.Backfill{}, fmt.Errorf("%w: team %d may open at most %d seats, the queue's team size", contracts.ErrBadRequest, t, q.TeamSize)
		}
	}
	skill := 0.0
	for _, p := range a.Players {
		skill += p.Skill
	}
	if len(a.Players) > 0 {
		skill /= float64(len(a.Players))
	}
	return contracts.Backfill{MatchID: a.MatchID, ServerID: server, Queue: a.Queue, Region: a.Region,
		Open: req.Open, Teams: a.Teams, Skill: skill, CreatedAt: h.now().UTC()}, nil
}

package front

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/auth"
	"github.com/quickmatch/quickmatch/internal/httpapi"
	"github.com/quickmatch/quickmatch/internal/store"
)

// acceptTicket serves POST /v1/tickets/{id}/accept: the answer of a
// ticket's player to the match it is offered (a queue with
// accept_timeout).
func (a *API) acceptTicket(w http.ResponseWriter, r *http.Request) {
	p, id, ok := a.ticketCall(w, r)
	if !ok {
		return
	}
	accept, err := httpapi.ReadJSON(w, r, contracts.DecodeAcceptRequest)
	if err != nil {
		httpapi.WriteProblem(w, r, a.log, err)
		return
	}
	if p.Role == auth.RolePlayer {
		// A ticket's players never change, so reading them first decides
		// as well as reading them in the answer would.
		if _, err := readTicket(r.Context(), a.store.Ticket, p, id); err != nil {
			httpapi.WriteProblem(w, r, a.log, err)
			return
		}
	}
	t, err := a.answer(r.Context(), id, accept)
	if err != nil {
		httpapi.WriteProblem(w, r, a.log, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, t)
}

// answer records the answer for ticket id and sends on what it set going:
// a match every ticket has now accepted to the assigners, the tickets a
// decline sent back to searching to the matchers. Both are sent even if
// the client has gone, since the answer is recorded.
//
// A match that could not be sent is answered 503: the client's retry of
// its acceptance finds the match still waiting for a server and sends it
// again (and should the client never retry, the reaper sends it once its
// assignment deadline has passed). Tickets that could not be announced
// are announced by the reaper as orphans; the decline itself is done.
func (a *API) answer(ctx context.Context, id string, accept bool) (contracts.Ticket, error) {
	now := a.now().UTC()
	ans, err := a.store.AnswerMatch(ctx, id, accept, now)
	if err != nil {
		return ans.Ticket, storeErr("answering the match offered", err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.finish)
	defer cancel()
	if ans.Ticket.Status == contracts.StatusCancelled && ans.Ticket.UpdatedAt.Equal(now) {
		a.metrics.TicketsFinished.WithLabelValues(ans.Ticket.Queue, string(contracts.StatusCancelled)).Inc()
		a.metrics.Acceptance.WithLabelValues(ans.Ticket.Queue, "declined").Inc()
		a.metrics.Acceptance.WithLabelValues(ans.Ticket.Queue, "requeued").Add(float64(len(ans.Requeued)))
	}
	if ans.Ready != nil && ans.Ticket.UpdatedAt.Equal(now) {
		a.metrics.Acceptance.WithLabelValues(ans.Ready.Queue, "accepted").Add(float64(len(ans.Ready.TicketIDs)))
	}
	if len(ans.Requeued) > 0 {
		if err := a.announcer.announceAll(ctx, ans.Requeued); err != nil {
			a.log.Warn("announcing the tickets of a declined match; the reaper will",
				"ticket", id, "tickets", len(ans.Requeued), "err", err)
		}
	}
	if ans.Ready != nil {
		body, err := contracts.EncodeMatchMessage(*ans.Ready, 0)
		if err == nil {
			err = a.announcer.pub.Publish(ctx, contracts.MatchQueue, body)
		}
		if err != nil {
			return ans.Ticket, fmt.Errorf("%w: sending the accepted match to the assigners: %w", httpapi.ErrUnavailable, err)
		}
	}
	return ans.Ticket, nil
}

// cancel cancels ticket id: a searching one by CancelTicket, one offered
// a match by declining it (declined). A ticket may move from one to the
// other while this runs, a match offered or fallen through, so each is
// tried again then.
func (a *API) cancel(ctx context.Context, id string, now time.Time) (t contracts.Ticket, declined bool, err error) {
	for range 3 {
		t, err = a.store.CancelTicket(ctx, id, now)
		if !offered(err) {
			if err != nil {
				err = storeErr("cancelling ticket", err)
			}
			return t, false, err
		}
		t, err = a.answer(ctx, id, false)
		var c *store.ConflictError
		if !errors.As(err, &c) || c.Status != contracts.StatusSearching {
			return t, true, err
		}
	}
	return t, false, fmt.Errorf("%w: ticket %s keeps changing", httpapi.ErrUnavailable, id)
}

// offered reports whether CancelTicket refused the cancel of a ticket
// because it is offered a match (err): a cancel then is a decline.
func offered(err error) bool {
	var c *store.ConflictError
	return errors.As(err, &c) && c.Status == contracts.StatusPendingAcceptance
}

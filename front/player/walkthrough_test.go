package player_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/assigner/gameserver"
	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/front/player"
)

func newPlayer(t *testing.T, fronts []string, id string) *player.Client {
	t.Helper()
	c, err := player.New(player.Config{Fronts: fronts, Token: token(t, id, "player"), HTTPClient: transport(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func duel(id string, skill float64) contracts.TicketRequest {
	return contracts.TicketRequest{Queue: "duel", Players: []contracts.Player{{ID: id, Skill: skill}},
		Latencies: map[string]float64{"eu-west": 30}}
}

// TestWalkthrough is the README's walk-through in Go, against the
// embedded matchmaker with auth on: a game server runs, two players queue
// and wait until assigned, the server gets the match and ends it, and
// drains when it stops.
func TestWalkthrough(t *testing.T) {
	url := startEmbedded(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	var (
		mu     sync.Mutex
		got    []contracts.Allocation
		ended  = make(chan string, 4)
		endErr = make(chan error, 4)
	)
	var gsRec, p1Rec recorder
	var gs *gameserver.Client
	gs, err := gameserver.New(gameserver.Config{
		ID: "gs-1", URLs: []string{url}, Token: token(t, "gs-1", "server"), HTTPClient: recording(t, &gsRec),
		Registration: contracts.ServerRequest{Address: "10.0.0.7:7777", Region: "eu-west", Capacity: 4},
		Handler: func(ctx context.Context, a contracts.Allocation) {
			mu.Lock()
			got = append(got, a)
			mu.Unlock()
			if err := gs.End(ctx, a.MatchID); err != nil {
				endErr <- err
				return
			}
			ended <- a.MatchID
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the players queue, so that eu-west is a region
	// the suite serves.
	if _, err := gs.Register(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runDone := make(chan error, 1)
	go func() { runDone <- gs.Run(runCtx) }()

	p1, err := player.New(player.Config{Fronts: []string{url}, Token: token(t, "p-1", "player"), HTTPClient: recording(t, &p1Rec)})
	if err != nil {
		t.Fatal(err)
	}
	p2 := newPlayer(t, []string{url}, "p-2")
	var (
		tickets [2]contracts.Ticket
		errs    [2]error
		wg      sync.WaitGroup
	)
	for i, p := range []*player.Client{p1, p2} {
		wg.Go(func() {
			id := []string{"p-1", "p-2"}[i]
			tk, err := p.Create(ctx, duel(id, 1500+float64(i)*10))
			if err != nil {
				errs[i] = err
				return
			}
			if tk.Status != contracts.StatusSearching || tk.Version != 1 {
				t.Errorf("created %+v; want searching at version 1", tk)
			}
			tickets[i], errs[i] = p.Wait(ctx, tk.ID, contracts.StatusAssigned)
		})
	}
	wg.Wait()
	for i, tk := range tickets {
		if errs[i] != nil {
			t.Fatalf("player %d: %v", i+1, errs[i])
		}
		if tk.Status != contracts.StatusAssigned || tk.Assignment == nil || tk.Assignment.Address != "10.0.0.7:7777" || tk.Assignment.ServerID != "gs-1" {
			t.Fatalf("player %d's ticket %+v; want assigned to gs-1 at 10.0.0.7:7777", i+1, tk)
		}
	}
	if tickets[0].Match.ID != tickets[1].Match.ID {
		t.Errorf("matches %s and %s; want one", tickets[0].Match.ID, tickets[1].Match.ID)
	}

	select {
	case id := <-ended:
		if id != tickets[0].Match.ID {
			t.Errorf("ended match %s; want %s", id, tickets[0].Match.ID)
		}
	case err := <-endErr:
		t.Fatalf("End: %v", err)
	case <-ctx.Done():
		t.Fatal("the server never got the match")
	}
	mu.Lock()
	a := got[0]
	mu.Unlock()
	if !slices.Equal(slices.Sorted(slices.Values(a.TicketIDs)), slices.Sorted(slices.Values([]string{tickets[0].ID, tickets[1].ID}))) {
		t.Errorf("allocation of tickets %v; want the players' %s and %s", a.TicketIDs, tickets[0].ID, tickets[1].ID)
	}
	// An assigned ticket can no longer be cancelled.
	if _, err := p1.Cancel(ctx, tickets[0].ID); !errors.Is(err, player.ErrTicketMatched) {
		t.Errorf("cancelling an assigned ticket: %v; want ErrTicketMatched", err)
	}

	stop()
	if err := <-runDone; err != nil {
		t.Fatalf("Run: %v", err)
	}
	s, err := gs.Server(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Draining || s.Allocated != 0 {
		t.Errorf("server after Run %+v; want draining, the match ended", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Errorf("the handler got %d allocations; want the one match once", len(got))
	}
	// Both followed their streams; neither had to long-poll.
	for name, reqs := range map[string][]string{"the player": p1Rec.requests(), "the server": gsRec.requests()} {
		streams, polls := 0, 0
		for _, r := range reqs {
			switch {
			case strings.Contains(r, "/events") && strings.HasSuffix(r, " 200"):
				streams++
			case strings.Contains(r, "wait="):
				polls++
			}
		}
		if streams == 0 || polls != 0 {
			t.Errorf("%s made %d streams and %d long-polls: %q; want streams only", name, streams, polls, reqs)
		}
	}
}

// TestAgainstEmbedded: the answers a game client must tell apart, as the
// real suite gives them.
func TestAgainstEmbedded(t *testing.T) {
	url := startEmbedded(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// A region is served once a server has registered in it.
	gs, err := gameserver.New(gameserver.Config{ID: "gs-e", URLs: []string{url}, Token: token(t, "gs-e", "server"),
		Registration: contracts.ServerRequest{Address: "10.0.0.8:7777", Region: "eu-west", Capacity: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gs.Register(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("busy player", func(t *testing.T) {
		p := newPlayer(t, []string{url}, "p-busy")
		first, err := p.Create(ctx, duel("p-busy", 1500))
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Create(ctx, duel("p-busy", 1500))
		var ae *player.APIError
		if !errors.Is(err, player.ErrPlayerHasTicket) || !errors.As(err, &ae) || ae.TicketID != first.ID || ae.Status != http.StatusConflict {
			t.Errorf("second create: %v; want ErrPlayerHasTicket naming %s", err, first.ID)
		}
	})

	t.Run("cancel, wait and watch", func(t *testing.T) {
		p := newPlayer(t, []string{url}, "p-cancel")
		tk, err := p.Create(ctx, duel("p-cancel", 3000))
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.Cancel(ctx, tk.ID)
		if err != nil || c.Status != contracts.StatusCancelled {
			t.Fatalf("Cancel = %+v, %v", c, err)
		}
		if again, err := p.Cancel(ctx, tk.ID); err != nil || again.Version != c.Version {
			t.Errorf("cancelling again = %+v, %v; want the same ticket", again, err)
		}
		// A terminal ticket has reached every stage: Wait answers it.
		w, err := p.Wait(ctx, tk.ID, contracts.StatusAssigned)
		if err != nil || w.Status != contracts.StatusCancelled {
			t.Errorf("Wait = %+v, %v; want the cancelled ticket", w, err)
		}
		var versions []int64
		err = p.Watch(ctx, tk.ID, 0, func(t contracts.Ticket) error {
			versions = append(versions, t.Version)
			return nil
		})
		if err != nil || len(versions) == 0 || versions[len(versions)-1] != c.Version {
			t.Errorf("Watch = %v, versions %v; want it to end at the cancelled version %d", err, versions, c.Version)
		}
		if r, err := p.Ticket(ctx, tk.ID); err != nil || r.Status != contracts.StatusCancelled {
			t.Errorf("Ticket = %+v, %v", r, err)
		}
	})

	tests := []struct {
		name string
		call func(p *player.Client) error
		want error
		code string
	}{
		{"unknown ticket", func(p *player.Client) error { _, err := p.Ticket(ctx, "duel-nope"); return err }, player.ErrNotFound, contracts.CodeNotFound},
		{"unknown ticket, waited", func(p *player.Client) error {
			_, err := p.Wait(ctx, "duel-nope", contracts.StatusAssigned)
			return err
		}, player.ErrNotFound, contracts.CodeNotFound},
		{"queueing someone else", func(p *player.Client) error { _, err := p.Create(ctx, duel("p-other", 1500)); return err }, player.ErrForbidden, contracts.CodeForbidden},
		{"unknown queue", func(p *player.Client) error {
			_, err := p.Create(ctx, contracts.TicketRequest{Queue: "nope", Players: []contracts.Player{{ID: "p-q", Skill: 1}}})
			return err
		}, player.ErrBadRequest, contracts.CodeUnknownQueue},
		{"unknown region", func(p *player.Client) error {
			_, err := p.Create(ctx, contracts.TicketRequest{Queue: "duel", Players: []contracts.Player{{ID: "p-q", Skill: 1}}, Latencies: map[string]float64{"mars": 1}})
			return err
		}, player.ErrBadRequest, contracts.CodeUnknownRegion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(newPlayer(t, []string{url}, "p-q"))
			var ae *player.APIError
			if !errors.Is(err, tt.want) || !errors.As(err, &ae) || ae.Code != tt.code {
				t.Errorf("got %v; want %v with code %s", err, tt.want, tt.code)
			}
		})
	}

	t.Run("bad token", func(t *testing.T) {
		p, err := player.New(player.Config{Fronts: []string{url}, Token: func(context.Context) (string, error) { return "not-a-jwt", nil }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Create(ctx, duel("p-1", 1500)); !errors.Is(err, player.ErrUnauthorized) {
			t.Errorf("Create = %v; want ErrUnauthorized", err)
		}
	})
}

// TestCreateReplayedOnAnotherFront: a create whose answer is lost after
// the suite made the ticket is retried on the next front with the same
// Idempotency-Key, and the suite answers it with that ticket, not a
// second one or a 409.
func TestCreateReplayedOnAnotherFront(t *testing.T) {
	url := startEmbedded(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	gs, err := gameserver.New(gameserver.Config{ID: "gs-r", URLs: []string{url}, Token: token(t, "gs-r", "server"),
		Registration: contracts.ServerRequest{Address: "10.0.0.9:7777", Region: "eu-west", Capacity: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gs.Register(ctx); err != nil {
		t.Fatal(err)
	}
	// A front that passes the create on, then loses its answer.
	var (
		mu       sync.Mutex
		made     contracts.Ticket
		firstKey string
	)
	lossy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, url+r.URL.Path, bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("forwarding: %v", err)
			return
		}
		defer resp.Body.Close()
		mu.Lock()
		json.NewDecoder(resp.Body).Decode(&made)
		firstKey = r.Header.Get("Idempotency-Key")
		mu.Unlock()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	}))
	defer lossy.Close()

	p := newPlayer(t, []string{lossy.URL, url}, "p-lost")
	tk, err := p.Create(ctx, duel("p-lost", 1500))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if made.ID == "" || tk.ID != made.ID {
		t.Errorf("the retry answered ticket %q; the lost try made %q", tk.ID, made.ID)
	}
	if len(firstKey) != 36 || firstKey[14] != '4' {
		t.Errorf("Idempotency-Key %q; want a version 4 UUID", firstKey)
	}
}

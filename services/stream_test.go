package services

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/quickmatch/quickmatch/contracts"
)

// ticketEvents reads the SSE stream of a ticket to its end and returns the
// tickets of its events, with their ids.
func ticketEvents(t *testing.T, url, token string, header http.Header) (status int, ids []string, tickets []contracts.Ticket) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, nil
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var id string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "data: "):
			var tk contracts.Ticket
			if err := json.Unmarshal([]byte(line[6:]), &tk); err != nil {
				t.Fatalf("event data %q: %v", line, err)
			}
			ids, tickets = append(ids, id), append(tickets, tk)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	return http.StatusOK, ids, tickets
}

// TestTicketStreams: a player follows its ticket from searching to
// assigned over Server-Sent Events and over a WebSocket, in both modes;
// the stream ends after the terminal version, resumes from Last-Event-ID,
// and follows the rules of a read.
func TestTicketStreams(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			keys := newKeys(t)
			s := startStack(t, m, stackOptions{auth: keys})
			tok := func(sub, role string) string { return sign(t, keys, "HS256", claims(sub, role)) }
			mustStatus(t, call(t, http.MethodPut, s.assignerURL+"/v1/servers/gs-s", tok("gs-s", "server"),
				contracts.ServerRequest{Address: "127.0.0.1:7777", Region: "eu-west", Capacity: 4}), http.StatusOK, "register")
			p1, p2 := tok("s-1", "player"), tok("s-2", "player")
			t1 := ticketOf(t, call(t, http.MethodPost, s.frontURL+"/v1/tickets", p1, player("s-1", 1500)))
			events := s.frontURL + "/v1/tickets/" + t1.ID + "/events"

			type result struct {
				ids     []string
				tickets []contracts.Ticket
			}
			sse := make(chan result, 1)
			go func() {
				_, ids, tks := ticketEvents(t, events, p1, nil)
				sse <- result{ids, tks}
			}()
			ws := make(chan []contracts.Ticket, 1)
			wsErr := make(chan error, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(events, "http"), &websocket.DialOptions{
				HTTPHeader: http.Header{"Authorization": {"Bearer " + p1}}})
			if err != nil {
				t.Fatalf("websocket: %v", err)
			}
			defer conn.CloseNow()
			go func() {
				var got []contracts.Ticket
				for {
					_, b, err := conn.Read(ctx)
					if err != nil {
						ws <- got
						wsErr <- err
						return
					}
					var tk contracts.Ticket
					if err := json.Unmarshal(b, &tk); err != nil {
						ws <- got
						wsErr <- err
						return
					}
					got = append(got, tk)
				}
			}()
			// Both streams are open before the match: the first event,
			// the ticket searching, says so.
			time.Sleep(100 * time.Millisecond)
			call(t, http.MethodPost, s.frontURL+"/v1/tickets", p2, player("s-2", 1510))

			r := <-sse
			if n := len(r.tickets); n == 0 || r.tickets[n-1].Status != contracts.StatusAssigned {
				t.Fatalf("SSE: %d events, last %+v; want the stream to end at assigned", n, r.tickets)
			}
			for i, tk := range r.tickets {
				if r.ids[i] != "" && r.ids[i] != jsonInt(tk.Version) {
					t.Errorf("SSE event id %q for version %d", r.ids[i], tk.Version)
				}
				if i > 0 && tk.Version <= r.tickets[i-1].Version {
					t.Errorf("SSE versions not increasing: %d after %d", tk.Version, r.tickets[i-1].Version)
				}
			}
			got := <-ws
			if err := <-wsErr; websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Errorf("websocket ended with %v, want a normal closure", err)
			}
			if n := len(got); n == 0 || got[n-1].Status != contracts.StatusAssigned {
				t.Errorf("websocket: %d messages, last %+v; want it to end at assigned", n, got)
			}

			// Resumed after the last version but one: the last only.
			last := r.tickets[len(r.tickets)-1]
			_, ids, tks := ticketEvents(t, events, p1, http.Header{"Last-Event-Id": {jsonInt(last.Version - 1)}})
			if len(tks) != 1 || tks[0].Version != last.Version || ids[0] != jsonInt(last.Version) {
				t.Errorf("resumed from %d: %v %+v, want version %d alone", last.Version-1, ids, tks, last.Version)
			}
			// The rules of a read.
			for _, c := range []struct {
				name, url, token string
				want             int
			}{
				{"another player", events, p2, http.StatusNotFound},
				{"unknown ticket", s.frontURL + "/v1/tickets/duel-nope/events", p1, http.StatusNotFound},
				{"a server", events, tok("gs-s", "server"), http.StatusForbidden},
				{"bad after", events + "?after=soon", p1, http.StatusBadRequest},
				{"no token", events, "", http.StatusUnauthorized},
			} {
				a := call(t, http.MethodGet, c.url, c.token, nil)
				if a.status != c.want {
					t.Errorf("%s: %d %s, want %d", c.name, a.status, a.body, c.want)
					continue
				}
				a.problem(t)
			}
			// The server's allocations stream: its current allocations
			// come first.
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.assignerURL+"/v1/servers/gs-s/allocations/events", nil)
			req.Header.Set("Authorization", "Bearer "+tok("gs-s", "server"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if line := sc.Text(); strings.HasPrefix(line, "data: ") {
					var a contracts.Allocations
					if err := json.Unmarshal([]byte(line[6:]), &a); err != nil || len(a.Allocations) != 1 || a.Allocations[0].MatchID != last.Match.ID {
						t.Errorf("allocations event %s (%v), want the match %s", line, err, last.Match.ID)
					}
					break
				}
			}
		})
	}
}

func jsonInt(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestGauges: a matcher's or assigner's /metrics shows the store's counts:
// tickets of each queue by state, servers and free slots of each region.
func TestGauges(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			s := startStack(t, m, stackOptions{})
			c := newClient(t)
			c.registerServer(s.assignerURL, "gs-g", "eu-west", 3)
			c.createTicket(s.frontURL, player("g-1", 1500))
			a := call(t, http.MethodGet, s.assignerURL+"/metrics", "", nil)
			for _, want := range []string{
				`mm_servers{region="eu-west",state="live"} 1`,
				`mm_free_slots{region="eu-west"} 3`,
				`mm_queue_tickets{queue="duel",state="searching"} 1`,
			} {
				if !strings.Contains(string(a.body), want+"\n") {
					t.Errorf("/metrics lacks %q", want)
				}
			}
		})
	}
}

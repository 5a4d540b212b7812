package services

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/quickmatch/quickmatch/contracts"
)

// TestAcceptance: a queue whose matches ask their players to accept, end
// to end in both modes: all accept and get a server; one declines and the
// other searches on with its wait; one lets the time run out; a cancel
// races the last acceptance.
func TestAcceptance(t *testing.T) {
	q := testQueue()
	q.Name, q.AcceptTimeout = "tournament", 2*time.Second
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			s := startStack(t, m, stackOptions{queue: q})
			c := newClient(t)
			c.registerServer(s.assignerURL, "gs-acc", "eu-west", 20)
			create := func(id string) contracts.Ticket {
				t.Helper()
				return c.createTicket(s.frontURL, contracts.TicketRequest{Queue: q.Name, Players: []contracts.Player{{ID: id, Skill: 1500}}})
			}
			answer := func(id string, accept bool) (contracts.Ticket, int) {
				t.Helper()
				var tk contracts.Ticket
				code := c.do(http.MethodPost, s.frontURL+"/v1/tickets/"+id+"/accept", map[string]bool{"accept": accept}, &tk)
				return tk, code
			}
			// offered creates two tickets and waits until both are
			// offered their match.
			offered := func(a, b string) (contracts.Ticket, contracts.Ticket) {
				t.Helper()
				ta, tb := create(a), create(b)
				ta = c.awaitStatus(s.frontURL, ta.ID, contracts.StatusPendingAcceptance, 10*time.Second)
				tb = c.awaitStatus(s.frontURL, tb.ID, contracts.StatusPendingAcceptance, 10*time.Second)
				if ta.Match == nil || tb.Match == nil || ta.Match.ID != tb.Match.ID || ta.Acceptance == nil || ta.Acceptance.Accepted {
					t.Fatalf("offered %+v and %+v, want one match waiting for both", ta, tb)
				}
				if left := time.Until(ta.Acceptance.Deadline); left <= 0 || left > q.AcceptTimeout {
					t.Errorf("acceptance deadline %v away, want within %v", left, q.AcceptTimeout)
				}
				return ta, tb
			}

			t.Run("all accept", func(t *testing.T) {
				a, b := offered("all-a", "all-b")
				if tk, code := answer(a.ID, true); code != http.StatusOK || tk.Status != contracts.StatusPendingAcceptance || !tk.Acceptance.Accepted {
					t.Fatalf("first acceptance: %d %+v", code, tk)
				}
				if tk, code := answer(b.ID, true); code != http.StatusOK || tk.Status != contracts.StatusMatched {
					t.Fatalf("last acceptance: %d %+v", code, tk)
				}
				for _, id := range []string{a.ID, b.ID} {
					if tk := c.awaitTerminal(s.frontURL, id, 10*time.Second); tk.Status != contracts.StatusAssigned || tk.Assignment == nil || tk.Assignment.ServerID != "gs-acc" {
						t.Errorf("accepted ticket ended %+v", tk)
					}
				}
			})

			t.Run("one declines", func(t *testing.T) {
				a, b := offered("dec-a", "dec-b")
				answer(a.ID, true)
				if tk, code := answer(b.ID, false); code != http.StatusOK || tk.Status != contracts.StatusCancelled || tk.Reason != contracts.ReasonDeclined {
					t.Fatalf("decline: %d %+v", code, tk)
				}
				back := c.awaitStatus(s.frontURL, a.ID, contracts.StatusSearching, 5*time.Second)
				if !back.CreatedAt.Equal(a.CreatedAt) || back.Match != nil || back.Acceptance != nil {
					t.Errorf("the other ticket back to searching as %+v, want its first creation %v", back, a.CreatedAt)
				}
				// It searches with the wait it had: its window is that of
				// its first creation, and the next arrival meets it.
				var x contracts.Explanation
				c.do(http.MethodGet, s.frontURL+"/v1/tickets/"+a.ID+"/explain", nil, &x)
				if waited := time.Since(a.CreatedAt).Seconds(); x.WaitedSeconds > waited+0.5 || x.WaitedSeconds < waited-5 {
					t.Errorf("explanation says it waited %.1f s, want about %.1f s", x.WaitedSeconds, waited)
				}
				n := create("dec-n")
				again := c.awaitStatus(s.frontURL, a.ID, contracts.StatusPendingAcceptance, 10*time.Second)
				if again.Match == nil || again.Match.ID == a.Match.ID {
					t.Fatalf("requeued ticket offered %+v, want a new match", again.Match)
				}
				answer(a.ID, true)
				answer(n.ID, true)
				if tk := c.awaitTerminal(s.frontURL, a.ID, 10*time.Second); tk.Status != contracts.StatusAssigned {
					t.Errorf("requeued ticket ended %s", tk.Status)
				}
				// The decliner may queue again at once.
				c.do(http.MethodDelete, s.frontURL+"/v1/tickets/"+create("dec-b").ID, nil, nil)
			})

			t.Run("one times out", func(t *testing.T) {
				a, b := offered("out-a", "out-b")
				answer(a.ID, true)
				tb := c.awaitTerminal(s.frontURL, b.ID, 10*time.Second)
				if tb.Status != contracts.StatusCancelled || tb.Reason != contracts.ReasonAcceptTimeout {
					t.Errorf("silent ticket ended %s (%q), want cancelled (accept_timeout)", tb.Status, tb.Reason)
				}
				if late := tb.UpdatedAt.Sub(a.Acceptance.Deadline); late < 0 {
					t.Errorf("silent ticket cancelled %v before the deadline", -late)
				}
				if ta := c.awaitStatus(s.frontURL, a.ID, contracts.StatusSearching, 5*time.Second); !ta.CreatedAt.Equal(a.CreatedAt) {
					t.Errorf("accepting ticket back to searching created %v, want %v", ta.CreatedAt, a.CreatedAt)
				}
				if _, code := answer(b.ID, true); code != http.StatusConflict {
					t.Errorf("accepting after the timeout: %d, want 409", code)
				}
				c.do(http.MethodDelete, s.frontURL+"/v1/tickets/"+a.ID, nil, nil)
			})

			t.Run("a cancel races the last acceptance", func(t *testing.T) {
				for round := range 4 {
					a, b := offered(fmt.Sprintf("race-a-%d", round), fmt.Sprintf("race-b-%d", round))
					answer(a.ID, true)
					var acceptCode, cancelCode int
					var wg sync.WaitGroup
					wg.Go(func() { _, acceptCode = answer(b.ID, true) })
					wg.Go(func() { cancelCode = c.do(http.MethodDelete, s.frontURL+"/v1/tickets/"+a.ID, nil, nil) })
					wg.Wait()
					switch {
					case acceptCode == http.StatusOK && cancelCode == http.StatusConflict:
						for _, id := range []string{a.ID, b.ID} {
							if tk := c.awaitTerminal(s.frontURL, id, 10*time.Second); tk.Status != contracts.StatusAssigned {
								t.Errorf("round %d: the acceptance won but %s ended %s", round, id, tk.Status)
							}
						}
					case cancelCode == http.StatusOK && acceptCode == http.StatusConflict:
						var ta contracts.Ticket
						c.do(http.MethodGet, s.frontURL+"/v1/tickets/"+a.ID, nil, &ta)
						if ta.Status != contracts.StatusCancelled || ta.Reason != contracts.ReasonDeclined {
							t.Errorf("round %d: the cancel won but the ticket is %s (%q)", round, ta.Status, ta.Reason)
						}
						c.awaitStatus(s.frontURL, b.ID, contracts.StatusSearching, 5*time.Second)
						c.do(http.MethodDelete, s.frontURL+"/v1/tickets/"+b.ID, nil, nil)
					default:
						t.Fatalf("round %d: accept answered %d and cancel %d", round, acceptCode, cancelCode)
					}
				}
			})

			// What the metrics say of it: the scenarios above had one
			// ticket time out, at least one decline (and the cancels that
			// won their race), and two tickets sent back by them.
			for outcome, atLeast := range map[string]int{"accepted": 4, "declined": 1, "timed_out": 1, "requeued": 2} {
				if got := s.acceptance(t, q.Name, outcome); got < atLeast || outcome == "timed_out" && got != 1 {
					t.Errorf("mm_acceptance_tickets_total{outcome=%q} = %d, want %d or more (timed_out exactly 1)", outcome, got, atLeast)
				}
			}
		})
	}
}

// acceptance sums mm_acceptance_tickets_total of queue and outcome over the
// stack's processes.
func (s *stack) acceptance(t *testing.T, queue, outcome string) int {
	t.Helper()
	apps := append([]*runningApp{s.front}, s.assigners...)
	s.mu.Lock()
	apps = append(apps, s.matchers...)
	s.mu.Unlock()
	seen := map[*App]bool{}
	var total float64
	for _, a := range apps {
		if seen[a.app] {
			continue
		}
		seen[a.app] = true
		var m dto.Metric
		if err := a.app.metrics.Acceptance.WithLabelValues(queue, outcome).Write(&m); err != nil {
			t.Fatal(err)
		}
		total += m.GetCounter().GetValue()
	}
	return int(total)
}

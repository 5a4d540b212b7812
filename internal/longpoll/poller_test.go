package longpoll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/metrics"
	"github.com/quickmatch/quickmatch/internal/store"
)

// record is a versioned value that announces its changes through a feed,
// as a store does.
type record struct {
	mu      sync.Mutex
	version int64
	reads   int
}

type doc struct {
	Version int64            `json:"version"`
	Status  contracts.Status `json:"status"`
}

func (rec *record) read(ctx context.Context) (any, int64, error) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.reads++
	return doc{Version: rec.version}, rec.version, nil
}

func (rec *record) bump(t *testing.T, f *feed) {
	t.Helper()
	rec.mu.Lock()
	rec.version++
	v := rec.version
	rec.mu.Unlock()
	f.send(t, store.Change{Kind: store.ChangeTicket, ID: "r-1", Version: v})
}

type pollEnv struct {
	poller *Poller
	feed   *feed
	rec    *record
	srv    *httptest.Server
	stop   chan struct{}
	gauge  *prometheus.GaugeVec
}

func newPollEnv(t *testing.T) *pollEnv {
	t.Helper()
	return newPollEnvWith(t, nil)
}

// newPollEnvWith serves the polls with ServeWith on the source that src
// makes for the record, or with Serve if src is nil.
func newPollEnvWith(t *testing.T, src func(rec *record) Source) *pollEnv {
	t.Helper()
	e := &pollEnv{feed: newFeed(), rec: &record{version: 1}, stop: make(chan struct{})}
	hub := NewHub(nil)
	runHub(t, hub, e.feed)
	e.gauge = metrics.NewUnregistered().LongPollsWaiting
	e.poller = &Poller{Hub: hub, MaxWait: 5 * time.Second, Stopping: e.stop, Gauge: e.gauge}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if src == nil {
			e.poller.Serve(w, r, store.ChangeTicket, "r-1", e.rec.read)
			return
		}
		e.poller.ServeWith(w, r, store.ChangeTicket, "r-1", src(e.rec))
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// carrying serves the record from the tickets its changes carry.
func carrying(rec *record) Source { return Source{Read: rec.read, Carried: CarriedTicket} }

func (rec *record) readCount() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.reads
}

// carriedChange is a change of the record to version v that carries it
// with status st, as a store that sends the state along does.
func carriedChange(v int64, st contracts.Status) store.Change {
	return store.Change{Kind: store.ChangeTicket, ID: "r-1", Version: v,
		Ticket: store.CarryTicket(contracts.Ticket{ID: "r-1", Status: st, Version: v})}
}

type pollResult struct {
	status  int
	version int64
	doc     doc
	took    time.Duration
	err     error
}

// get polls in the background so that the test can act while it is held.
func (e *pollEnv) get(query string) <-chan pollResult {
	out := make(chan pollResult, 1)
	go func() {
		start := time.Now()
		resp, err := http.Get(e.srv.URL + "/?" + query)
		if err != nil {
			out <- pollResult{err: err}
			return
		}
		defer resp.Body.Close()
		var d doc
		if resp.StatusCode == http.StatusOK {
			err = json.NewDecoder(resp.Body).Decode(&d)
		} else {
			io.Copy(io.Discard, resp.Body)
		}
		out <- pollResult{status: resp.StatusCode, version: d.Version, doc: d, took: time.Since(start), err: err}
	}()
	return out
}

func wait(t *testing.T, ch <-chan pollResult, within time.Duration) pollResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	case <-time.After(within):
		t.Fatalf("no answer within %v", within)
		return pollResult{}
	}
}

func (e *pollEnv) waiting(t *testing.T) float64 {
	t.Helper()
	var m dto.Metric
	if err := e.gauge.WithLabelValues("ticket").Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// held waits until n polls are held.
func (e *pollEnv) held(t *testing.T, n float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.waiting(t) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%v polls held, want %v", e.waiting(t), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPollAnswersAtOnce(t *testing.T) {
	e := newPollEnv(t)
	e.rec.version = 4
	tests := []struct {
		query string
		want  int64
	}{
		{"", 4},
		{"after=9", 4},
		{"wait=0s&after=4", 4},
		{"wait=5s&after=3", 4},
		{"wait=5s&after=0", 4},
	}
	for _, tt := range tests {
		r := wait(t, e.get(tt.query), 2*time.Second)
		if r.status != http.StatusOK || r.version != tt.want {
			t.Errorf("%q: %d version %d, want 200 version %d", tt.query, r.status, r.version, tt.want)
		}
	}
}

func TestPollBadQuery(t *testing.T) {
	e := newPollEnv(t)
	for _, q := range []string{"wait=x", "wait=-1s", "after=-2", "after=v1"} {
		resp, err := http.Get(e.srv.URL + "/?" + q)
		if err != nil {
			t.Fatal(err)
		}
		var p contracts.Problem
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusBadRequest || p.Code != contracts.CodeBadRequest {
			t.Errorf("%q: %d %+v %v", q, resp.StatusCode, p, err)
		}
	}
	if e.rec.reads != 0 {
		t.Errorf("record read %d times for bad queries", e.rec.reads)
	}
}

func TestPollHeldUntilWaitEnds(t *testing.T) {
	e := newPollEnv(t)
	const w = 300 * time.Millisecond
	r := wait(t, e.get(fmt.Sprintf("wait=%s&after=1", w)), 5*time.Second)
	if r.status != http.StatusOK || r.version != 1 {
		t.Errorf("got %d version %d, want 200 with the unchanged version 1", r.status, r.version)
	}
	if r.took < w {
		t.Errorf("answered after %v, before the wait of %v ended", r.took, w)
	}
	if g := e.waiting(t); g != 0 {
		t.Errorf("gauge = %v after the poll", g)
	}
}

func TestPollWaitIsCapped(t *testing.T) {
	e := newPollEnv(t)
	e.poller.MaxWait = 100 * time.Millisecond
	r := wait(t, e.get("wait=1h"), 5*time.Second)
	if r.status != http.StatusOK || r.version != 1 {
		t.Errorf("got %d version %d", r.status, r.version)
	}
}

func TestPollWokenByChange(t *testing.T) {
	for _, query := range []string{"wait=5s&after=1", "wait=5s"} {
		t.Run(query, func(t *testing.T) {
			e := newPollEnv(t)
			res := e.get(query)
			e.held(t, 1)
			e.rec.bump(t, e.feed)
			r := wait(t, res, time.Second)
			if r.status != http.StatusOK || r.version != 2 {
				t.Errorf("got %d version %d, want version 2", r.status, r.version)
			}
			e.held(t, 0)
		})
	}
}

func TestPollIgnoresOtherRecords(t *testing.T) {
	e := newPollEnv(t)
	res := e.get("wait=300ms&after=1")
	e.held(t, 1)
	e.feed.send(t, store.Change{Kind: store.ChangeTicket, ID: "r-2", Version: 7})
	e.feed.send(t, store.Change{Kind: store.ChangeServer, ID: "r-1", Version: 7})
	r := wait(t, res, 5*time.Second)
	if r.version != 1 || r.took < 300*time.Millisecond {
		t.Errorf("answered version %d after %v, want version 1 after the wait", r.version, r.took)
	}
}

func TestPollResyncRereadsAndKeepsWaiting(t *testing.T) {
	e := newPollEnv(t)
	res := e.get("wait=5s&after=1")
	e.held(t, 1)
	e.rec.mu.Lock()
	readsBefore := e.rec.reads
	e.rec.mu.Unlock()
	e.feed.send(t, store.Change{Kind: store.ChangeResync})
	// The resync makes the poll read again; finding no change, it goes
	// on holding, and the next real change answers it.
	e.rec.bump(t, e.feed)
	r := wait(t, res, time.Second)
	if r.version != 2 {
		t.Errorf("version %d, want 2", r.version)
	}
	e.rec.mu.Lock()
	defer e.rec.mu.Unlock()
	if e.rec.reads <= readsBefore {
		t.Error("resync did not make the poll read again")
	}
}

func TestPollStopping(t *testing.T) {
	e := newPollEnv(t)
	res := []<-chan pollResult{e.get("wait=5s&after=1"), e.get("wait=5s")}
	e.held(t, 2)
	close(e.stop)
	for _, ch := range res {
		r := wait(t, ch, time.Second)
		if r.status != http.StatusOK || r.version != 1 {
			t.Errorf("got %d version %d, want the current record", r.status, r.version)
		}
	}
	// Once stopping, a new poll is not held either.
	r := wait(t, e.get("wait=5s&after=1"), time.Second)
	if r.version != 1 {
		t.Errorf("version %d", r.version)
	}
}

func TestPollClientGone(t *testing.T) {
	e := newPollEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/?wait=5s&after=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	e.held(t, 1)
	cancel()
	<-done
	// The handler notices the closed connection and lets go of its waiter.
	e.held(t, 0)
	deadline := time.Now().Add(5 * time.Second)
	for e.poller.Hub.Waiting() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("waiter still registered after the client left")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPollOutlivesServerTimeouts(t *testing.T) {
	// A server's read and write timeouts are sized for quick requests; a
	// held poll must still get its answer when its wait is longer.
	e := newPollEnv(t)
	srv := httptest.NewUnstartedServer(e.srv.Config.Handler)
	srv.Config.ReadTimeout = 100 * time.Millisecond
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	e.srv = srv
	for _, query := range []string{"wait=400ms&after=1", "wait=400ms"} {
		r := wait(t, e.get(query), 5*time.Second)
		if r.status != http.StatusOK || r.version != 1 || r.took < 400*time.Millisecond {
			t.Errorf("%s: %d version %d after %v; want 200 version 1 after the wait", query, r.status, r.version, r.took)
		}
	}
}

func TestPollAnswersFromTheCarriedRecord(t *testing.T) {
	e := newPollEnvWith(t, carrying)
	res := e.get("wait=5s&after=1")
	e.held(t, 1)
	// The store is not changed: a poll that read would find version 1
	// and go on holding.
	e.feed.send(t, carriedChange(2, contracts.StatusMatched))
	r := wait(t, res, time.Second)
	if r.status != http.StatusOK || r.version != 2 || r.doc.Status != contracts.StatusMatched {
		t.Errorf("got %d %+v, want 200 with the carried record, version 2, matched", r.status, r.doc)
	}
	if n := e.rec.readCount(); n != 1 {
		t.Errorf("record read %d times, want once, before the wait", n)
	}
}

func TestPollPassesOverStaleChanges(t *testing.T) {
	e := newPollEnvWith(t, carrying)
	e.rec.version = 3
	res := e.get("wait=300ms&after=3")
	e.held(t, 1)
	// Repeated or late news: no read, no answer.
	e.feed.send(t, carriedChange(3, contracts.StatusMatched))
	e.feed.send(t, carriedChange(2, contracts.StatusMatched))
	e.feed.send(t, store.Change{Kind: store.ChangeTicket, ID: "r-1", Version: 3})
	r := wait(t, res, 5*time.Second)
	if r.version != 3 || r.doc.Status != "" || r.took < 300*time.Millisecond {
		t.Errorf("answered %+v after %v, want the record read, version 3, after the wait", r.doc, r.took)
	}
	if n := e.rec.readCount(); n != 1 {
		t.Errorf("record read %d times, want once, before the wait", n)
	}
}

func TestPollReadsWhenNothingUsableIsCarried(t *testing.T) {
	undecodable := store.CarryEncodedTicket("garbage", func(string) (contracts.Ticket, error) {
		return contracts.Ticket{}, errors.New("bad state")
	})
	for name, c := range map[string]store.Change{
		"nothing carried": {Kind: store.ChangeTicket, ID: "r-1", Version: 2},
		"undecodable":     {Kind: store.ChangeTicket, ID: "r-1", Version: 2, Ticket: undecodable},
		"no version":      {Kind: store.ChangeTicket, ID: "r-1"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newPollEnvWith(t, carrying)
			res := e.get("wait=5s&after=1")
			e.held(t, 1)
			e.rec.mu.Lock()
			e.rec.version = 2
			e.rec.mu.Unlock()
			e.feed.send(t, c)
			r := wait(t, res, time.Second)
			if r.version != 2 || r.doc.Status != "" {
				t.Errorf("answered %+v, want the record read, version 2", r.doc)
			}
			if n := e.rec.readCount(); n != 2 {
				t.Errorf("record read %d times, want twice", n)
			}
		})
	}
}

func TestPollCarriedResyncReads(t *testing.T) {
	e := newPollEnvWith(t, carrying)
	res := e.get("wait=5s&after=1")
	e.held(t, 1)
	e.feed.send(t, store.Change{Kind: store.ChangeResync})
	e.feed.send(t, store.Change{Kind: store.ChangeTicket, ID: "nobody"}) // resync delivered
	deadline := time.Now().Add(5 * time.Second)
	for e.rec.readCount() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("resync did not make the poll read again")
		}
		time.Sleep(time.Millisecond)
	}
	// Finding no change, it holds on, and a carried change answers it.
	e.feed.send(t, carriedChange(2, contracts.StatusCancelled))
	r := wait(t, res, time.Second)
	if r.version != 2 || r.doc.Status != contracts.StatusCancelled {
		t.Errorf("answered %+v, want the carried record", r.doc)
	}
	if n := e.rec.readCount(); n != 2 {
		t.Errorf("record read %d times, want twice: first, and on the resync", n)
	}
}

func TestPollCarriedUntilReady(t *testing.T) {
	e := newPollEnvWith(t, func(rec *record) Source {
		src := carrying(rec)
		src.Ready = func(v any) bool {
			tk, ok := v.(contracts.Ticket)
			return ok && tk.Status == contracts.StatusAssigned
		}
		return src
	})
	res := e.get("wait=5s&after=1")
	e.held(t, 1)
	e.feed.send(t, carriedChange(2, contracts.StatusMatched))
	e.feed.send(t, store.Change{Kind: store.ChangeTicket, ID: "nobody"})
	select {
	case r := <-res:
		t.Fatalf("answered %+v before the record was ready", r.doc)
	case <-time.After(50 * time.Millisecond):
	}
	e.feed.send(t, carriedChange(3, contracts.StatusAssigned))
	r := wait(t, res, time.Second)
	if r.version != 3 || r.doc.Status != contracts.StatusAssigned {
		t.Errorf("answered %+v, want version 3, assigned", r.doc)
	}
	if n := e.rec.readCount(); n != 1 {
		t.Errorf("record read %d times, want once", n)
	}
}

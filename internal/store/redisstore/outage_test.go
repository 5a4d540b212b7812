package redisstore

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/store"
)

// TestUnreachableRedisAnswersErrors runs every kind of call against a
// Redis that is not there, alone and many at once (so that they share
// pipelines), and checks that each answers an error that is not a verdict
// on the record. Before the pipe passed on the pipeline's error, commands
// came back with neither reply nor error: AssignMatch panicked on an empty
// reply, Ticket answered not found and CreateTicket an unexpected reply.
func TestUnreachableRedisAnswersErrors(t *testing.T) {
	ports, err := freeClusterPorts(1) // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	s := New(c, Options{Prefix: "test-outage:"})
	ctx := t.Context()
	now := time.Now()

	calls := map[string]func() error{
		"Ticket": func() error { _, err := s.Ticket(ctx, store.NewID("duel")); return err },
		"CreateTicket": func() error {
			return s.CreateTicket(ctx, contracts.Ticket{
				ID: store.NewID("duel"), Queue: "duel", Status: contracts.StatusSearching, Version: 1,
				CreatedAt: now, UpdatedAt: now, Players: []contracts.Player{{ID: "p-outage", Skill: 1500}},
			}, now.Add(time.Minute))
		},
		"AssignMatch": func() error { _, err := s.AssignMatch(ctx, store.NewID("duel"), now); return err },
		"Match":       func() error { _, err := s.Match(ctx, store.NewID("duel")); return err },
		"Candidates":  func() error { _, err := s.Candidates(ctx, "duel", 1500, 100, 8); return err },
		"Allocations": func() error { _, err := s.Allocations(ctx, "gs-outage"); return err },
		"CancelTicket": func() error {
			_, err := s.CancelTicket(ctx, store.NewID("duel"), now)
			return err
		},
	}
	check := func(name string, err error) {
		t.Helper()
		switch {
		case err == nil:
			t.Errorf("%s with Redis down: no error", name)
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNoCapacity):
			t.Errorf("%s with Redis down: %v, a verdict on a record it never read", name, err)
		}
	}
	for name, call := range calls {
		check(name, call())
	}
	// Nothing was sent, so the front may answer at once that nothing was
	// created.
	if err := calls["CreateTicket"](); !errors.Is(err, store.ErrUnreachable) {
		t.Errorf("CreateTicket with Redis down: %v, want ErrUnreachable", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := map[string][]error{}
	for range 20 {
		for name, call := range calls {
			wg.Go(func() {
				err := call()
				mu.Lock()
				errs[name] = append(errs[name], err)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	for name, es := range errs {
		for _, err := range es {
			check(name+" (concurrent)", err)
		}
	}
}

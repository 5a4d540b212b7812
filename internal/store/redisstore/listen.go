package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/internal/store"
)

const (
	// pingEvery is how long Listen waits in silence before it checks the
	// connection with a PING. A second silence as long means the
	// connection is dead without having said so (a dropped NAT entry, a
	// vanished peer), and Listen subscribes on a new one.
	pingEvery = 15 * time.Second
	// retryMin and retryMax bound the pause between attempts to reach
	// Redis again after the connection failed.
	retryMin = 50 * time.Millisecond
	retryMax = 2 * time.Second
)

var errSilent = errors.New("no answer to ping")

// Listen implements store.Store.
//
// go-redis answers every SUBSCRIBE, the first and those it sends again
// after it reconnects, with a subscription confirmation, which Redis sends
// once the subscription is in place. Listen calls fn with ChangeResync on
// each one, so a waiter that reads again on that call cannot miss a change
// published before it.
func (s *Store) Listen(ctx context.Context, fn func(store.Change)) error {
	var (
		mu      sync.Mutex
		current *redis.PubSub
		stopped bool
	)
	// Receiving blocks on the socket whatever ctx says, so ending ctx
	// closes the subscription under it.
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(closed)
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		if current != nil {
			current.Close()
		}
	})
	defer func() {
		if !stop() {
			<-closed
		}
	}()

	channels := s.channels()
	listening := false
	for {
		ps := s.client.Subscribe(ctx, channels...)
		mu.Lock()
		if stopped {
			mu.Unlock()
			ps.Close()
			return ctx.Err()
		}
		current = ps
		mu.Unlock()

		err := s.receive(ctx, ps, len(channels), fn, &listening)
		ps.Close()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !listening {
			return fmt.Errorf("listening for changes: %w", err)
		}
		// The connection went silent: start over on a new one, whose
		// confirmation brings a resync.
	}
}

// channels are those Listen subscribes to: the server changes, and the
// changes of the tickets this Store's listener watches.
func (s *Store) channels() []string {
	if s.listener == "" {
		return []string{s.channel()}
	}
	return []string{s.channel(), s.listenerChannel(s.listener)}
}

// receive delivers what ps receives until ctx ends, ps fails before it
// ever subscribed, or its connection goes silent.
func (s *Store) receive(ctx context.Context, ps *redis.PubSub, channels int, fn func(store.Change), listening *bool) error {
	pinged := false
	pause := retryMin
	for {
		msg, err := ps.ReceiveTimeout(ctx, s.pingEvery)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if pinged {
					return errSilent
				}
				// A failed write makes go-redis reconnect; the next
				// receive tells.
				_ = ps.Ping(ctx)
				pinged = true
				continue
			}
			if !*listening {
				return err
			}
			// go-redis reconnects and subscribes again on the next
			// receive; pause so that a Redis that is down is not
			// hammered.
			if err := sleep(ctx, pause); err != nil {
				return err
			}
			pause = min(2*pause, retryMax)
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			// One SUBSCRIBE of every channel is confirmed channel by
			// channel; once the last is, all of them are in place.
			if m.Kind == "subscribe" && m.Count == channels {
				*listening = true
				pause = retryMin
				fn(store.Change{Kind: store.ChangeResync})
			}
		case *redis.Message:
			if c, ok := parseChange(m.Payload); ok {
				fn(c)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// parseChange reads "t:<id>:<version>" or "s:<id>:<version>", which a
// ticket's change follows with a space and the ticket's state (stateOf in
// scripts.go). Ids may hold ':' but no space, so the version is what
// follows the last ':' before the first space. The state is carried
// undecoded (store.TicketState): most changes reach processes that have
// no waiter for them, and the one that has decodes it once.
func parseChange(payload string) (store.Change, bool) {
	var kind store.ChangeKind
	switch {
	case strings.HasPrefix(payload, "t:"):
		kind = store.ChangeTicket
	case strings.HasPrefix(payload, "s:"):
		kind = store.ChangeServer
	default:
		return store.Change{}, false
	}
	head, state, carried := strings.Cut(payload[2:], " ")
	i := strings.LastIndexByte(head, ':')
	if i <= 0 {
		return store.Change{}, false
	}
	v, err := strconv.ParseInt(head[i+1:], 10, 64)
	if err != nil {
		return store.Change{}, false
	}
	c := store.Change{Kind: kind, ID: head[:i], Version: v}
	if carried && kind == store.ChangeTicket {
		c.Ticket = store.CarryEncodedTicket(state, decodeTicketState)
	}
	return c, true
}

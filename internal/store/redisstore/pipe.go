package redisstore

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Automatic pipelining.
//
// Under load most of what a round trip costs, on both ends, is the
// system calls and wake-ups around it, not the command. So the Store's
// commands go through a pipe: a command that finds fewer than
// maxInFlight pipelines on their way goes out at once, in a pipeline of
// its own and of any commands waiting; one that finds them all busy waits
// for the next pipeline, which the caller of a finished one sends on its
// way. An idle Store therefore sends each command as it comes, and a busy
// one sends many per round trip. Each caller still waits for its own
// replies, so the commands of one caller keep their order; the commands of
// one call travel together, in the order given (on one server: a cluster
// client sends each node its part).

// maxInFlight bounds the pipelines a Store has on their way at once, and
// maxPipeline the calls in one, so that one slow reply does not hold up
// more callers than that.
const (
	maxInFlight = 2
	maxPipeline = 512
)

type pipe struct {
	client redis.UniversalClient

	mu       sync.Mutex
	waiting  []*piped
	inFlight int
}

// piped is a call waiting in a pipe.
type piped struct {
	cmds []redis.Cmder
	// done receives false once cmds have their replies, or true when the
	// call is to send the next pipeline.
	done chan bool
}

// do sends cmds, in this order and in one pipeline, and waits for their
// replies, which the commands hold; it answers the first command's error.
// The pipeline may carry other callers' commands, so ctx does not cut it
// short; the client's read and write timeouts bound it.
func (p *pipe) do(ctx context.Context, cmds ...redis.Cmder) error {
	c := &piped{cmds: cmds, done: make(chan bool, 1)}
	p.mu.Lock()
	if p.inFlight == maxInFlight {
		p.waiting = append(p.waiting, c)
		p.mu.Unlock()
		if lead := <-c.done; !lead {
			return cmds[0].Err()
		}
		p.mu.Lock() // whoever handed us the lead took c off the list
	} else {
		p.inFlight++
	}
	n := min(len(p.waiting), maxPipeline-1)
	batch := make([]*piped, 0, n+1)
	batch = append(append(batch, c), p.waiting[:n]...)
	p.waiting = p.waiting[n:]
	p.mu.Unlock()

	p.send(context.WithoutCancel(ctx), batch)
	for _, o := range batch {
		if o != c {
			o.done <- false
		}
	}

	p.mu.Lock()
	if len(p.waiting) == 0 {
		p.inFlight--
		p.mu.Unlock()
		return cmds[0].Err()
	}
	// Commands queued while this pipeline was out: the first of them
	// sends them, in the slot this one leaves. Taking it off the list
	// keeps two finishing callers from handing the lead to the same one.
	next := p.waiting[0]
	p.waiting = p.waiting[1:]
	p.mu.Unlock()
	next.done <- true
	return cmds[0].Err()
}

// send runs the commands of batch, one alone or all in one pipeline; each
// command holds its own reply or error. go-redis does not always give each
// command of a pipeline the pipeline's error (not when it gets no
// connection at all), and a command with neither reply nor error would
// read as an empty answer; so a command left without an error gets the
// pipeline's.
func (p *pipe) send(ctx context.Context, batch []*piped) {
	var err error
	if len(batch) == 1 && len(batch[0].cmds) == 1 {
		err = p.client.Process(ctx, batch[0].cmds[0])
	} else {
		_, err = p.client.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for _, c := range batch {
				for _, cmd := range c.cmds {
					_ = pl.Process(ctx, cmd)
				}
			}
			return nil
		})
	}
	if err == nil {
		return
	}
	// A pipeline answers its first command's error when there is one; then
	// every command has its own, and the rest have their replies.
	for _, c := range batch {
		for _, cmd := range c.cmds {
			if cmd.Err() == err {
				return
			}
		}
	}
	for _, c := range batch {
		for _, cmd := range c.cmds {
			if cmd.Err() == nil {
				cmd.SetErr(err)
			}
		}
	}
}

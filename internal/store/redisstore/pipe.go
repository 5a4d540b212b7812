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
// one sends many per round trip. Each caller still waits for its own reply,
// so the commands of one caller keep their order.

// maxInFlight bounds the pipelines a Store has on their way at once, and
// maxPipeline the commands in one, so that one slow reply does not hold up
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

// piped is a command waiting in a pipe.
type piped struct {
	cmd redis.Cmder
	// done receives false once cmd has its reply, or true when the
	// command's caller is to send the next pipeline.
	done chan bool
}

// do sends cmd and waits for its reply, which cmd holds. The pipeline may
// carry other callers' commands, so ctx does not cut it short; the
// client's read and write timeouts bound it.
func (p *pipe) do(ctx context.Context, cmd redis.Cmder) error {
	c := &piped{cmd: cmd, done: make(chan bool, 1)}
	p.mu.Lock()
	if p.inFlight == maxInFlight {
		p.waiting = append(p.waiting, c)
		p.mu.Unlock()
		if lead := <-c.done; !lead {
			return cmd.Err()
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
		return cmd.Err()
	}
	// Commands queued while this pipeline was out: the first of them
	// sends them, in the slot this one leaves. Taking it off the list
	// keeps two finishing callers from handing the lead to the same one.
	next := p.waiting[0]
	p.waiting = p.waiting[1:]
	p.mu.Unlock()
	next.done <- true
	return cmd.Err()
}

// send runs the commands of batch, one alone or all in one pipeline; each
// command holds its own reply or error.
func (p *pipe) send(ctx context.Context, batch []*piped) {
	if len(batch) == 1 {
		_ = p.client.Process(ctx, batch[0].cmd)
		return
	}
	_, _ = p.client.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for _, c := range batch {
			_ = pl.Process(ctx, c.cmd)
		}
		return nil
	})
}

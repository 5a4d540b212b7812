// Package combine runs the work of concurrent callers in batches, without
// a goroutine or a timer of its own: the caller that finds no batch
// running leads, handles the work of every caller waiting at that moment
// as one batch, and hands the lead to a caller that arrived meanwhile. So
// a lone call is handled at once, and under load the callers that arrive
// while one batch runs share the next: one round trip, one message or one
// confirm for many (group commit).
package combine

import "sync"

// Combiner batches the items of concurrent Do calls. The zero value is
// ready to use and takes batches of any size.
type Combiner[T any] struct {
	// Max bounds the items of one batch, the items of one Do call
	// excepted, which are never split; zero means no bound.
	Max int

	mu      sync.Mutex
	waiting []*group[T]
	leading bool // a call is handling a batch, or is about to
}

// group is the items of one Do call.
type group[T any] struct {
	items []T
	// done receives false once the group's batch has finished, or true
	// when the group is to lead the next batch.
	done chan bool
}

// Do handles items in a batch and returns once that batch has finished.
// The leader of a batch calls handle with the batch's items, in the order
// their calls arrived; the next batch starts once handle returns, and the
// function handle answers, if not nil, runs after that, beside the next
// batch: handle does what the next batch must see done (a store's part),
// finish what it need not wait for (a broker's confirm). Outcomes travel
// in the items themselves.
func (c *Combiner[T]) Do(items []T, handle func(batch []T) (finish func())) {
	me := &group[T]{items: items, done: make(chan bool, 1)}
	c.mu.Lock()
	c.waiting = append(c.waiting, me)
	if c.leading {
		c.mu.Unlock()
		if lead := <-me.done; !lead {
			return
		}
		c.mu.Lock()
	}
	c.leading = true
	groups := c.take()
	c.mu.Unlock()

	batch := groups[0].items
	if len(groups) > 1 {
		batch = nil
		for _, g := range groups {
			batch = append(batch, g.items...)
		}
	}
	finish := handle(batch)

	c.mu.Lock()
	if len(c.waiting) == 0 {
		c.leading = false
		c.waiting = nil // let the array go
		c.mu.Unlock()
	} else {
		next := c.waiting[0]
		c.mu.Unlock()
		next.done <- true
	}
	if finish != nil {
		finish()
	}
	for _, g := range groups {
		if g != me {
			g.done <- false
		}
	}
}

// take removes from the waiting groups those of the next batch: the
// first, and as many after it as Max allows. c.mu is held.
func (c *Combiner[T]) take() []*group[T] {
	n, size := 1, len(c.waiting[0].items)
	for n < len(c.waiting) {
		more := len(c.waiting[n].items)
		if c.Max > 0 && size+more > c.Max {
			break
		}
		size += more
		n++
	}
	groups := c.waiting[:n:n]
	c.waiting = c.waiting[n:]
	return groups
}

// Waiting reports how many calls wait for a batch to start.
func (c *Combiner[T]) Waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiting)
}

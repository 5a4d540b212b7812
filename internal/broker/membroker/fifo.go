package membroker

// fifo is a growable ring buffer. A queue's backlog can swing between empty
// and tens of thousands of messages many times a second, so it reuses its
// array instead of reslicing a slice that keeps growing at one end.
type fifo[T any] struct {
	buf  []T
	head int
	n    int
}

func (f *fifo[T]) len() int { return f.n }

func (f *fifo[T]) grow() {
	if f.n < len(f.buf) {
		return
	}
	buf := make([]T, max(16, 2*len(f.buf)))
	for i := range f.n {
		buf[i] = f.buf[(f.head+i)%len(f.buf)]
	}
	f.buf, f.head = buf, 0
}

// push appends v at the tail.
func (f *fifo[T]) push(v T) {
	f.grow()
	f.buf[(f.head+f.n)%len(f.buf)] = v
	f.n++
}

// pushFront puts v at the head, to be popped next.
func (f *fifo[T]) pushFront(v T) {
	f.grow()
	f.head = (f.head - 1 + len(f.buf)) % len(f.buf)
	f.buf[f.head] = v
	f.n++
}

// peek returns the head without removing it; f must not be empty.
func (f *fifo[T]) peek() T { return f.buf[f.head] }

// pop removes and returns the head; f must not be empty.
func (f *fifo[T]) pop() T {
	var zero T
	v := f.buf[f.head]
	f.buf[f.head] = zero // let the body be collected
	f.head = (f.head + 1) % len(f.buf)
	f.n--
	return v
}

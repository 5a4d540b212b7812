package combine_test

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/quickmatch/quickmatch/internal/combine"
)

// TestEveryItemOnceAndBatchesApart runs many concurrent calls: every item
// is handled exactly once, no two handles overlap, no batch is bigger than
// Max, and every call returns only after its batch's finish.
func TestEveryItemOnceAndBatchesApart(t *testing.T) {
	for _, tt := range []struct {
		name string
		max  int
		per  int // items per call
	}{
		{"unbounded", 0, 1},
		{"bounded", 5, 1},
		{"groups bigger than the rest of a batch", 5, 3},
		{"a group bigger than max", 2, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const calls = 200
			c := combine.Combiner[*item]{Max: tt.max}
			var (
				inside  atomic.Int32
				batches atomic.Int32
				biggest atomic.Int32
			)
			handle := func(batch []*item) func() {
				if inside.Add(1) != 1 {
					t.Error("two batches handled at once")
				}
				defer inside.Add(-1)
				batches.Add(1)
				if n := int32(len(batch)); n > biggest.Load() {
					biggest.Store(n)
				}
				for _, it := range batch {
					it.handled.Add(1)
				}
				return func() {
					for _, it := range batch {
						it.finished.Store(true)
					}
				}
			}
			var wg sync.WaitGroup
			all := make([][]*item, calls)
			for i := range calls {
				all[i] = make([]*item, tt.per)
				for j := range all[i] {
					all[i][j] = &item{}
				}
				wg.Go(func() {
					c.Do(all[i], handle)
					for _, it := range all[i] {
						if !it.finished.Load() {
							t.Error("Do returned before its batch finished")
						}
					}
				})
			}
			wg.Wait()
			for _, items := range all {
				for _, it := range items {
					if n := it.handled.Load(); n != 1 {
						t.Fatalf("an item was handled %d times", n)
					}
				}
			}
			if limit := max(tt.max, tt.per); tt.max > 0 && int(biggest.Load()) > limit {
				t.Errorf("a batch of %d items, want at most %d", biggest.Load(), limit)
			}
			t.Logf("%d calls in %d batches", calls, batches.Load())
		})
	}
}

type item struct {
	handled  atomic.Int32
	finished atomic.Bool
}

// TestCallsWaitingShareTheNextBatch holds a batch while more calls
// arrive: they are handled together, as one batch, once it returns.
func TestCallsWaitingShareTheNextBatch(t *testing.T) {
	var c combine.Combiner[int]
	entered, release := make(chan struct{}), make(chan struct{})
	var sizes []int
	var mu sync.Mutex
	handle := func(batch []int) func() {
		mu.Lock()
		sizes = append(sizes, len(batch))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			close(entered)
			<-release
		}
		return nil
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.Do([]int{0}, handle) })
	<-entered
	var arrived sync.WaitGroup
	for i := 1; i <= 10; i++ {
		arrived.Add(1)
		wg.Go(func() {
			arrived.Done()
			c.Do([]int{i}, handle)
		})
	}
	arrived.Wait()
	// The calls have started; wait until all ten are queued behind the
	// first batch.
	for c.Waiting() < 10 {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != 10 {
		t.Errorf("batches of %v, want [1 10]", sizes)
	}
}

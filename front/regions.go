package front

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quickmatch/quickmatch/internal/httpapi"
)

// regionRefresh is how often at most a front reads the registered regions
// again when a ticket names one it does not know: often enough that a
// region is taken within a second of its first server, and seldom enough
// that tickets naming made-up regions cost the store next to nothing.
const regionRefresh = time.Second

// regionSource is where the regions of registered servers are read.
type regionSource interface {
	Regions(ctx context.Context) ([]string, error)
}

// regions knows the regions a deployment serves: the configured ones and
// those game servers have registered in. A ticket may name only these, so
// that what clients send cannot grow the names stored or the metric series.
type regions struct {
	configured map[string]bool
	source     regionSource
	now        func() time.Time

	registered atomic.Pointer[map[string]bool]
	mu         sync.Mutex // held while reading the source
	readAt     time.Time
}

func newRegions(configured []string, source regionSource, now func() time.Time) *regions {
	k := &regions{configured: make(map[string]bool, len(configured)), source: source, now: now}
	for _, r := range configured {
		k.configured[r] = true
	}
	k.registered.Store(&map[string]bool{})
	return k
}

// check answers nil if the deployment serves every region names lists, and
// an ErrUnknownRegion naming the first it does not.
func (k *regions) check(ctx context.Context, names map[string]float64) error {
	for name := range names {
		ok, err := k.known(ctx, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: latencies name %q, which no game server of this deployment serves", httpapi.ErrUnknownRegion, name)
		}
	}
	return nil
}

func (k *regions) known(ctx context.Context, name string) (bool, error) {
	if k.configured[name] || (*k.registered.Load())[name] {
		return true, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if (*k.registered.Load())[name] {
		return true, nil // read while this call waited
	}
	if now := k.now(); now.Sub(k.readAt) >= regionRefresh || now.Before(k.readAt) {
		list, err := k.source.Regions(ctx)
		if err != nil {
			return false, storeErr("reading the registered regions", err)
		}
		read := make(map[string]bool, len(list))
		for _, r := range list {
			read[r] = true
		}
		k.registered.Store(&read)
		k.readAt = now
	}
	return (*k.registered.Load())[name], nil
}

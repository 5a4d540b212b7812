package membroker

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/quickmatch/quickmatch/internal/broker/brokertest"
)

func newTestBroker(tb testing.TB) *Broker {
	tb.Helper()
	b := New(slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return b
}

// testBroker is a Broker that the conformance suite can inspect.
type testBroker struct{ *Broker }

// Ready returns how many messages of queue name wait for a consumer.
func (b testBroker) Ready(ctx context.Context, name string) (int, error) {
	q, err := b.queue(name)
	if err != nil {
		return 0, fmt.Errorf("inspecting %s: %w", name, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ready.len(), nil
}

func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) brokertest.Broker { return testBroker{newTestBroker(t)} })
}

func BenchmarkPublishConsume(b *testing.B) {
	brokertest.Bench(b, newTestBroker(b))
}

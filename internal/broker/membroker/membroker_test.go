package membroker

import (
	"log/slog"
	"testing"

	"github.com/quickmatch/quickmatch/internal/broker"
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

func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) broker.Broker { return newTestBroker(t) })
}

func BenchmarkPublishConsume(b *testing.B) {
	brokertest.Bench(b, newTestBroker(b))
}

package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/google/uuid"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/internal/broker"
	"github.com/quickmatch/quickmatch/internal/broker/membroker"
	"github.com/quickmatch/quickmatch/internal/broker/rabbit"
	"github.com/quickmatch/quickmatch/internal/store"
	"github.com/quickmatch/quickmatch/internal/store/memstore"
	"github.com/quickmatch/quickmatch/internal/store/redisstore"
)

// Deps are the broker and the store a process works through.
type Deps struct {
	Broker broker.Broker
	Store  store.Store
	close  func() error
}

// Close releases the connections.
func (d *Deps) Close() error { return d.close() }

// Connect opens the real broker and store when they are configured, or the
// in-memory twins for the embedded mode. Split deployables refuse the
// embedded mode: in-memory state cannot be shared between processes.
func Connect(ctx context.Context, cfg *Config, role string, log *slog.Logger) (*Deps, error) {
	if cfg.Embedded() {
		if role != All.String() {
			return nil, fmt.Errorf("the %s alone needs MM_AMQP_URL and MM_REDIS_ADDR; for one process with no external service run services/matchmaker", role)
		}
		b := membroker.New(log)
		return &Deps{Broker: b, Store: memstore.New(memstore.Options{Retention: cfg.Retention}), close: b.Close}, nil
	}
	host, _ := os.Hostname()
	b, err := rabbit.Dial(ctx, cfg.AMQPURL, rabbit.Options{
		Prefix:         cfg.AMQPPrefix,
		QueueType:      cfg.QueueType,
		ConnectionName: fmt.Sprintf("quickmatch-%s@%s:%d prefix=%s", role, host, os.Getpid(), cfg.AMQPPrefix),
	}, log)
	if err != nil {
		return nil, fmt.Errorf("connecting to RabbitMQ: %w", err)
	}
	rdb := redis.NewClient(&redis.Options{
		Addr:     cfg.RedisAddr,
		Password: cfg.RedisPassword,
		DB:       cfg.RedisDB,
		PoolSize: 64,
	})
	if cfg.Tracing {
		if err := redisotel.InstrumentTracing(rdb); err != nil {
			b.Close()
			rdb.Close()
			return nil, fmt.Errorf("tracing Redis calls: %w", err)
		}
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		b.Close()
		rdb.Close()
		return nil, fmt.Errorf("connecting to Redis at %s: %w", cfg.RedisAddr, err)
	}
	opts := redisstore.Options{Prefix: cfg.RedisPrefix, Retention: cfg.Retention}
	if role == Front.String() || role == All.String() {
		// The changes of the tickets whose polls this process holds are
		// sent to it alone, under a name no other process has.
		opts.Listener = uuid.NewString()
	}
	st := redisstore.New(rdb, opts)
	return &Deps{Broker: b, Store: st, close: func() error { return errors.Join(b.Close(), rdb.Close()) }}, nil
}

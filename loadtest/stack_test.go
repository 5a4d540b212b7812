package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/testenv"
	"github.com/quickmatch/quickmatch/services"
)

// startApp runs one process of the suite inside the test process, with the
// configuration the MM_* environment gives, and returns its base URL.
func startApp(tb testing.TB, roles services.Role) string {
	tb.Helper()
	cfg, err := services.LoadConfig()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := services.New(ctx, cfg, roles, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("%s: %v", roles, err)
			}
		case <-time.After(30 * time.Second):
			tb.Errorf("the %s did not stop within 30 s", roles)
		}
	})
	return "http://" + app.Addr()
}

// startEmbedded runs the embedded matchmaker in the test process.
func startEmbedded(tb testing.TB) string {
	tb.Helper()
	tb.Setenv("MM_HTTP_ADDR", "127.0.0.1:0")
	tb.Setenv("MM_AMQP_URL", "")
	tb.Setenv("MM_REDIS_ADDR", "")
	withAuth(tb)
	return startApp(tb, services.All)
}

// startDistributed runs a front, an assigner and two matchers in the test
// process, on the real RabbitMQ and Redis under a prefix of their own that
// is deleted afterwards, and returns the front's and the assigner's URLs.
func startDistributed(tb testing.TB) (front, assigner string) {
	tb.Helper()
	amqpURL, redisAddr, prefix := testenv.AMQPURL(tb), testenv.RedisAddr(tb), testenv.Prefix(tb)
	tb.Setenv("MM_HTTP_ADDR", "127.0.0.1:0")
	tb.Setenv("MM_AMQP_URL", amqpURL)
	tb.Setenv("MM_REDIS_ADDR", redisAddr)
	tb.Setenv("MM_AMQP_PREFIX", prefix)
	tb.Setenv("MM_REDIS_PREFIX", prefix)
	withAuth(tb)
	// Registered first, so that it runs after every app has stopped.
	tb.Cleanup(func() { deleteBackends(tb, amqpURL, redisAddr, prefix) })
	front = startApp(tb, services.Front)
	assigner = startApp(tb, services.Assigner)
	startApp(tb, services.Matcher)
	startApp(tb, services.Matcher)
	return front, assigner
}

// deleteBackends removes the keys and queues under prefix.
func deleteBackends(tb testing.TB, amqpURL, redisAddr, prefix string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Unlink(ctx, iter.Val())
	}
	if err := iter.Err(); err != nil {
		tb.Logf("cleanup: %v", err)
	}
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		tb.Logf("cleanup: %v", err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		tb.Logf("cleanup: %v", err)
		return
	}
	for _, n := range []string{contracts.MatchQueue, contracts.DeadLetterQueue, contracts.TicketQueue("duel")} {
		for _, q := range []string{prefix + n, prefix + n + contracts.RetrySuffix} {
			if _, err := ch.QueueDelete(q, false, false, false); err != nil {
				// A failed delete closes the channel; open another.
				if ch, err = conn.Channel(); err != nil {
					tb.Logf("cleanup: %v", err)
					return
				}
			}
		}
	}
}

// withAuth turns auth on for the stacks a test starts, with a secret the
// load tester reads from the same variable to mint its tokens: the runs of
// these tests are authenticated as a studio's would be.
func withAuth(tb testing.TB) {
	tb.Helper()
	tb.Setenv("MM_AUTH", "")
	tb.Setenv("MM_AUTH_HS256_SECRET", "loadtest-secret-"+testenv.Prefix(tb))
	// Every simulated client comes from loopback; their failures are
	// the tests' business, not a limit's.
	tb.Setenv("MM_AUTH_FAILURE_RATE", "0")
}

package services

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/quickmatch/quickmatch/internal/telemetry"
)

// Main runs a process with the given roles until SIGINT or SIGTERM, and
// returns its exit code.
func Main(roles Role) int {
	cfg, err := LoadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel})).With("service", roles.String())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	on, flush, err := telemetry.Setup(ctx, "quickmatch-"+roles.String())
	if err != nil {
		log.Error("starting", "err", err)
		return 1
	}
	cfg.Tracing = on
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		flush(ctx)
	}()
	app, err := New(ctx, cfg, roles, log)
	if err != nil {
		log.Error("starting", "err", err)
		return 1
	}
	if err := app.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// Package services is what every deployable stands on: configuration from
// the environment, the connection to the broker and the store (real or
// in-memory), the HTTP server with its health and metrics endpoints, and the
// ordered start and shutdown of the front, matcher and assigner components.
// The mains under services/ only pick which components to run.
package services

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/queues"
)

// Config is read from MM_* environment variables; README.md lists them all.
// The defaults run the embedded mode on a laptop.
type Config struct {
	HTTPAddr string     `envconfig:"HTTP_ADDR" default:"127.0.0.1:8080"`
	LogLevel slog.Level `envconfig:"LOG_LEVEL" default:"info"`

	AMQPURL    string `envconfig:"AMQP_URL"`
	AMQPPrefix string `envconfig:"AMQP_PREFIX" default:"mm."`
	QueueType  string `envconfig:"QUEUE_TYPE" default:"classic"`

	RedisAddr     string `envconfig:"REDIS_ADDR"`
	RedisPassword string `envconfig:"REDIS_PASSWORD"`
	RedisDB       int    `envconfig:"REDIS_DB" default:"0"`
	RedisPrefix   string `envconfig:"REDIS_PREFIX" default:"mm:"`

	PollMax          time.Duration `envconfig:"POLL_MAX" default:"60s"`
	MaxCreates       int           `envconfig:"MAX_CREATES" default:"512"`
	ServerTTL        time.Duration `envconfig:"SERVER_TTL" default:"15s"`
	Retention        time.Duration `envconfig:"RETENTION" default:"1h"`
	AssignRetryDelay time.Duration `envconfig:"ASSIGN_RETRY_DELAY" default:"500ms"`
	ReapInterval     time.Duration `envconfig:"REAP_INTERVAL" default:"1s"`
	ReapGrace        time.Duration `envconfig:"REAP_GRACE" default:"5s"`
	OrphanAfter      time.Duration `envconfig:"ORPHAN_AFTER" default:"5s"`

	MatcherPrefetch  int `envconfig:"MATCHER_PREFETCH" default:"512"`
	MatcherWorkers   int `envconfig:"MATCHER_WORKERS" default:"512"`
	AssignerPrefetch int `envconfig:"ASSIGNER_PREFETCH" default:"256"`
	AssignerWorkers  int `envconfig:"ASSIGNER_WORKERS" default:"256"`

	QueuesFile string `envconfig:"QUEUES_FILE"`

	// Auth (README "Security"): off only when MM_AUTH=off, or in the
	// embedded mode with no key and a loopback address.
	Auth            string        `envconfig:"AUTH"`
	AuthHS256Secret string        `envconfig:"AUTH_HS256_SECRET"`
	AuthJWKSFile    string        `envconfig:"AUTH_JWKS_FILE"`
	AuthJWKSURL     string        `envconfig:"AUTH_JWKS_URL"`
	AuthIssuer      string        `envconfig:"AUTH_ISSUER"`
	AuthAudience    string        `envconfig:"AUTH_AUDIENCE"`
	AuthLeeway      time.Duration `envconfig:"AUTH_LEEWAY" default:"30s"`
	// AuthFailureRate and AuthFailureBurst limit each client address's
	// failed authentications, per second.
	AuthFailureRate  float64 `envconfig:"AUTH_FAILURE_RATE" default:"5"`
	AuthFailureBurst int     `envconfig:"AUTH_FAILURE_BURST" default:"20"`
	// CreateRate and CreateBurst limit each player's ticket creates, per
	// second; ServiceCreateRate and ServiceCreateBurst each service
	// principal's (0: no limit).
	CreateRate         float64 `envconfig:"CREATE_RATE" default:"0.5"`
	CreateBurst        int     `envconfig:"CREATE_BURST" default:"5"`
	ServiceCreateRate  float64 `envconfig:"SERVICE_CREATE_RATE" default:"0"`
	ServiceCreateBurst int     `envconfig:"SERVICE_CREATE_BURST" default:"1000"`
	// ExplainRate and ExplainBurst limit each player's explanations, per
	// second (0: no limit).
	ExplainRate  float64 `envconfig:"EXPLAIN_RATE" default:"1"`
	ExplainBurst int     `envconfig:"EXPLAIN_BURST" default:"5"`
	// Regions are the regions tickets may name besides those game servers
	// have registered in.
	Regions []string `envconfig:"REGIONS"`

	DrainDelay      time.Duration `envconfig:"DRAIN_DELAY" default:"0s"`
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"20s"`

	// Queues are the matchmaking queues: those of QueuesFile, or the
	// built-in duel when it is empty.
	Queues *queues.Set `ignored:"true"`
	// Tracing instruments HTTP, messages and Redis for OpenTelemetry; Main
	// sets it when OTEL_EXPORTER_OTLP_ENDPOINT is (package telemetry).
	Tracing bool `ignored:"true"`
}

// LoadConfig reads the configuration from the environment.
func LoadConfig() (Config, error) {
	var cfg Config
	if err := envconfig.Process("MM", &cfg); err != nil {
		return Config{}, fmt.Errorf("reading configuration: %w", err)
	}
	if err := cfg.check(); err != nil {
		return Config{}, err
	}
	if cfg.QueuesFile != "" {
		set, err := queues.LoadFile(cfg.QueuesFile)
		if err != nil {
			return Config{}, err
		}
		cfg.Queues = set
	}
	return cfg, nil
}

// Embedded reports whether the process runs with the in-memory broker and
// store because no external one is configured.
func (c *Config) Embedded() bool { return c.AMQPURL == "" && c.RedisAddr == "" }

func (c *Config) check() error {
	switch {
	case (c.AMQPURL == "") != (c.RedisAddr == ""):
		return fmt.Errorf("set both MM_AMQP_URL and MM_REDIS_ADDR for the distributed mode, or neither for the embedded mode")
	case c.QueueType != "classic" && c.QueueType != "quorum":
		return fmt.Errorf("MM_QUEUE_TYPE must be classic or quorum, not %q", c.QueueType)
	case c.PollMax <= 0 || c.ServerTTL <= 0 || c.Retention <= 0 || c.AssignRetryDelay <= 0 ||
		c.ReapInterval <= 0 || c.ShutdownTimeout <= 0:
		return fmt.Errorf("MM_POLL_MAX, MM_SERVER_TTL, MM_RETENTION, MM_ASSIGN_RETRY_DELAY, MM_REAP_INTERVAL and MM_SHUTDOWN_TIMEOUT must be positive")
	case c.OrphanAfter < 0:
		return fmt.Errorf("MM_ORPHAN_AFTER must not be negative")
	case c.MaxCreates < 0:
		return fmt.Errorf("MM_MAX_CREATES must not be negative")
	case c.MatcherPrefetch < 1 || c.MatcherWorkers < 1 || c.AssignerPrefetch < 1 || c.AssignerWorkers < 1:
		return fmt.Errorf("MM_*_PREFETCH and MM_*_WORKERS must be at least 1")
	case c.Auth != "" && c.Auth != "on" && c.Auth != "off":
		return fmt.Errorf("MM_AUTH must be on, off or empty, not %q", c.Auth)
	case c.AuthLeeway < 0 || c.AuthFailureRate < 0 || c.CreateRate < 0 || c.ServiceCreateRate < 0 || c.ExplainRate < 0:
		return fmt.Errorf("MM_AUTH_LEEWAY, MM_AUTH_FAILURE_RATE, MM_CREATE_RATE, MM_SERVICE_CREATE_RATE and MM_EXPLAIN_RATE must not be negative")
	case c.AuthFailureBurst < 1 || c.CreateBurst < 1 || c.ServiceCreateBurst < 1 || c.ExplainBurst < 1:
		return fmt.Errorf("MM_AUTH_FAILURE_BURST, MM_CREATE_BURST, MM_SERVICE_CREATE_BURST and MM_EXPLAIN_BURST must be at least 1")
	}
	for _, r := range c.Regions {
		if err := contracts.CheckRegion(r); err != nil {
			return fmt.Errorf("MM_REGIONS: %w", err)
		}
	}
	return nil
}

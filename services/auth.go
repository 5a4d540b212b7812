package services

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/quickmatch/quickmatch/internal/auth"
	"github.com/quickmatch/quickmatch/internal/httpapi"
)

// limiterKeys bounds the principals and addresses whose buckets a process
// remembers: a bucket left alone refills, so forgetting it costs nothing.
const limiterKeys = 100_000

// authConfig is the verifier's part of the configuration.
func (c *Config) authConfig(log *slog.Logger) auth.Config {
	return auth.Config{
		HS256Secret: []byte(c.AuthHS256Secret),
		JWKSFile:    c.AuthJWKSFile,
		JWKSURL:     c.AuthJWKSURL,
		Issuer:      c.AuthIssuer,
		Audience:    c.AuthAudience,
		Leeway:      c.AuthLeeway,
		Log:         log,
	}
}

// newAuthenticator decides, by the rules of the README's "Security", whether
// requests are authenticated, and builds the Authenticator that says so. The
// distributed services refuse to start without a key unless told MM_AUTH=off;
// the embedded matchmaker without one serves loopback only, with a warning.
// A JWKS URL is refreshed until ctx ends.
func newAuthenticator(ctx context.Context, cfg *Config, roles Role, log *slog.Logger) (*httpapi.Authenticator, error) {
	ac := cfg.authConfig(log)
	keys := ac.Configured()
	switch {
	case cfg.Auth == "off" && keys:
		return nil, fmt.Errorf("MM_AUTH=off, but keys are configured: unset one or the other")
	case cfg.Auth == "off":
		log.Warn("authentication is off (MM_AUTH=off): anyone who reaches this process may act as any player, server or service")
		return httpapi.Open(), nil
	case !keys && cfg.Auth == "" && cfg.Embedded():
		if !loopback(cfg.HTTPAddr) {
			return nil, fmt.Errorf("the embedded matchmaker without keys serves loopback only, not %s: configure MM_AUTH_HS256_SECRET, MM_AUTH_JWKS_FILE or MM_AUTH_JWKS_URL, or set MM_AUTH=off", cfg.HTTPAddr)
		}
		log.Warn("authentication is off: no key is configured, so this embedded matchmaker serves loopback only", "addr", cfg.HTTPAddr)
		return httpapi.Open(), nil
	case !keys:
		return nil, fmt.Errorf("the %s needs keys to verify tokens: configure MM_AUTH_HS256_SECRET, MM_AUTH_JWKS_FILE or MM_AUTH_JWKS_URL, or set MM_AUTH=off", roles)
	}
	if roles&(Front|Assigner) == 0 {
		return httpapi.Open(), nil // a matcher alone serves no API
	}
	v, err := auth.NewVerifier(ctx, ac)
	if err != nil {
		return nil, fmt.Errorf("setting up authentication: %w", err)
	}
	var failures *auth.Limiter
	if cfg.AuthFailureRate > 0 {
		failures = auth.NewLimiter(cfg.AuthFailureRate, cfg.AuthFailureBurst, limiterKeys)
	}
	return httpapi.NewAuthenticator(v, failures, log), nil
}

// createLimiter is a per-principal limiter at rate per second, none if 0.
func createLimiter(rate float64, burst int) *auth.Limiter {
	if rate == 0 {
		return nil
	}
	return auth.NewLimiter(rate, burst, limiterKeys)
}

// loopback reports whether addr listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

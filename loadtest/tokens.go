package main

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenLife is how long the tokens the load tester mints stay valid: past
// any run's length, so that none is minted again mid-run.
const tokenLife = 24 * time.Hour

// tokens mints the bearer tokens of a run against a suite with auth on, as
// a studio's backend would: one service token for every ticket call (the
// backend queues players for them), and a server token per game server,
// which is the only credential the assigner takes for it. Issuer and
// audience are those the suite checks (MM_AUTH_ISSUER, MM_AUTH_AUDIENCE).
type tokens struct {
	secret  []byte
	claims  jwt.MapClaims // iss, aud, exp of every token
	service string

	mu      sync.Mutex
	servers map[string]string
}

func newTokens(secret string, now time.Time) (*tokens, error) {
	t := &tokens{secret: []byte(secret), claims: jwt.MapClaims{"exp": now.Add(tokenLife).Unix()}, servers: map[string]string{}}
	if v := os.Getenv("MM_AUTH_ISSUER"); v != "" {
		t.claims["iss"] = v
	}
	if v := os.Getenv("MM_AUTH_AUDIENCE"); v != "" {
		t.claims["aud"] = v
	}
	var err error
	if t.service, err = t.mint("loadtest", "service"); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *tokens) mint(sub, role string) (string, error) {
	c := jwt.MapClaims{"sub": sub, "role": role}
	for k, v := range t.claims {
		c[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.secret)
	if err != nil {
		return "", fmt.Errorf("minting a token for %s: %w", sub, err)
	}
	return s, nil
}

// server is the token of game server id, minted on its first use.
func (t *tokens) server(id string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tok, ok := t.servers[id]
	if !ok {
		var err error
		if tok, err = t.mint(id, "server"); err != nil {
			return "", err
		}
		t.servers[id] = tok
	}
	return tok, nil
}

// authenticate makes c send tokens minted with secret; an empty secret
// leaves its requests without.
func (c *Client) authenticate(secret string) error {
	if secret == "" {
		return nil
	}
	t, err := newTokens(secret, time.Now())
	if err != nil {
		return err
	}
	c.tokens = t
	return nil
}

// Command mint prints an HS256 token for the suite, signed with
// MM_AUTH_HS256_SECRET, as a studio's backend would mint one: for trying the
// APIs with curl, and for scripts. Issuer and audience are those of
// MM_AUTH_ISSUER and MM_AUTH_AUDIENCE, when set.
//
//	go run ./loadtest/mint -sub p-1 -skill 1520
//	go run ./loadtest/mint -sub gs-1 -role server
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func main() {
	sub := flag.String("sub", "", "the principal: a player id, a server id or a service name")
	role := flag.String("role", "player", "player, server or service")
	skill := flag.String("skill", "", `the trusted skill: a number, or JSON such as {"duel": 1520}`)
	party := flag.String("party", "", `a player's party, JSON such as [{"id": "p-2", "skill": 1490}]`)
	ttl := flag.Duration("ttl", time.Hour, "how long the token is valid")
	flag.Parse()
	if err := run(*sub, *role, *skill, *party, *ttl); err != nil {
		fmt.Fprintln(os.Stderr, "mint:", err)
		os.Exit(2)
	}
}

func run(sub, role, skill, party string, ttl time.Duration) error {
	secret := os.Getenv("MM_AUTH_HS256_SECRET")
	if secret == "" || sub == "" {
		return fmt.Errorf("set MM_AUTH_HS256_SECRET and -sub")
	}
	now := time.Now()
	claims := jwt.MapClaims{"sub": sub, "role": role, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	if v := os.Getenv("MM_AUTH_ISSUER"); v != "" {
		claims["iss"] = v
	}
	if v := os.Getenv("MM_AUTH_AUDIENCE"); v != "" {
		claims["aud"] = v
	}
	for name, raw := range map[string]string{"skill": skill, "party": party} {
		if raw == "" {
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			return fmt.Errorf("-%s is not JSON: %w", name, err)
		}
		claims[name] = v
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		return err
	}
	fmt.Println(token)
	return nil
}

// Package auth verifies the JWTs that players, game servers and the studio's
// backend present, and says who the caller is and what it may claim.
//
// A token is a compact JWT carried as "Authorization: Bearer <token>". It is
// verified with the keys the deployment configures (an HS256 secret, public
// keys from a JWKS file or URL, or both) and its claims become a
// [Principal]: sub is who the caller is, role what kind of caller it is, and
// skill and party what a player may claim for itself and for the players it
// queues with.
package auth

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
)

// Role is the kind of caller a token speaks for.
type Role string

// The roles a token may carry. A token without a role is a player's.
const (
	RolePlayer  Role = "player"
	RoleServer  Role = "server"
	RoleService Role = "service"
)

// ErrInvalidToken: the request carries no usable token. Every verification
// failure wraps it (errors.Is), with a short lower-case reason safe to show a
// client, such as "token expired", "unknown key id" or "signature invalid";
// a reason never holds key material.
var ErrInvalidToken = errors.New("invalid token")

// invalid is the error of a token refused for reason.
func invalid(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, reason)
}

// Skill is the skill a token claims: a single number for every queue, or a
// number for each of some queues. The zero Skill claims nothing.
type Skill struct {
	one     float64
	hasOne  bool
	byQueue map[string]float64 // read-only once built: copies of a Skill share it
}

// SkillOf is the Skill of a single number, for every queue.
func SkillOf(v float64) Skill { return Skill{one: v, hasOne: true} }

// SkillByQueue is the Skill of a number for each queue of m.
func SkillByQueue(m map[string]float64) Skill {
	if len(m) == 0 {
		return Skill{}
	}
	return Skill{byQueue: maps.Clone(m)}
}

// For reports the skill the token gives for queue: the single number, or the
// queue's entry.
func (s Skill) For(queue string) (float64, bool) {
	if s.hasOne {
		return s.one, true
	}
	v, ok := s.byQueue[queue]
	return v, ok
}

// Member is a player of a party that a player's token lists, with the skill
// the token claims for it (the zero Skill when it claims none).
type Member struct {
	ID    string
	Skill Skill
}

// Principal is the caller a verified token speaks for.
type Principal struct {
	// Subject is the token's sub: a player id, a server id or a service
	// name, by Role.
	Subject string
	Role    Role
	// Skill is what a player's token claims as its skill.
	Skill Skill
	// Party is the other players a player's token may queue with.
	Party []Member
}

// Member reports the claim of the player id: the principal itself (its own
// Skill) or one of its party; ok is false otherwise, and always for a
// principal that is not a player, since only a player speaks for players.
func (p Principal) Member(id string) (Skill, bool) {
	if p.Role != RolePlayer || id == "" {
		return Skill{}, false
	}
	if id == p.Subject {
		return p.Skill, true
	}
	for _, m := range p.Party {
		if m.ID == id {
			return m.Skill, true
		}
	}
	return Skill{}, false
}

// BearerToken extracts the token of an Authorization header value:
// "Bearer <token>", the scheme in any case (RFC 7235 section 2.1). An empty
// value, another scheme or no token is an error wrapping ErrInvalidToken.
func BearerToken(header string) (string, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return "", invalid("missing bearer token")
	}
	scheme, token, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", invalid("authorization scheme is not bearer")
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return "", invalid("missing bearer token")
	}
	if strings.ContainsAny(token, " \t") {
		return "", invalid("malformed token")
	}
	return token, nil
}

type principalKey struct{}

// NewContext returns a copy of ctx that carries p, the principal of the
// request ctx belongs to.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal NewContext put in ctx, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

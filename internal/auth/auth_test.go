package auth_test

import (
	"context"
	"errors"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/quickmatch/quickmatch/internal/auth"
)

// skillWant is what Skill.For should say for a queue.
type skillWant struct {
	queue string
	v     float64
	ok    bool
}

func checkSkill(t *testing.T, what string, s auth.Skill, wants []skillWant) {
	t.Helper()
	for _, w := range wants {
		v, ok := s.For(w.queue)
		if v != w.v || ok != w.ok {
			t.Errorf("%s.For(%q) = %v, %v; want %v, %v", what, w.queue, v, ok, w.v, w.ok)
		}
	}
}

func TestClaims(t *testing.T) {
	mine, _ := testKeys(t)
	v := verifiers(t)["all"]
	type memberWant struct {
		id     string
		ok     bool
		skills []skillWant
	}
	for _, tc := range []struct {
		name    string
		claims  jwt.MapClaims
		role    auth.Role
		skill   []skillWant
		party   int
		members []memberWant
	}{
		{
			name:   "no skill",
			claims: claims(),
			role:   auth.RolePlayer,
			skill:  []skillWant{{"duel", 0, false}, {"", 0, false}},
			members: []memberWant{
				{id: "p-1", ok: true, skills: []skillWant{{"duel", 0, false}}},
				{id: "p-2", ok: false},
				{id: "", ok: false},
			},
		},
		{
			name:   "skill null",
			claims: claims("skill", nil, "party", nil),
			role:   auth.RolePlayer,
			skill:  []skillWant{{"duel", 0, false}},
		},
		{
			name:   "skill a number",
			claims: claims("skill", 1520.5),
			role:   auth.RolePlayer,
			skill:  []skillWant{{"duel", 1520.5, true}, {"5v5", 1520.5, true}, {"", 1520.5, true}},
		},
		{
			name:   "skill zero",
			claims: claims("skill", 0),
			role:   auth.RolePlayer,
			skill:  []skillWant{{"duel", 0, true}},
		},
		{
			name:   "skill negative at the limit",
			claims: claims("skill", -1e9),
			role:   auth.RolePlayer,
			skill:  []skillWant{{"duel", -1e9, true}},
		},
		{
			name:   "skill by queue",
			claims: claims("skill", map[string]any{"duel": 1500, "5v5": 1210.25}),
			role:   auth.RolePlayer,
			skill:  []skillWant{{"duel", 1500, true}, {"5v5", 1210.25, true}, {"ffa", 0, false}, {"", 0, false}},
		},
		{
			name:   "skill by no queue",
			claims: claims("skill", map[string]any{}),
			role:   auth.RolePlayer,
			skill:  []skillWant{{"duel", 0, false}},
		},
		{
			name: "party",
			claims: claims("skill", 1500, "party", []any{
				map[string]any{"id": "p-2", "skill": 1490},
				map[string]any{"id": "p-3", "skill": map[string]any{"duel": 1400}},
				map[string]any{"id": "p-4"},
				map[string]any{"id": "p-5", "skill": nil, "extra": "ignored"},
			}),
			role:  auth.RolePlayer,
			skill: []skillWant{{"duel", 1500, true}},
			party: 4,
			members: []memberWant{
				{id: "p-1", ok: true, skills: []skillWant{{"duel", 1500, true}}},
				{id: "p-2", ok: true, skills: []skillWant{{"duel", 1490, true}, {"5v5", 1490, true}}},
				{id: "p-3", ok: true, skills: []skillWant{{"duel", 1400, true}, {"5v5", 0, false}}},
				{id: "p-4", ok: true, skills: []skillWant{{"duel", 0, false}}},
				{id: "p-5", ok: true, skills: []skillWant{{"duel", 0, false}}},
				{id: "p-6", ok: false},
				{id: "P-2", ok: false},
			},
		},
		{
			name:   "empty party",
			claims: claims("party", []any{}),
			role:   auth.RolePlayer,
			party:  0,
		},
		{
			name:   "a party that lists its leader",
			claims: claims("skill", 1, "party", []any{map[string]any{"id": "p-1", "skill": 2}, map[string]any{"id": "p-2"}}),
			role:   auth.RolePlayer,
			party:  2,
			members: []memberWant{
				// The leader's own claim is its own.
				{id: "p-1", ok: true, skills: []skillWant{{"duel", 1, true}}},
				{id: "p-2", ok: true},
			},
		},
		{
			name:   "a server speaks for no player",
			claims: claims("sub", "gs-1", "role", "server", "skill", 1),
			role:   auth.RoleServer,
			skill:  []skillWant{{"duel", 1, true}},
			members: []memberWant{
				{id: "gs-1", ok: false},
				{id: "p-1", ok: false},
			},
		},
		{
			name:    "a service speaks for no player",
			claims:  claims("sub", "backend", "role", "service"),
			role:    auth.RoleService,
			members: []memberWant{{id: "backend", ok: false}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, alg := range []string{"HS256", "EdDSA"} {
				p, err := v.Verify(sign(t, mine, alg, tc.claims))
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if p.Role != tc.role {
					t.Errorf("role %q, want %q", p.Role, tc.role)
				}
				checkSkill(t, "Skill", p.Skill, tc.skill)
				if len(p.Party) != tc.party {
					t.Errorf("party %+v, want %d members", p.Party, tc.party)
				}
				for _, m := range tc.members {
					s, ok := p.Member(m.id)
					if ok != m.ok {
						t.Errorf("Member(%q) ok = %v, want %v", m.id, ok, m.ok)
					}
					checkSkill(t, "Member("+m.id+")", s, m.skills)
				}
			}
		})
	}
}

func TestSkillHelpers(t *testing.T) {
	checkSkill(t, "zero Skill", auth.Skill{}, []skillWant{{"duel", 0, false}})
	checkSkill(t, "SkillOf(7)", auth.SkillOf(7), []skillWant{{"duel", 7, true}, {"x", 7, true}})
	m := map[string]float64{"duel": 3}
	s := auth.SkillByQueue(m)
	m["duel"], m["5v5"] = 4, 5 // the Skill keeps its own copy
	checkSkill(t, "SkillByQueue", s, []skillWant{{"duel", 3, true}, {"5v5", 0, false}})
	checkSkill(t, "SkillByQueue(nil)", auth.SkillByQueue(nil), []skillWant{{"duel", 0, false}})
}

func TestPrincipalMember(t *testing.T) {
	p := auth.Principal{Subject: "p-1", Role: auth.RolePlayer, Skill: auth.SkillOf(10),
		Party: []auth.Member{{ID: "p-2", Skill: auth.SkillOf(20)}, {ID: "p-3"}}}
	for _, tc := range []struct {
		id    string
		ok    bool
		skill []skillWant
	}{
		{"p-1", true, []skillWant{{"q", 10, true}}},
		{"p-2", true, []skillWant{{"q", 20, true}}},
		{"p-3", true, []skillWant{{"q", 0, false}}},
		{"p-4", false, []skillWant{{"q", 0, false}}},
		{"", false, nil},
	} {
		s, ok := p.Member(tc.id)
		if ok != tc.ok {
			t.Errorf("Member(%q) ok = %v, want %v", tc.id, ok, tc.ok)
		}
		checkSkill(t, "Member("+tc.id+")", s, tc.skill)
	}
	if _, ok := (auth.Principal{}).Member(""); ok {
		t.Error("the zero Principal claims the empty id")
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   string
		reason string // refused with this reason when not empty
	}{
		{header: "Bearer abc.def.ghi", want: "abc.def.ghi"},
		{header: "bearer abc.def.ghi", want: "abc.def.ghi"},
		{header: "BEARER abc", want: "abc"},
		{header: "Bearer   abc", want: "abc"},
		{header: "  Bearer abc  ", want: "abc"},
		{header: "", reason: "missing bearer token"},
		{header: "   ", reason: "missing bearer token"},
		{header: "Bearer", reason: "missing bearer token"},
		{header: "Bearer ", reason: "missing bearer token"},
		{header: "Basic dXNlcjpwYXNz", reason: "authorization scheme is not bearer"},
		{header: "Bearerabc", reason: "authorization scheme is not bearer"},
		{header: "Token abc", reason: "authorization scheme is not bearer"},
		{header: "abc.def.ghi", reason: "authorization scheme is not bearer"},
		{header: "Bearer abc def", reason: "malformed token"},
		{header: "Bearer abc\tdef", reason: "malformed token"},
	} {
		got, err := auth.BearerToken(tc.header)
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("BearerToken(%q): %v", tc.header, err)
		case tc.reason == "" && got != tc.want:
			t.Errorf("BearerToken(%q) = %q, want %q", tc.header, got, tc.want)
		case tc.reason != "" && err == nil:
			t.Errorf("BearerToken(%q) = %q; want refused", tc.header, got)
		case tc.reason != "" && (!errors.Is(err, auth.ErrInvalidToken) || err.Error() != "invalid token: "+tc.reason):
			t.Errorf("BearerToken(%q): error %q, want %q wrapping ErrInvalidToken", tc.header, err, "invalid token: "+tc.reason)
		}
	}
}

func TestContext(t *testing.T) {
	if _, ok := auth.FromContext(context.Background()); ok {
		t.Error("a bare context carries a principal")
	}
	want := auth.Principal{Subject: "p-1", Role: auth.RolePlayer, Skill: auth.SkillOf(3)}
	p, ok := auth.FromContext(auth.NewContext(context.Background(), want))
	if !ok || p.Subject != want.Subject || p.Role != want.Role {
		t.Errorf("FromContext = %+v, %v; want %+v", p, ok, want)
	}
	checkSkill(t, "Skill from context", p.Skill, []skillWant{{"duel", 3, true}})
}

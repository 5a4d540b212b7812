package auth_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/quickmatch/quickmatch/internal/auth"
	"github.com/quickmatch/quickmatch/internal/auth/authtest"
)

// now is the clock of every verifier here, so that exp and nbf are exact.
var now = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// keys are two key sets: the deployment's, and another (a stranger's, or
// the deployment's after rotation). RSA keys are slow to make: once.
var keys = sync.OnceValues(func() ([2]*authtest.Keys, error) {
	a, err := authtest.NewKeys()
	if err != nil {
		return [2]*authtest.Keys{}, err
	}
	b, err := authtest.NewKeys()
	return [2]*authtest.Keys{a, b}, err
})

func testKeys(t testing.TB) (mine, other *authtest.Keys) {
	t.Helper()
	k, err := keys()
	if err != nil {
		t.Fatal(err)
	}
	return k[0], k[1]
}

// drop as a claim's value in claims removes the claim.
type dropClaim struct{}

var drop dropClaim

// claims is a valid player's claims, changed by kv: name, value pairs.
func claims(kv ...any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "p-1", "exp": now.Add(time.Hour).Unix()}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == drop {
			delete(c, kv[i].(string))
			continue
		}
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// jwksServer serves the JWKS document *doc holds, for a test's life.
func jwksServer(t *testing.T, doc *atomic.Pointer[[]byte]) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(*doc.Load())
	}))
	t.Cleanup(srv.Close)
	return srv
}

func staticServer(t *testing.T, status int, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return now }
	}
	v, err := auth.NewVerifier(t.Context(), cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// verifiers are the deployments the tests verify against, by name.
func verifiers(t *testing.T) map[string]*auth.Verifier {
	t.Helper()
	mine, _ := testKeys(t)
	jwks := mine.JWKS()
	doc := new(atomic.Pointer[[]byte])
	doc.Store(&jwks)
	url := jwksServer(t, doc).URL
	file := writeFile(t, jwks)
	return map[string]*auth.Verifier{
		"hs":       newVerifier(t, auth.Config{HS256Secret: mine.Secret()}),
		"file":     newVerifier(t, auth.Config{JWKSFile: file}),
		"url":      newVerifier(t, auth.Config{JWKSURL: url}),
		"all":      newVerifier(t, auth.Config{HS256Secret: mine.Secret(), JWKSFile: file, JWKSURL: url}),
		"iss+aud":  newVerifier(t, auth.Config{HS256Secret: mine.Secret(), Issuer: "https://id.example", Audience: "quickmatch"}),
		"leeway5s": newVerifier(t, auth.Config{HS256Secret: mine.Secret(), Leeway: 5 * time.Second}),
	}
}

func sign(t *testing.T, k *authtest.Keys, alg string, c jwt.MapClaims) string {
	t.Helper()
	s, err := k.Sign(alg, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyAccepts(t *testing.T) {
	mine, _ := testKeys(t)
	vs := verifiers(t)
	for _, tc := range []struct {
		name      string
		verifiers []string
		alg       string
		claims    jwt.MapClaims
		want      auth.Principal
	}{
		{name: "HS256", verifiers: []string{"hs", "all"}, alg: "HS256", claims: claims(),
			want: auth.Principal{Subject: "p-1", Role: auth.RolePlayer}},
		{name: "RS256", verifiers: []string{"file", "url", "all"}, alg: "RS256", claims: claims(),
			want: auth.Principal{Subject: "p-1", Role: auth.RolePlayer}},
		{name: "ES256", verifiers: []string{"file", "url", "all"}, alg: "ES256", claims: claims(),
			want: auth.Principal{Subject: "p-1", Role: auth.RolePlayer}},
		{name: "EdDSA", verifiers: []string{"file", "url", "all"}, alg: "EdDSA", claims: claims(),
			want: auth.Principal{Subject: "p-1", Role: auth.RolePlayer}},
		{name: "server role", verifiers: []string{"file", "all"}, alg: "ES256", claims: claims("sub", "gs-eu-1", "role", "server"),
			want: auth.Principal{Subject: "gs-eu-1", Role: auth.RoleServer}},
		{name: "service role", verifiers: []string{"all"}, alg: "EdDSA", claims: claims("sub", "backend", "role", "service"),
			want: auth.Principal{Subject: "backend", Role: auth.RoleService}},
		{name: "player role said", verifiers: []string{"hs"}, alg: "HS256", claims: claims("role", "player"),
			want: auth.Principal{Subject: "p-1", Role: auth.RolePlayer}},
		{name: "role null", verifiers: []string{"hs"}, alg: "HS256", claims: claims("role", nil),
			want: auth.Principal{Subject: "p-1", Role: auth.RolePlayer}},
		{name: "expired within leeway", verifiers: []string{"hs"}, alg: "HS256", claims: claims("exp", now.Add(-29*time.Second).Unix()),
			want: auth.Principal{Subject: "p-1", Role: auth.RolePlayer}},
		{name: "not before within leeway", verifiers: []string{"hs"}, alg: "HS256", claims: claims("nbf", now.Add(29*time.Second).Unix()),
			want: auth.Principal{Subject: "p-1", Role: auth.RolePlayer}},
		{name: "not before passed", verifiers: []string{"hs"}, alg: "HS256", claims: claims("nbf", now.Add(-time.Minute).Unix()),
			want: auth.Principal{Subject: "p-1", Role: auth.RolePlayer}},
		{name: "issuer and audience", verifiers: []string{"iss+aud"}, alg: "HS256", claims: claims("iss", "https://id.example", "aud", "quickmatch"),
			want: auth.Principal{Subject: "p-1", Role: auth.RolePlayer}},
		{name: "audience in an array", verifiers: []string{"iss+aud"}, alg: "HS256", claims: claims("iss", "https://id.example", "aud", []string{"other", "quickmatch"}),
			want: auth.Principal{Subject: "p-1", Role: auth.RolePlayer}},
		{name: "issuer and audience unchecked when not configured", verifiers: []string{"hs"}, alg: "HS256", claims: claims("iss", "anyone", "aud", "anything"),
			want: auth.Principal{Subject: "p-1", Role: auth.RolePlayer}},
		{name: "kid ignored for HS256", verifiers: []string{"all"}, alg: "HS256", claims: claims(),
			want: auth.Principal{Subject: "p-1", Role: auth.RolePlayer}},
		{name: "longest subject", verifiers: []string{"hs"}, alg: "HS256", claims: claims("sub", strings.Repeat("s", 128)),
			want: auth.Principal{Subject: strings.Repeat("s", 128), Role: auth.RolePlayer}},
	} {
		for _, name := range tc.verifiers {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				p, err := vs[name].Verify(sign(t, mine, tc.alg, tc.claims))
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if p.Subject != tc.want.Subject || p.Role != tc.want.Role {
					t.Errorf("principal %+v, want %+v", p, tc.want)
				}
			})
		}
	}
}

// TestVerifyWithoutKID: a public-key token without a kid is checked against
// the keys of its algorithm's type.
func TestVerifyWithoutKID(t *testing.T) {
	mine, other := testKeys(t)
	v := verifiers(t)["file"]
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		tok, err := mine.SignWithKID(alg, "", claims())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("%s without kid: %v", alg, err)
		}
		tok, err = other.SignWithKID(alg, "", claims())
		if err != nil {
			t.Fatal(err)
		}
		checkRefused(t, v, tok, "signature invalid")
	}
}

func checkRefused(t *testing.T, v *auth.Verifier, token, reason string) {
	t.Helper()
	p, err := v.Verify(token)
	if err == nil {
		t.Fatalf("Verify accepted the token as %+v; want refused with %q", p, reason)
	}
	if !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("error %v does not wrap ErrInvalidToken", err)
	}
	if want := "invalid token: " + reason; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if p.Subject != "" || p.Role != "" || p.Party != nil {
		t.Errorf("refused token gave principal %+v", p)
	}
}

// segment is the base64url JSON encoding of v, as a token's part.
func segment(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestVerifyRefuses(t *testing.T) {
	mine, other := testKeys(t)
	vs := verifiers(t)
	signed := func(alg string, c jwt.MapClaims) func(t *testing.T) string {
		return func(t *testing.T) string { return sign(t, mine, alg, c) }
	}
	hs := func(kv ...any) func(t *testing.T) string { return signed("HS256", claims(kv...)) }
	// tampered is a token of alg whose claims were changed after signing.
	tampered := func(alg string) func(t *testing.T) string {
		return func(t *testing.T) string {
			parts := strings.Split(sign(t, mine, alg, claims()), ".")
			return parts[0] + "." + segment(t, claims("role", "service")) + "." + parts[2]
		}
	}
	party := make([]map[string]any, 101)
	for i := range party {
		party[i] = map[string]any{"id": "p-" + strings.Repeat("x", i+1)}
	}
	for _, tc := range []struct {
		name      string
		verifiers []string
		token     func(t *testing.T) string
		reason    string
	}{
		// Algorithms.
		{name: "alg none", verifiers: []string{"hs", "file", "all"}, reason: "unsupported algorithm",
			token: func(*testing.T) string { return authtest.AlgNone(claims()) }},
		{name: "alg none with a signature", verifiers: []string{"hs", "all"}, reason: "unsupported algorithm",
			token: func(t *testing.T) string {
				parts := strings.Split(sign(t, mine, "HS256", claims()), ".")
				return segment(t, map[string]any{"alg": "none", "typ": "JWT"}) + "." + parts[1] + "." + parts[2]
			}},
		{name: "alg None spelled otherwise", verifiers: []string{"all"}, reason: "unsupported algorithm",
			token: func(t *testing.T) string {
				return segment(t, map[string]any{"alg": "None"}) + "." + segment(t, claims()) + "."
			}},
		{name: "no alg", verifiers: []string{"all"}, reason: "unsupported algorithm",
			token: func(t *testing.T) string {
				return segment(t, map[string]any{"typ": "JWT"}) + "." + segment(t, claims()) + "."
			}},
		{name: "key confusion with the secret configured", verifiers: []string{"all"}, reason: "signature invalid",
			token: func(t *testing.T) string {
				s, err := authtest.KeyConfusion(mine, claims())
				if err != nil {
					t.Fatal(err)
				}
				return s
			}},
		{name: "key confusion without a secret", verifiers: []string{"file", "url"}, reason: "unsupported algorithm",
			token: func(t *testing.T) string {
				s, err := authtest.KeyConfusion(mine, claims())
				if err != nil {
					t.Fatal(err)
				}
				return s
			}},
		{name: "RS256 when only HS256 is configured", verifiers: []string{"hs"}, reason: "unsupported algorithm", token: signed("RS256", claims())},
		{name: "EdDSA when only HS256 is configured", verifiers: []string{"hs"}, reason: "unsupported algorithm", token: signed("EdDSA", claims())},
		{name: "HS256 when only JWKS is configured", verifiers: []string{"file", "url"}, reason: "unsupported algorithm", token: hs()},
		{name: "HS512", verifiers: []string{"hs", "all"}, reason: "unsupported algorithm",
			token: func(t *testing.T) string {
				s, err := jwt.NewWithClaims(jwt.SigningMethodHS512, claims()).SignedString(mine.Secret())
				if err != nil {
					t.Fatal(err)
				}
				return s
			}},
		{name: "PS256 with a known RSA kid", verifiers: []string{"file", "all"}, reason: "unsupported algorithm",
			token: func(t *testing.T) string {
				tok := jwt.NewWithClaims(jwt.SigningMethodPS256, claims())
				tok.Header["kid"] = mine.KIDs["RS256"]
				s, err := tok.SignedString(mine.RSA)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}},
		{name: "unknown alg", verifiers: []string{"all"}, reason: "unsupported algorithm",
			token: func(t *testing.T) string {
				return segment(t, map[string]any{"alg": "XS999"}) + "." + segment(t, claims()) + ".c2ln"
			}},
		{name: "critical header", verifiers: []string{"hs"}, reason: "unsupported critical header",
			token: func(t *testing.T) string {
				tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims())
				tok.Header["crit"] = []string{"exp"}
				s, err := tok.SignedString(mine.Secret())
				if err != nil {
					t.Fatal(err)
				}
				return s
			}},

		// Keys and signatures.
		{name: "unknown kid", verifiers: []string{"file", "url", "all"}, reason: "unknown key id",
			token: func(t *testing.T) string {
				s, err := other.Sign("RS256", claims())
				if err != nil {
					t.Fatal(err)
				}
				return s
			}},
		{name: "kid of a key of another alg", verifiers: []string{"file"}, reason: "unknown key id",
			token: func(t *testing.T) string {
				s, err := mine.SignWithKID("RS256", mine.KIDs["ES256"], claims())
				if err != nil {
					t.Fatal(err)
				}
				return s
			}},
		{name: "kid not a string", verifiers: []string{"file"}, reason: "malformed token",
			token: func(t *testing.T) string {
				tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims())
				tok.Header["kid"] = 7
				s, err := tok.SignedString(mine.RSA)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}},
		{name: "signed by another key under a known kid", verifiers: []string{"file", "url", "all"}, reason: "signature invalid",
			token: func(t *testing.T) string {
				s, err := other.SignWithKID("ES256", mine.KIDs["ES256"], claims())
				if err != nil {
					t.Fatal(err)
				}
				return s
			}},
		{name: "HS256 with another secret", verifiers: []string{"hs", "all"}, reason: "signature invalid",
			token: func(t *testing.T) string { return sign(t, other, "HS256", claims()) }},
		{name: "payload changed after signing", verifiers: []string{"hs"}, reason: "signature invalid", token: tampered("HS256")},
		{name: "payload changed after signing", verifiers: []string{"file", "url"}, reason: "signature invalid", token: tampered("EdDSA")},
		{name: "payload changed after signing", verifiers: []string{"all"}, reason: "signature invalid", token: tampered("RS256")},
		{name: "signature cut", verifiers: []string{"hs"}, reason: "signature invalid",
			token: func(t *testing.T) string {
				s := sign(t, mine, "HS256", claims())
				return s[:strings.LastIndexByte(s, '.')+1]
			}},

		// Time.
		{name: "expired", verifiers: []string{"hs"}, reason: "token expired", token: hs("exp", now.Add(-31*time.Second).Unix())},
		{name: "expired beyond a configured leeway", verifiers: []string{"leeway5s"}, reason: "token expired", token: hs("exp", now.Add(-6*time.Second).Unix())},
		{name: "exp missing", verifiers: []string{"hs"}, reason: "token has no expiry", token: hs("exp", drop)},
		{name: "exp null", verifiers: []string{"hs"}, reason: "token has no expiry", token: hs("exp", nil)},
		{name: "exp a string", verifiers: []string{"hs"}, reason: "malformed token", token: hs("exp", "tomorrow")},
		{name: "not valid yet", verifiers: []string{"hs"}, reason: "token not valid yet", token: hs("nbf", now.Add(31*time.Second).Unix())},

		// Issuer and audience.
		{name: "wrong issuer", verifiers: []string{"iss+aud"}, reason: "wrong issuer", token: hs("iss", "https://evil.example", "aud", "quickmatch")},
		{name: "issuer missing", verifiers: []string{"iss+aud"}, reason: "wrong issuer", token: hs("aud", "quickmatch")},
		{name: "wrong audience", verifiers: []string{"iss+aud"}, reason: "wrong audience", token: hs("iss", "https://id.example", "aud", "other")},
		{name: "audience array without ours", verifiers: []string{"iss+aud"}, reason: "wrong audience", token: hs("iss", "https://id.example", "aud", []string{"a", "b"})},
		{name: "audience missing", verifiers: []string{"iss+aud"}, reason: "wrong audience", token: hs("iss", "https://id.example")},

		// Subject and role.
		{name: "sub missing", verifiers: []string{"hs"}, reason: "missing subject", token: hs("sub", drop)},
		{name: "sub empty", verifiers: []string{"hs"}, reason: "missing subject", token: hs("sub", "")},
		{name: "sub with a space", verifiers: []string{"hs"}, reason: "invalid subject", token: hs("sub", "p 1")},
		{name: "sub too long", verifiers: []string{"hs"}, reason: "invalid subject", token: hs("sub", strings.Repeat("s", 129))},
		{name: "sub not ASCII", verifiers: []string{"hs"}, reason: "invalid subject", token: hs("sub", "jos\u00e9")},
		{name: "sub a number", verifiers: []string{"hs"}, reason: "malformed token", token: hs("sub", 7)},
		{name: "role unknown", verifiers: []string{"hs", "all"}, reason: "unknown role", token: hs("role", "admin")},
		{name: "role in another case", verifiers: []string{"hs"}, reason: "unknown role", token: hs("role", "Server")},
		{name: "role empty", verifiers: []string{"hs"}, reason: "unknown role", token: hs("role", "")},

		// Skill and party.
		{name: "skill a string", verifiers: []string{"hs"}, reason: "invalid skill claim", token: hs("skill", "1500")},
		{name: "skill an array", verifiers: []string{"hs"}, reason: "invalid skill claim", token: hs("skill", []int{1500})},
		{name: "skill a boolean", verifiers: []string{"hs"}, reason: "invalid skill claim", token: hs("skill", true)},
		{name: "skill out of range", verifiers: []string{"hs"}, reason: "invalid skill claim", token: hs("skill", 1e10)},
		{name: "skill by queue not a number", verifiers: []string{"hs"}, reason: "invalid skill claim", token: hs("skill", map[string]any{"duel": "high"})},
		{name: "skill by queue nested", verifiers: []string{"hs"}, reason: "invalid skill claim", token: hs("skill", map[string]any{"duel": map[string]any{"eu": 1}})},
		{name: "skill by queue of a bad name", verifiers: []string{"hs"}, reason: "invalid skill claim", token: hs("skill", map[string]any{"du el": 1})},
		{name: "party not an array", verifiers: []string{"hs"}, reason: "invalid party claim", token: hs("party", map[string]any{"id": "p-2"})},
		{name: "party of strings", verifiers: []string{"hs"}, reason: "invalid party claim", token: hs("party", []string{"p-2"})},
		{name: "party member without id", verifiers: []string{"hs"}, reason: "invalid party claim", token: hs("party", []any{map[string]any{"skill": 1}})},
		{name: "party member of a bad id", verifiers: []string{"hs"}, reason: "invalid party claim", token: hs("party", []any{map[string]any{"id": "a/b"}})},
		{name: "party member id a number", verifiers: []string{"hs"}, reason: "invalid party claim", token: hs("party", []any{map[string]any{"id": 2}})},
		{name: "party member skill a string", verifiers: []string{"hs"}, reason: "invalid party claim", token: hs("party", []any{map[string]any{"id": "p-2", "skill": "x"}})},
		{name: "party member twice", verifiers: []string{"hs"}, reason: "invalid party claim", token: hs("party", []any{map[string]any{"id": "p-2"}, map[string]any{"id": "p-2"}})},
		{name: "party too large", verifiers: []string{"hs"}, reason: "invalid party claim", token: hs("party", party)},
		{name: "party on a server", verifiers: []string{"hs"}, reason: "invalid party claim", token: hs("role", "server", "party", []any{map[string]any{"id": "p-2"}})},

		// Shape.
		{name: "empty", verifiers: []string{"hs", "file"}, reason: "malformed token", token: func(*testing.T) string { return "" }},
		{name: "one segment", verifiers: []string{"hs"}, reason: "malformed token", token: func(*testing.T) string { return "abc" }},
		{name: "junk segments", verifiers: []string{"hs", "all"}, reason: "malformed token", token: func(*testing.T) string { return "a.b.c" }},
		{name: "four segments", verifiers: []string{"hs"}, reason: "malformed token",
			token: func(t *testing.T) string { return sign(t, mine, "HS256", claims()) + ".x" }},
		{name: "claims not an object", verifiers: []string{"hs"}, reason: "malformed token",
			token: func(t *testing.T) string {
				return segment(t, map[string]any{"alg": "HS256"}) + "." + segment(t, []int{1}) + ".c2ln"
			}},
		{name: "too large", verifiers: []string{"hs"}, reason: "token too large",
			token: func(t *testing.T) string { return sign(t, mine, "HS256", claims("pad", strings.Repeat("x", 64<<10))) }},
	} {
		for _, name := range tc.verifiers {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				checkRefused(t, vs[name], tc.token(t), tc.reason)
			})
		}
	}
}

// TestVerifyKeyTypeMustMatchAlg: a JWKS whose keys do not say their alg
// still verifies a token only with a key of the token's algorithm's type,
// whatever key its kid names.
func TestVerifyKeyTypeMustMatchAlg(t *testing.T) {
	mine, _ := testKeys(t)
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(mine.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		delete(k, "alg")
	}
	doc, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, auth.Config{JWKSFile: writeFile(t, doc)})
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		if _, err := v.Verify(sign(t, mine, alg, claims())); err != nil {
			t.Errorf("%s: %v", alg, err)
		}
		for _, kidOf := range []string{"RS256", "ES256", "EdDSA"} {
			if kidOf == alg {
				continue
			}
			tok, err := mine.SignWithKID(alg, mine.KIDs[kidOf], claims())
			if err != nil {
				t.Fatal(err)
			}
			t.Run(alg+" naming the "+kidOf+" key", func(t *testing.T) {
				checkRefused(t, v, tok, "key does not match algorithm")
			})
		}
	}
}

// TestVerifyJWKSURL: keys rotated in at the URL after start are picked up,
// and the keys fetched go on verifying once the URL is gone.
func TestVerifyJWKSURL(t *testing.T) {
	mine, rotated := testKeys(t)
	first := mine.JWKS()
	doc := new(atomic.Pointer[[]byte])
	doc.Store(&first)
	srv := jwksServer(t, doc)
	v := newVerifier(t, auth.Config{JWKSURL: srv.URL})

	if _, err := v.Verify(sign(t, mine, "RS256", claims())); err != nil {
		t.Fatalf("key of the first document: %v", err)
	}
	// Rotation: the issuer publishes its new keys and signs with them.
	both := mergeJWKS(t, first, rotated.JWKS())
	doc.Store(&both)
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		if _, err := v.Verify(sign(t, rotated, alg, claims())); err != nil {
			t.Fatalf("%s key rotated in: %v", alg, err)
		}
	}

	srv.Close()
	for _, k := range []*authtest.Keys{mine, rotated} {
		for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
			if _, err := v.Verify(sign(t, k, alg, claims())); err != nil {
				t.Errorf("%s key once the URL is gone: %v", alg, err)
			}
		}
	}
	// An unknown kid cannot make the verifier fetch again so soon: it is
	// refused at once rather than after a wait.
	start := time.Now()
	tok, err := mine.SignWithKID("ES256", "made-up", claims())
	if err != nil {
		t.Fatal(err)
	}
	checkRefused(t, v, tok, "unknown key id")
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing an unknown kid took %v", d)
	}
}

// mergeJWKS is the JWK Set of the keys of all docs.
func mergeJWKS(t *testing.T, docs ...[]byte) []byte {
	t.Helper()
	var all struct {
		Keys []json.RawMessage `json:"keys"`
	}
	for _, d := range docs {
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(d, &set); err != nil {
			t.Fatal(err)
		}
		all.Keys = append(all.Keys, set.Keys...)
	}
	b, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewVerifierErrors(t *testing.T) {
	mine, _ := testKeys(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "http://" + lis.Addr().String() + "/jwks.json"
	lis.Close()
	for _, tc := range []struct {
		name string
		cfg  auth.Config
		want string // in the error
	}{
		{name: "no key", cfg: auth.Config{Issuer: "x"}, want: "no key configured"},
		{name: "negative leeway", cfg: auth.Config{HS256Secret: mine.Secret(), Leeway: -time.Second}, want: "leeway"},
		{name: "file missing", cfg: auth.Config{JWKSFile: filepath.Join(t.TempDir(), "nope.json")}, want: "JWKS file"},
		{name: "file not JSON", cfg: auth.Config{JWKSFile: writeFile(t, []byte("not json"))}, want: "JWKS file"},
		{name: "file without keys", cfg: auth.Config{JWKSFile: writeFile(t, []byte(`{"keys":[]}`))}, want: "lists no key"},
		{name: "file with a bad key", cfg: auth.Config{JWKSFile: writeFile(t, []byte(`{"keys":[{"kty":"RSA","kid":"a","n":"AQAB"}]}`))}, want: "JWKS file"},
		{name: "URL not http", cfg: auth.Config{JWKSURL: "file:///etc/jwks.json"}, want: "not an http or https URL"},
		{name: "URL without host", cfg: auth.Config{JWKSURL: "https:///jwks.json"}, want: "not an http or https URL"},
		{name: "URL unreachable", cfg: auth.Config{JWKSURL: unreachable}, want: "JWKS URL"},
		{name: "URL of a closed server", cfg: auth.Config{JWKSURL: closed.URL}, want: "JWKS URL"},
		{name: "URL answers 404", cfg: auth.Config{JWKSURL: staticServer(t, http.StatusNotFound, "").URL}, want: "JWKS URL"},
		{name: "URL answers junk", cfg: auth.Config{JWKSURL: staticServer(t, http.StatusOK, "<html>").URL}, want: "JWKS URL"},
		{name: "URL lists no key", cfg: auth.Config{JWKSURL: staticServer(t, http.StatusOK, `{"keys":[]}`).URL}, want: "lists no key"},
		{name: "URL password kept out of the error", cfg: auth.Config{JWKSURL: "http://user:hunter2@" + lis.Addr().String() + "/"}, want: "JWKS URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := auth.NewVerifier(t.Context(), tc.cfg)
			if err == nil {
				t.Fatalf("NewVerifier made %v; want an error", v)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q shows the URL's password", err)
			}
		})
	}
}

func TestConfigured(t *testing.T) {
	for _, tc := range []struct {
		cfg  auth.Config
		want bool
	}{
		{auth.Config{}, false},
		{auth.Config{Issuer: "i", Audience: "a", Leeway: time.Second}, false},
		{auth.Config{HS256Secret: []byte("s")}, true},
		{auth.Config{JWKSFile: "f"}, true},
		{auth.Config{JWKSURL: "u"}, true},
	} {
		if got := tc.cfg.Configured(); got != tc.want {
			t.Errorf("%+v.Configured() = %v, want %v", tc.cfg, got, tc.want)
		}
	}
}

// TestVerifyClock: the verifier reads the clock it is given at each Verify.
func TestVerifyClock(t *testing.T) {
	mine, _ := testKeys(t)
	var clock atomic.Int64
	clock.Store(now.Unix())
	v := newVerifier(t, auth.Config{HS256Secret: mine.Secret(), Now: func() time.Time { return time.Unix(clock.Load(), 0) }})
	tok := sign(t, mine, "HS256", claims("exp", now.Add(time.Minute).Unix()))
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	clock.Add(int64((time.Minute + 31*time.Second) / time.Second))
	checkRefused(t, v, tok, "token expired")
}

func FuzzVerify(f *testing.F) {
	mine, _ := testKeys(f)
	f.Add("")
	f.Add("a.b.c")
	f.Add(authtest.AlgNone(claims()))
	for _, alg := range []string{"HS256", "RS256", "ES256", "EdDSA"} {
		s, err := mine.Sign(alg, claims("skill", map[string]any{"duel": 1}, "party", []any{map[string]any{"id": "p-2", "skill": 3}}))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s)
	}
	path := filepath.Join(f.TempDir(), "jwks.json")
	if err := os.WriteFile(path, mine.JWKS(), 0o600); err != nil {
		f.Fatal(err)
	}
	v, err := auth.NewVerifier(f.Context(), auth.Config{
		HS256Secret: mine.Secret(),
		JWKSFile:    path,
		Now:         func() time.Time { return now },
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := v.Verify(token)
		if err != nil {
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
			return
		}
		if p.Subject == "" || p.Role == "" {
			t.Fatalf("accepted %q as %+v", token, p)
		}
	})
}

// TestVerifyConcurrent: one verifier serves many requests at once (run with
// -race).
func TestVerifyConcurrent(t *testing.T) {
	mine, other := testKeys(t)
	v := verifiers(t)["all"]
	var tokens []string
	for _, alg := range []string{"HS256", "RS256", "ES256", "EdDSA"} {
		tokens = append(tokens, sign(t, mine, alg, claims()))
	}
	forged := sign(t, other, "ES256", claims())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 40 {
				if _, err := v.Verify(tokens[i%len(tokens)]); err != nil {
					t.Error(err)
					return
				}
				if _, err := v.Verify(forged); err == nil {
					t.Error("a token of an unknown kid was accepted")
					return
				}
			}
		})
	}
	wg.Wait()
}

package authtest_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/quickmatch/quickmatch/internal/auth/authtest"
)

func newKeys(t *testing.T) *authtest.Keys {
	t.Helper()
	k, err := authtest.NewKeys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestJWKS(t *testing.T) {
	k := newKeys(t)
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(k.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"RS256": "RSA", "ES256": "EC", "EdDSA": "OKP"}
	if len(set.Keys) != len(want) {
		t.Fatalf("JWKS lists %d keys, want %d", len(set.Keys), len(want))
	}
	for _, jwk := range set.Keys {
		alg := jwk["alg"]
		if jwk["kty"] != want[alg] || jwk["kid"] != k.KIDs[alg] || jwk["use"] != "sig" {
			t.Errorf("JWK %v: want kty %s, kid %s, use sig", jwk, want[alg], k.KIDs[alg])
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := jwk[private]; ok {
				t.Errorf("the public JWKS holds private parameter %q of the %s key", private, alg)
			}
		}
	}
	if other := newKeys(t); other.KIDs["RS256"] == k.KIDs["RS256"] {
		t.Error("two key sets share a kid")
	}
}

func TestSign(t *testing.T) {
	k := newKeys(t)
	claims := jwt.MapClaims{"sub": "p-1"}
	keyOf := map[string]any{"HS256": k.Secret(), "RS256": &k.RSA.PublicKey, "ES256": &k.ECDSA.PublicKey, "EdDSA": k.Ed25519.Public()}
	for alg, key := range keyOf {
		s, err := k.Sign(alg, claims)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		tok, err := jwt.Parse(s, func(*jwt.Token) (any, error) { return key, nil }, jwt.WithValidMethods([]string{alg}))
		if err != nil {
			t.Fatalf("%s token does not verify: %v", alg, err)
		}
		if kid := tok.Header["kid"]; alg != "HS256" && kid != k.KIDs[alg] {
			t.Errorf("%s token's kid %v, want %s", alg, kid, k.KIDs[alg])
		}
	}
	if _, err := k.Sign("PS256", claims); err == nil {
		t.Error("Sign signed with an unknown algorithm")
	}
	s, err := authtest.SignHS256([]byte("secret"), claims)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse(s, func(*jwt.Token) (any, error) { return []byte("secret"), nil }, jwt.WithValidMethods([]string{"HS256"})); err != nil {
		t.Errorf("SignHS256: %v", err)
	}
}

func TestForgeries(t *testing.T) {
	k := newKeys(t)
	claims := jwt.MapClaims{"sub": "p-1"}

	none := authtest.AlgNone(claims)
	if !strings.HasSuffix(none, ".") {
		t.Errorf("alg none token %q has a signature", none)
	}
	if _, err := jwt.Parse(none, func(*jwt.Token) (any, error) { return jwt.UnsafeAllowNoneSignatureType, nil }); err != nil {
		t.Errorf("alg none token: %v", err)
	}

	// The forgery is real: checked as HS256 with the public key's PEM, as
	// a confused verifier would, it verifies.
	forged, err := authtest.KeyConfusion(k, claims)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.RSA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	tok, err := jwt.Parse(forged, func(*jwt.Token) (any, error) { return pemKey, nil }, jwt.WithValidMethods([]string{"HS256"}))
	if err != nil {
		t.Fatalf("the key confusion token does not verify with the PEM as secret: %v", err)
	}
	if tok.Header["kid"] != k.KIDs["RS256"] {
		t.Errorf("the key confusion token's kid %v, want the RSA key's %s", tok.Header["kid"], k.KIDs["RS256"])
	}
}

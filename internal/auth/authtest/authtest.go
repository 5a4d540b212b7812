// Package authtest mints tokens for tests of the packages that verify them
// and for the load tester: fresh keys, their public JWKS, and the forged
// tokens a verifier must refuse.
package authtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Keys holds freshly generated RSA (2048), ECDSA P-256 and Ed25519 keys with
// kids, and an HS256 secret.
type Keys struct {
	RSA     *rsa.PrivateKey
	ECDSA   *ecdsa.PrivateKey
	Ed25519 ed25519.PrivateKey
	// KIDs are the kids of the public keys by the algorithm each signs
	// with: "RS256", "ES256" and "EdDSA". They are random, so that the
	// keys of two Keys never share one.
	KIDs   map[string]string
	secret []byte
	jwks   []byte
}

// NewKeys generates a set of Keys.
func NewKeys() (*Keys, error) {
	k := &Keys{secret: make([]byte, 32)}
	var err error
	if k.RSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if k.ECDSA, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if _, k.Ed25519, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	rand.Read(k.secret)
	id := rand.Text()[:12]
	k.KIDs = map[string]string{"RS256": "rsa-" + id, "ES256": "ec-" + id, "EdDSA": "ed-" + id}

	// The document is made once: the keys never change.
	store := jwkset.NewMemoryStorage()
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		jwk, err := jwkset.NewJWKFromKey(k.public(alg), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{ALG: jwkset.ALG(alg), KID: k.KIDs[alg], USE: jwkset.UseSig},
		})
		if err != nil {
			return nil, fmt.Errorf("authtest: JWK of the %s key: %w", alg, err)
		}
		if err := store.KeyWrite(context.Background(), jwk); err != nil {
			return nil, err
		}
	}
	if k.jwks, err = store.JSONPublic(context.Background()); err != nil {
		return nil, err
	}
	return k, nil
}

// JWKS returns the public JWK Set document of the RSA, ECDSA and Ed25519
// keys (RFC 7517, RFC 8037), each with its kid, alg and use "sig".
func (k *Keys) JWKS() []byte { return append([]byte(nil), k.jwks...) }

// Secret returns the HS256 secret.
func (k *Keys) Secret() []byte { return append([]byte(nil), k.secret...) }

func (k *Keys) public(alg string) any {
	switch alg {
	case "RS256":
		return &k.RSA.PublicKey
	case "ES256":
		return &k.ECDSA.PublicKey
	case "EdDSA":
		return k.Ed25519.Public()
	}
	return nil
}

// Sign signs claims with the key of alg, one of "HS256", "RS256", "ES256"
// and "EdDSA", and names the key in the kid header (none for HS256).
func (k *Keys) Sign(alg string, claims jwt.MapClaims) (string, error) {
	return k.SignWithKID(alg, k.KIDs[alg], claims)
}

// SignWithKID is Sign with kid in the kid header instead, none if kid is
// empty: for tokens that name a key they were not signed with.
func (k *Keys) SignWithKID(alg, kid string, claims jwt.MapClaims) (string, error) {
	var key any
	switch alg {
	case "HS256":
		key = k.secret
	case "RS256":
		key = k.RSA
	case "ES256":
		key = k.ECDSA
	case "EdDSA":
		key = k.Ed25519
	default:
		return "", fmt.Errorf("authtest: unknown algorithm %q", alg)
	}
	t := jwt.NewWithClaims(jwt.GetSigningMethod(alg), claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	return t.SignedString(key)
}

// SignHS256 signs claims with secret.
func SignHS256(secret []byte, claims jwt.MapClaims) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}

// AlgNone returns an unsigned token of claims, its alg "none". It panics if
// claims do not marshal to JSON.
func AlgNone(claims jwt.MapClaims) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		panic(err)
	}
	return s
}

// KeyConfusion returns the forgery of the algorithm confusion attack: an
// HS256 token of claims whose secret is the RSA public key, PEM-encoded as
// it would be published, and whose kid names that key. A verifier that
// checks it with whatever key the kid names, by whatever alg the token
// says, accepts it.
func KeyConfusion(k *Keys, claims jwt.MapClaims) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(&k.RSA.PublicKey)
	if err != nil {
		return "", err
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	t.Header["kid"] = k.KIDs["RS256"]
	return t.SignedString(secret)
}

package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/quickmatch/quickmatch/internal/auth"
	"github.com/quickmatch/quickmatch/internal/auth/authtest"
	"github.com/quickmatch/quickmatch/internal/httpapi"
)

// BenchmarkAuthenticate is what authentication adds to one request: the
// Authenticator's work on a request with a valid token of each algorithm,
// and with auth off, in front of a handler that does nothing. "first" is a
// token's first request, whose signature is checked; "again" a request
// with a token verified before, which clients send with every call. make
// bench reports it beside the end-to-end runs with auth on and off.
func BenchmarkAuthenticate(b *testing.B) {
	keys, err := authtest.NewKeys()
	if err != nil {
		b.Fatal(err)
	}
	jwks := filepath.Join(b.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, keys.JWKS(), 0o600); err != nil {
		b.Fatal(err)
	}
	v, err := auth.NewVerifier(context.Background(), auth.Config{HS256Secret: keys.Secret(), JWKSFile: jwks, Audience: "quickmatch"})
	if err != nil {
		b.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := httpapi.Caller(r); err != nil {
			b.Fatal(err)
		}
	})
	exp := time.Now().Add(time.Hour).Unix()
	mint := func(b *testing.B, alg string, i int) *http.Request {
		req := httptest.NewRequest(http.MethodGet, "/v1/tickets/t-1", nil)
		if alg == "" {
			return req
		}
		token, err := keys.Sign(alg, jwt.MapClaims{"sub": fmt.Sprintf("p-%d", i), "role": "player", "aud": "quickmatch", "skill": 1500, "exp": exp})
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		return req
	}
	// run serves b.N requests, each with a token of its own when fresh:
	// they are minted before the clock starts.
	run := func(b *testing.B, h http.Handler, alg string, fresh bool) {
		reqs := make([]*http.Request, b.N)
		for i := range reqs {
			if fresh || i == 0 {
				reqs[i] = mint(b, alg, i)
			} else {
				reqs[i] = reqs[0]
			}
		}
		h.ServeHTTP(httptest.NewRecorder(), reqs[0]) // verified before, if again
		w := httptest.NewRecorder()
		b.ReportAllocs()
		b.ResetTimer()
		for _, req := range reqs {
			h.ServeHTTP(w, req)
		}
	}
	b.Run("off", func(b *testing.B) { run(b, httpapi.Open().Handler(next), "", false) })
	on := httpapi.NewAuthenticator(v, nil, nil).Handler(next)
	for _, alg := range []string{"HS256", "RS256", "ES256", "EdDSA"} {
		b.Run(alg+"/first", func(b *testing.B) { run(b, on, alg, true) })
		b.Run(alg+"/again", func(b *testing.B) { run(b, on, alg, false) })
	}
}

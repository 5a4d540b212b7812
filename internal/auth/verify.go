package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/quickmatch/quickmatch/contracts"
)

const (
	defaultLeeway = 30 * time.Second
	httpTimeout   = 10 * time.Second
	// The JWKS URL is fetched again this often, so that a revoked key
	// stops verifying within this time.
	refreshInterval = 15 * time.Minute
	// A token whose kid is unknown makes the verifier fetch the JWKS URL
	// again, so that a key rotated in is picked up at once; at most this
	// often, so that tokens with made-up kids cannot make it hammer the
	// issuer.
	unknownKIDRefresh = time.Minute
	// unknownKIDWait bounds how long a Verify may wait for that fetch,
	// the fetch included.
	unknownKIDWait = 5 * time.Second
	// maxTokenBytes bounds what Verify decodes before it has checked a
	// signature. A party of the largest size fits well within it.
	maxTokenBytes = 64 << 10
	// maxSkillQueues bounds the queues of a skill object.
	maxSkillQueues = 64
	// minSecretBytes is the HS256 key size RFC 7518 section 3.2 asks for.
	minSecretBytes = 32
)

// Config says which keys verify tokens and which claims they must carry.
type Config struct {
	HS256Secret []byte // MM_AUTH_HS256_SECRET
	JWKSFile    string // MM_AUTH_JWKS_FILE
	JWKSURL     string // MM_AUTH_JWKS_URL
	Issuer      string // MM_AUTH_ISSUER, checked when set
	Audience    string // MM_AUTH_AUDIENCE, checked when set
	// Leeway is the clock skew allowed on exp and nbf; 0 means 30s.
	Leeway time.Duration
	// Now is the clock tokens are checked against; nil means time.Now.
	Now func() time.Time
	// HTTPClient fetches the JWKS URL; nil means a client with a 10s
	// timeout.
	HTTPClient *http.Client
	// Log receives what the verifier has to say outside of a request, such
	// as a failed JWKS refresh; nil means nowhere.
	Log *slog.Logger
}

// Configured reports whether any key is set.
func (c Config) Configured() bool {
	return len(c.HS256Secret) > 0 || c.JWKSFile != "" || c.JWKSURL != ""
}

// Verifier checks tokens against the keys of a Config. It is safe for
// concurrent use.
type Verifier struct {
	secret []byte          // nil: HS256 is refused
	keys   keyfunc.Keyfunc // nil: public-key algorithms are refused
	algs   []string        // the algorithms the configured keys verify
	parser *jwt.Parser
	issuer string
	now    func() time.Time
	leeway time.Duration
	seen   verified
}

// NewVerifier builds a verifier from cfg. A JWKS URL is fetched once before
// it returns (an unreachable URL or a bad document is an error saying so) and
// refreshed in the background until ctx ends; the caller owns ctx. Once ctx
// has ended the verifier goes on with the keys it last fetched. No key
// configured is an error.
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	if !cfg.Configured() {
		return nil, errors.New("auth: no key configured: set an HS256 secret, a JWKS file or a JWKS URL")
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("auth: leeway %v is negative", cfg.Leeway)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = defaultLeeway
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{issuer: cfg.Issuer, now: now, leeway: leeway}
	if len(cfg.HS256Secret) > 0 {
		if len(cfg.HS256Secret) < minSecretBytes {
			log.Warn("auth: the HS256 secret is shorter than 32 bytes and easier to guess than it should be")
		}
		v.secret = bytes.Clone(cfg.HS256Secret)
		v.algs = append(v.algs, "HS256")
	}
	if cfg.JWKSFile != "" || cfg.JWKSURL != "" {
		keys, err := newKeyfunc(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		v.keys = keys
		v.algs = append(v.algs, "RS256", "ES256", "EdDSA")
	}
	opts := []jwt.ParserOption{
		// The key function refuses any other algorithm too; this says
		// so a second time, before any key is looked up.
		jwt.WithValidMethods(v.algs),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// newKeyfunc builds the key lookup of the JWKS file and URL of cfg. The
// file's keys come first; the URL's are refetched in the background until
// ctx ends, and at once for a kid no key has.
func newKeyfunc(ctx context.Context, cfg Config, log *slog.Logger) (keyfunc.Keyfunc, error) {
	var store jwkset.Storage
	if cfg.JWKSFile != "" {
		s, n, err := readJWKSFile(cfg.JWKSFile)
		if err != nil {
			return nil, err
		}
		log.Info("auth: loaded the JWKS file", "path", cfg.JWKSFile, "keys", n)
		store = s
	}
	if cfg.JWKSURL != "" {
		remote, err := fetchJWKS(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		store, err = jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
			Given:             store,
			HTTPURLs:          map[string]jwkset.Storage{cfg.JWKSURL: remote},
			RateLimitWaitMax:  unknownKIDWait,
			RefreshUnknownKID: rate.NewLimiter(rate.Every(unknownKIDRefresh), 1),
		})
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS URL: %w", err)
		}
	}
	return keyfunc.New(keyfunc.Options{
		Ctx:     ctx,
		Storage: store,
		// A key published for encryption does not verify signatures; a
		// key that says nothing of its use may.
		UseWhitelist: []jwkset.USE{jwkset.UseSig, ""},
	})
}

// fetchJWKS fetches the JWKS URL of cfg into a storage that refetches it
// every refreshInterval until ctx ends.
func fetchJWKS(ctx context.Context, cfg Config, log *slog.Logger) (_ jwkset.Storage, err error) {
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("auth: the JWKS URL is not an http or https URL")
	}
	shown := u.Redacted() // the URL may carry a password; logs and errors do not
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: httpTimeout}
	}
	// The storage starts its refresh goroutine before its first fetch, and
	// a failed fetch does not stop it: a context of its own ends it then.
	// Otherwise it ends with the caller's ctx.
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	remote, err := jwkset.NewStorageFromHTTP(cfg.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:          client,
		Ctx:             ctx,
		HTTPTimeout:     httpTimeout,
		RefreshInterval: refreshInterval,
		RefreshErrorHandler: func(ctx context.Context, err error) {
			log.WarnContext(ctx, "auth: refreshing the JWKS URL failed; verifying with the keys last fetched", "url", shown, "err", err)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS URL %s: %w", shown, err)
	}
	keys, err := remote.KeyReadAll(ctx)
	if err == nil && len(keys) == 0 {
		err = errors.New("it lists no key this verifier can use")
	}
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS URL %s: %w", shown, err)
	}
	log.Info("auth: fetched the JWKS URL", "url", shown, "keys", len(keys))
	return remote, nil
}

// readJWKSFile reads the JWK Set at path.
func readJWKSFile(path string) (jwkset.Storage, int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("auth: reading the JWKS file: %w", err)
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, 0, fmt.Errorf("auth: JWKS file %s is not a JWK Set: %w", path, err)
	}
	if len(set.Keys) == 0 {
		return nil, 0, fmt.Errorf("auth: JWKS file %s lists no key", path)
	}
	store, err := set.ToStorage()
	if err != nil {
		return nil, 0, fmt.Errorf("auth: JWKS file %s: %w", path, err)
	}
	return store, len(set.Keys), nil
}

// reason is a refusal the key function gives; it reaches the caller as the
// reason of an ErrInvalidToken.
type reason string

func (r reason) Error() string { return string(r) }

const (
	reasonAlg      reason = "unsupported algorithm"
	reasonKID      reason = "unknown key id"
	reasonKeyType  reason = "key does not match algorithm"
	reasonHeader   reason = "malformed token"
	reasonCritical reason = "unsupported critical header"
)

// key is the jwt.Keyfunc of v. It is where algorithm confusion is refused:
// an HS256 token is only ever checked against the HS256 secret, and a
// public-key token only against JWKS keys of the type its algorithm uses,
// whatever key its kid names.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		// RFC 7515 section 4.1.11: extensions this verifier does not
		// know of must not be ignored.
		return nil, reasonCritical
	}
	alg := t.Method.Alg()
	switch alg {
	case "HS256":
		if v.secret == nil {
			return nil, reasonAlg
		}
		return v.secret, nil
	case "RS256", "ES256", "EdDSA":
		if v.keys == nil {
			return nil, reasonAlg
		}
	default:
		return nil, reasonAlg
	}
	if kid, ok := t.Header["kid"]; ok {
		if _, ok := kid.(string); !ok {
			return nil, reasonHeader
		}
	}
	// keyfunc finds the kid's key (refetching the URL for a kid it does
	// not know) and checks the key's own alg and use; without a kid it
	// gives every key.
	k, err := v.keys.Keyfunc(t)
	if err != nil {
		return nil, reasonKID
	}
	if set, ok := k.(jwt.VerificationKeySet); ok {
		var fit jwt.VerificationKeySet
		for _, k := range set.Keys {
			if keyFits(alg, k) {
				fit.Keys = append(fit.Keys, k)
			}
		}
		if len(fit.Keys) == 0 {
			return nil, reasonKeyType
		}
		return fit, nil
	}
	if !keyFits(alg, k) {
		return nil, reasonKeyType
	}
	return k, nil
}

// keyFits reports whether key is a public key of the type alg verifies with.
func keyFits(alg string, key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return alg == "RS256"
	case *ecdsa.PublicKey:
		return alg == "ES256" && k.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// claims is what Verify reads of a token. The claims of this suite are kept
// raw until the signature has been checked, and parsed after.
type claims struct {
	jwt.RegisteredClaims
	Role  *string         `json:"role"` // nil: absent or null
	Skill json.RawMessage `json:"skill"`
	Party json.RawMessage `json:"party"`
}

// Verify checks a compact JWT and returns its principal.
func (v *Verifier) Verify(token string) (Principal, error) {
	if len(token) > maxTokenBytes {
		return Principal{}, invalid("token too large")
	}
	now := v.now()
	if p, ok := v.seen.get(token, now); ok {
		return p, nil
	}
	var c claims
	if t, err := v.parser.ParseWithClaims(token, &c, v.key); err != nil {
		return Principal{}, v.refusal(err, t, &c)
	}
	p, err := c.principal()
	if err != nil {
		return Principal{}, err
	}
	v.seen.put(token, p, c.ExpiresAt.Add(v.leeway), now)
	return p, nil
}

// Verified tokens are remembered for at most rememberFor, so that a key
// dropped from the JWKS stops working within it, and at most rememberMax
// of them, so that the memory they take is bounded whatever clients send.
const (
	rememberFor = time.Minute
	rememberMax = 20_000
)

// verified remembers the principals of the tokens verified lately. A
// client sends the same token with every call, and a public-key signature
// takes tens of microseconds to check (make bench): a token seen again is
// not checked again, but its expiry still is.
type verified struct {
	mu     sync.Mutex
	tokens map[string]verifiedToken
}

type verifiedToken struct {
	p Principal
	// until is when the token stops being taken from memory: its expiry
	// (with the leeway) or rememberFor after it was verified.
	until time.Time
}

func (v *verified) get(token string, now time.Time) (Principal, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.tokens[token]
	if !ok {
		return Principal{}, false
	}
	if !now.Before(t.until) {
		delete(v.tokens, token)
		return Principal{}, false
	}
	return t.p, true
}

func (v *verified) put(token string, p Principal, exp, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.tokens == nil || len(v.tokens) >= rememberMax {
		// Forgetting them all costs a verification each, once.
		v.tokens = make(map[string]verifiedToken)
	}
	v.tokens[token] = verifiedToken{p: p, until: minTime(exp, now.Add(rememberFor))}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// refusal is the ErrInvalidToken of the parser's err, with the first reason
// that applies. t and c are what the parser decoded of the token.
func (v *Verifier) refusal(err error, t *jwt.Token, c *claims) error {
	var r reason
	switch {
	case errors.As(err, &r):
		return invalid(string(r))
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalid("malformed token")
	case t != nil && t.Method != nil && !slices.Contains(v.algs, t.Method.Alg()):
		// The parser calls a method it was not given a bad signature.
		return invalid(string(reasonAlg))
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// The alg is missing or one the library does not know.
		return invalid(string(reasonAlg))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalid("signature invalid")
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalid("token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalid("token not valid yet")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && c.ExpiresAt == nil:
		return invalid("token has no expiry")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer),
		errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && v.issuer != "" && c.Issuer == "":
		return invalid("wrong issuer")
	case errors.Is(err, jwt.ErrTokenInvalidAudience), errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalid("wrong audience")
	}
	return invalid("invalid claims")
}

// principal checks the claims of a verified token and makes its principal.
func (c *claims) principal() (Principal, error) {
	if c.Subject == "" {
		return Principal{}, invalid("missing subject")
	}
	if contracts.CheckID("sub", c.Subject) != nil {
		return Principal{}, invalid("invalid subject")
	}
	p := Principal{Subject: c.Subject, Role: RolePlayer}
	if c.Role != nil {
		switch p.Role = Role(*c.Role); p.Role {
		case RolePlayer, RoleServer, RoleService:
		default:
			return Principal{}, invalid("unknown role")
		}
	}
	var err error
	if p.Skill, err = parseSkill(c.Skill); err != nil {
		return Principal{}, invalid("invalid skill claim")
	}
	if p.Party, err = parseParty(c.Party); err != nil {
		return Principal{}, invalid("invalid party claim")
	}
	if len(p.Party) > 0 && p.Role != RolePlayer {
		// Only a player queues with a party; a party on another role's
		// token is a mistake of whoever minted it.
		return Principal{}, invalid("invalid party claim")
	}
	return p, nil
}

// absent reports whether a raw claim was left out or null.
func absent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// parseSkill parses a skill claim: a number, or an object of numbers by
// queue name, each within the bounds a ticket's skill has.
func parseSkill(raw json.RawMessage) (Skill, error) {
	if absent(raw) {
		return Skill{}, nil
	}
	if raw[0] != '{' {
		var v float64
		if err := json.Unmarshal(raw, &v); err != nil {
			return Skill{}, err
		}
		if err := checkSkill(v); err != nil {
			return Skill{}, err
		}
		return SkillOf(v), nil
	}
	var m map[string]float64
	if err := json.Unmarshal(raw, &m); err != nil {
		return Skill{}, err
	}
	if len(m) > maxSkillQueues {
		return Skill{}, errors.New("too many queues")
	}
	for q, v := range m {
		if err := contracts.CheckID("queue", q); err != nil {
			return Skill{}, err
		}
		if err := checkSkill(v); err != nil {
			return Skill{}, err
		}
	}
	if len(m) == 0 {
		return Skill{}, nil
	}
	return Skill{byQueue: m}, nil
}

func checkSkill(v float64) error {
	if v < -contracts.MaxSkill || v > contracts.MaxSkill {
		return errors.New("skill out of range")
	}
	return nil
}

// parseParty parses a party claim: an array of members, each with an id
// and optionally a skill, no id twice.
func parseParty(raw json.RawMessage) ([]Member, error) {
	if absent(raw) {
		return nil, nil
	}
	var members []struct {
		ID    string          `json:"id"`
		Skill json.RawMessage `json:"skill"`
	}
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, err
	}
	if len(members) == 0 {
		return nil, nil
	}
	if len(members) > contracts.MaxPartySize {
		return nil, errors.New("party too large")
	}
	party := make([]Member, 0, len(members))
	seen := make(map[string]bool, len(members))
	for _, m := range members {
		if err := contracts.CheckID("party id", m.ID); err != nil {
			return nil, err
		}
		if seen[m.ID] {
			return nil, errors.New("party lists a member twice")
		}
		seen[m.ID] = true
		s, err := parseSkill(m.Skill)
		if err != nil {
			return nil, err
		}
		party = append(party, Member{ID: m.ID, Skill: s})
	}
	return party, nil
}

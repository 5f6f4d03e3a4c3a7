package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// MinRefresh rate-limits key set re-reads triggered by unknown key ids, so tokens with made-up
// kids cannot make the exporter hammer the identity provider.
const MinRefresh = 30 * time.Second

// maxJWKSBytes bounds a fetched key set.
const maxJWKSBytes = 1 << 20

type jwtVerifier struct {
	cfg    JWTConfig
	parser *jwt.Parser
	keys   *keySource
}

func newJWTVerifier(ctx context.Context, c JWTConfig, opts Options) (*jwtVerifier, error) {
	ks := &keySource{file: c.JWKSFile, url: c.JWKSURL, client: opts.HTTPClient, every: c.JWKSRefresh, now: opts.Now, logger: opts.Logger}
	if c.JWKSFile != "" {
		if err := ks.refresh(ctx); err != nil {
			return nil, err
		}
	}
	return &jwtVerifier{
		cfg:  c,
		keys: ks,
		parser: jwt.NewParser(
			jwt.WithValidMethods(c.Algorithms),
			jwt.WithIssuer(c.Issuer),
			jwt.WithAudience(c.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(c.Leeway),
			jwt.WithTimeFunc(opts.Now),
		),
	}, nil
}

func (v *jwtVerifier) verify(ctx context.Context, raw string) (Principal, error) {
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return v.keys.lookup(ctx, kid, t.Method.Alg())
	})
	if err != nil {
		return Principal{}, jwtError(err)
	}
	sub, _ := claimPath(claims, v.cfg.SubjectClaim).(string)
	if sub == "" {
		return Principal{}, fmt.Errorf("%w: token has no %s claim", ErrBadCredentials, v.cfg.SubjectClaim)
	}
	return Principal{
		Subject: sub,
		Kind:    KindJWT,
		Roles:   claimStrings(claimPath(claims, v.cfg.RolesClaim)),
		Tenants: claimStrings(claimPath(claims, v.cfg.TenantsClaim)),
	}, nil
}

// claimPath follows a dotted path ("realm_access.roles") through nested claim objects.
func claimPath(claims map[string]any, path string) any {
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// claimStrings accepts a list of strings or a single string; anything else grants nothing.
func claimStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// keySource holds the JWKS and re-reads it when stale or when a token names an unknown key.
type keySource struct {
	file, url string
	client    *http.Client
	every     time.Duration
	now       func() time.Time
	logger    *slog.Logger

	mu       sync.Mutex
	keys     []jose.JSONWebKey
	loadedAt time.Time // of the keys held
	tried    time.Time // last attempt, successful or not
	modTime  time.Time // of the file read
}

// lookup returns the verification keys for a token header's kid and alg. golang-jwt tries each
// key of a VerificationKeySet, which covers key sets without kids and rollovers that reuse one.
func (s *keySource) lookup(ctx context.Context, kid, alg string) (any, error) {
	// The lock is held across a fetch on purpose: concurrent requests wait for one fetch
	// (bounded by the HTTP client's timeout) instead of each starting their own.
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	stale := s.loadedAt.IsZero() || now.Sub(s.loadedAt) >= s.every
	// A failed fetch of a stale set is retried every few seconds, not on every request.
	if stale && now.Sub(s.tried) >= MinRefresh/10 {
		if err := s.refreshLocked(ctx); err != nil {
			s.logger.Warn("JWKS not refreshed", "source", s.source(), "err", err)
		}
	}
	set := s.match(kid, alg)
	if len(set.Keys) == 0 && now.Sub(s.tried) >= MinRefresh {
		if err := s.refreshLocked(ctx); err != nil {
			s.logger.Warn("JWKS not refreshed", "source", s.source(), "err", err)
		}
		set = s.match(kid, alg)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no key for kid %q and alg %s", kid, alg)
	}
	return set, nil
}

func (s *keySource) match(kid, alg string) jwt.VerificationKeySet {
	var set jwt.VerificationKeySet
	for _, k := range s.keys {
		if (kid != "" && k.KeyID != kid) || k.Use == "enc" || (k.Algorithm != "" && k.Algorithm != alg) {
			continue
		}
		pub := k.Public()
		if !keyFitsAlg(pub.Key, alg) {
			continue
		}
		set.Keys = append(set.Keys, pub.Key)
	}
	return set
}

func keyFitsAlg(key any, alg string) bool {
	switch key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(alg, "ES")
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

func (s *keySource) source() string {
	if s.file != "" {
		return s.file
	}
	return s.url
}

func (s *keySource) refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshLocked(ctx)
}

func (s *keySource) refreshLocked(ctx context.Context) error {
	s.tried = s.now()
	var (
		body []byte
		err  error
	)
	if s.file != "" {
		info, err := os.Stat(s.file)
		if err != nil {
			return fmt.Errorf("JWKS file: %w", err)
		}
		if !s.loadedAt.IsZero() && info.ModTime().Equal(s.modTime) {
			s.loadedAt = s.tried // unchanged: the keys held are current
			return nil
		}
		if body, err = os.ReadFile(s.file); err != nil {
			return fmt.Errorf("JWKS file: %w", err)
		}
		s.modTime = info.ModTime()
	} else if body, err = s.fetch(ctx); err != nil {
		return err
	}
	keys, err := parseJWKS(body, s.logger)
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", s.source(), err)
	}
	s.keys, s.loadedAt = keys, s.tried
	return nil
}

func (s *keySource) fetch(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS %s: status %s", s.url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", s.url, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("fetch JWKS %s: larger than %d bytes", s.url, maxJWKSBytes)
	}
	return body, nil
}

// parseJWKS reads a key set, skipping keys it cannot use (an identity provider may publish
// encryption keys of types go-jose does not parse) rather than rejecting the whole set.
func parseJWKS(body []byte, logger *slog.Logger) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	keys := make([]jose.JSONWebKey, 0, len(raw.Keys))
	for i, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			logger.Warn("JWKS key skipped", "index", i, "err", err)
			continue
		}
		if !k.Valid() {
			logger.Warn("JWKS key skipped", "index", i, "kid", k.KeyID, "err", "invalid key")
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no usable keys")
	}
	return keys, nil
}

// Package auth authenticates HTTP requests: hashed API keys for ingestion, hashed static
// bearer tokens, and OIDC JWTs checked against a JWKS. It says who is asking (a Principal);
// what they may do is decided by the policies (exporter/authz).
package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Principal kinds.
const (
	KindAnonymous = "anonymous" // open mode: no auth configured
	KindAPIKey    = "api_key"
	KindToken     = "token"
	KindJWT       = "jwt"
)

// Principal is an authenticated caller.
type Principal struct {
	Subject string   `json:"subject"`
	Kind    string   `json:"kind"`
	Roles   []string `json:"roles"`
	Tenants []string `json:"tenants"` // "*" = every tenant
}

// Authentication failures. Callers tell them apart with errors.Is: both answer 401, but only a
// bad credential is worth auditing and logging.
var (
	ErrNoCredentials  = errors.New("no credentials")
	ErrBadCredentials = errors.New("invalid credentials")
)

// APIKeyHeader carries an API key for clients that cannot set Authorization.
const APIKeyHeader = "X-API-Key"

// MaxCredentialBytes bounds what is hashed or parsed; real JWTs stay well under it.
const MaxCredentialBytes = 8 << 10

// Options tune an Authenticator.
type Options struct {
	Logger     *slog.Logger
	HTTPClient *http.Client     // for jwks_url; default: 10 s timeout
	Now        func() time.Time // for tests of expiry; default time.Now
}

// Authenticator checks credentials. Safe for concurrent use.
type Authenticator struct {
	open    bool
	secrets map[[32]byte]Principal // SHA-256 of API keys and static tokens
	jwt     *jwtVerifier
}

// New builds an Authenticator. With a jwks_file it reads the file now (an unreadable key set is
// a config error); a jwks_url is fetched on first use and retried, so an identity provider
// that is down at start-up cannot stop ingestion.
func New(ctx context.Context, c Config, opts Options) (*Authenticator, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Authenticator{open: !c.Enabled(), secrets: map[[32]byte]Principal{}}
	for _, k := range c.APIKeys {
		a.secrets[k.Hash] = Principal{Subject: "api_key:" + k.Name, Kind: KindAPIKey, Roles: k.Roles, Tenants: k.Tenants}
	}
	for _, t := range c.Tokens {
		a.secrets[t.Hash] = Principal{Subject: t.Subject, Kind: KindToken, Roles: t.Roles, Tenants: t.Tenants}
	}
	if c.JWT != nil {
		v, err := newJWTVerifier(ctx, *c.JWT, opts)
		if err != nil {
			return nil, err
		}
		a.jwt = v
	}
	return a, nil
}

// Open reports open mode: no credential is configured, so there is nobody to authenticate.
func (a *Authenticator) Open() bool { return a.open }

// Authenticate identifies the caller of r from "Authorization: Bearer <credential>" or the
// X-API-Key header. Errors wrap ErrNoCredentials or ErrBadCredentials; the text after the
// sentinel is safe to show the caller (it never echoes the credential).
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	cred, err := credential(r)
	if err != nil {
		return Principal{}, err
	}
	if p, ok := a.secrets[sha256.Sum256([]byte(cred))]; ok {
		// A map lookup by SHA-256 leaks nothing useful through timing: an attacker cannot steer
		// the hash of a guess toward a stored one.
		return p, nil
	}
	if a.jwt != nil && strings.Count(cred, ".") == 2 {
		return a.jwt.verify(r.Context(), cred)
	}
	return Principal{}, fmt.Errorf("%w: unknown key or token", ErrBadCredentials)
}

// credential extracts the presented secret and checks its syntax (RFC 6750 b64token).
func credential(r *http.Request) (string, error) {
	authz := r.Header.Values("Authorization")
	keys := r.Header.Values(APIKeyHeader)
	var cred string
	switch {
	case len(authz)+len(keys) == 0:
		return "", ErrNoCredentials
	case len(authz)+len(keys) > 1:
		return "", fmt.Errorf("%w: more than one credential", ErrBadCredentials)
	case len(keys) == 1:
		cred = keys[0]
	default:
		scheme, rest, ok := strings.Cut(authz[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", fmt.Errorf("%w: the Authorization scheme must be Bearer", ErrBadCredentials)
		}
		cred = strings.TrimLeft(rest, " ")
	}
	if err := checkToken68(cred); err != nil {
		return "", err
	}
	return cred, nil
}

// checkToken68 accepts 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func checkToken68(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty credential", ErrBadCredentials)
	}
	if len(s) > MaxCredentialBytes {
		return fmt.Errorf("%w: credential longer than %d bytes", ErrBadCredentials, MaxCredentialBytes)
	}
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			break
		}
	}
	if i == 0 {
		return fmt.Errorf("%w: malformed credential", ErrBadCredentials)
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return fmt.Errorf("%w: malformed credential", ErrBadCredentials)
		}
	}
	return nil
}

// jwtError maps a golang-jwt error to a short, caller-safe reason.
func jwtError(err error) error {
	for _, e := range []error{
		jwt.ErrTokenExpired, jwt.ErrTokenNotValidYet, jwt.ErrTokenUsedBeforeIssued,
		jwt.ErrTokenInvalidIssuer, jwt.ErrTokenInvalidAudience, jwt.ErrTokenSignatureInvalid,
		jwt.ErrTokenMalformed, jwt.ErrTokenRequiredClaimMissing, jwt.ErrTokenUnverifiable,
	} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %v", ErrBadCredentials, e)
		}
	}
	return fmt.Errorf("%w: invalid token", ErrBadCredentials)
}

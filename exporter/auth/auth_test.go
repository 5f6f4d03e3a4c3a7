package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

func request(header, value string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/usage", nil)
	if header != "" {
		r.Header.Set(header, value)
	}
	return r
}

func hashOf(t testing.TB, key string) [32]byte {
	t.Helper()
	n := authNode(t, "auth:\n  tokens:\n    - subject: s\n      hash: "+HashKey(key)+"\n      roles: [sre]\n")
	cfg, err := ParseConfig(n)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Tokens[0].Hash
}

func TestAPIKeysAndTokens(t *testing.T) {
	ingestKey, _ := NewAPIKey()
	adminToken, _ := NewAPIKey()
	if ingestKey == adminToken || !strings.HasPrefix(ingestKey, KeyPrefix) {
		t.Fatalf("keys %q %q", ingestKey, adminToken)
	}
	a, err := New(context.Background(), Config{
		APIKeys: []APIKeyConfig{{Name: "ing", Hash: hashOf(t, ingestKey), Tenants: []string{"acme"}, Roles: []string{"ingest"}}},
		Tokens:  []TokenConfig{{Subject: "alice", Hash: hashOf(t, adminToken), Roles: []string{"platform_admin"}}},
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Open() {
		t.Fatal("configured authenticator reports open mode")
	}
	for _, r := range []*http.Request{request("Authorization", "Bearer "+ingestKey), request(APIKeyHeader, ingestKey), request("Authorization", "bearer  "+ingestKey)} {
		p, err := a.Authenticate(r)
		if err != nil {
			t.Fatal(err)
		}
		want := Principal{Subject: "api_key:ing", Kind: KindAPIKey, Roles: []string{"ingest"}, Tenants: []string{"acme"}}
		if p.Subject != want.Subject || p.Kind != want.Kind || !slices.Equal(p.Roles, want.Roles) || !slices.Equal(p.Tenants, want.Tenants) {
			t.Errorf("principal = %+v, want %+v", p, want)
		}
	}
	p, err := a.Authenticate(request("Authorization", "Bearer "+adminToken))
	if err != nil || p.Subject != "alice" || p.Kind != KindToken {
		t.Errorf("token: %+v, %v", p, err)
	}

	if _, err := a.Authenticate(request("", "")); !errors.Is(err, ErrNoCredentials) {
		t.Errorf("no header: err = %v, want ErrNoCredentials", err)
	}
	twice := request("Authorization", "Bearer "+adminToken)
	twice.Header.Set(APIKeyHeader, ingestKey)
	bad := map[string]*http.Request{
		"unknown key":                  request("Authorization", "Bearer "+ingestKey+"x"),
		"basic scheme":                 request("Authorization", "Basic YWxpY2U6cHc="),
		"no scheme":                    request("Authorization", ingestKey),
		"empty bearer":                 request("Authorization", "Bearer "),
		"space in token":               request("Authorization", "Bearer a b"),
		"padding mid":                  request("Authorization", "Bearer ab=c"),
		"only padding":                 request("Authorization", "Bearer ===="),
		"non-ascii":                    request(APIKeyHeader, "ключ"),
		"too long":                     request(APIKeyHeader, strings.Repeat("a", MaxCredentialBytes+1)),
		"two credentials":              twice,
		"jwt-shaped but no jwt config": request("Authorization", "Bearer a.b.c"),
	}
	for name, r := range bad {
		if _, err := a.Authenticate(r); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("%s: err = %v, want ErrBadCredentials", name, err)
		} else if strings.Contains(err.Error(), ingestKey) {
			t.Errorf("%s: error echoes the credential: %v", name, err)
		}
	}
}

func TestOpenMode(t *testing.T) {
	a, err := New(context.Background(), Config{}, Options{})
	if err != nil || !a.Open() {
		t.Fatalf("empty config: open=%v err=%v", a.Open(), err)
	}
}

func TestPseudonymize(t *testing.T) {
	k1, k2 := []byte("key-one"), []byte("key-two")
	p := Pseudonymize(k1, "acme", "bob@example.com")
	if p != Pseudonymize(k1, "acme", "bob@example.com") {
		t.Error("not stable")
	}
	if p == Pseudonymize(k2, "acme", "bob@example.com") || p == Pseudonymize(k1, "acme", "carol@example.com") {
		t.Error("does not depend on key and user")
	}
	if strings.Contains(p, "bob") || len(p) != 22 {
		t.Errorf("pseudonym %q", p)
	}
	// Keyed per tenant: the same user id in two tenants cannot be linked through its label.
	if p == Pseudonymize(k1, "globex", "bob@example.com") {
		t.Error("the same user id has the same pseudonym in two tenants")
	}
	// An unambiguous encoding of the pair: moving the boundary between tenant and user, or
	// putting a would-be separator in either, yields another pseudonym.
	for _, pair := range [][4]string{
		{"ab", "c", "a", "bc"},
		{"a\x00", "b", "a", "\x00b"},
		{"a:", "b", "a", ":b"},
		{"", "ab", "a", "b"},
	} {
		if Pseudonymize(k1, pair[0], pair[1]) == Pseudonymize(k1, pair[2], pair[3]) {
			t.Errorf("(%q, %q) and (%q, %q) share a pseudonym", pair[0], pair[1], pair[2], pair[3])
		}
	}
	// The encoding is part of the label's contract (dashboards and recording rules keep series
	// by it): pin it. HMAC-SHA256(key, "usagemeter.pseudonym.v2" 0x00 uvarint(len(tenant)) tenant user).
	if got, want := Pseudonymize([]byte("k"), "acme", "bob"), pinnedPseudonym(t, []byte("k"), "acme", "bob"); got != want {
		t.Errorf("Pseudonymize(k, acme, bob) = %s, want %s", got, want)
	}
}

func TestPseudonymizeV1(t *testing.T) {
	// The pre-upgrade labels, for correlation: the same in every tenant, and not the new ones.
	m := hmac.New(sha256.New, []byte("k"))
	m.Write([]byte("bob"))
	if got, want := PseudonymizeV1([]byte("k"), "bob"), "u_"+hex.EncodeToString(m.Sum(nil)[:10]); got != want {
		t.Errorf("PseudonymizeV1 = %s, want %s", got, want)
	}
	if PseudonymizeV1([]byte("k"), "bob") == Pseudonymize([]byte("k"), "acme", "bob") {
		t.Error("v1 and v2 pseudonyms coincide")
	}
}

// pinnedPseudonym recomputes the documented encoding independently of Pseudonymize.
func pinnedPseudonym(t *testing.T, key []byte, tenant, user string) string {
	t.Helper()
	msg := append([]byte("usagemeter.pseudonym.v2\x00"), byte(len(tenant)))
	msg = append(append(msg, tenant...), user...)
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return "u_" + hex.EncodeToString(m.Sum(nil)[:10])
}

// idp is a test identity provider: it signs tokens and serves its JWKS over HTTP.
type idp struct {
	mu      sync.Mutex
	keys    map[string]crypto.Signer
	fetches atomic.Int64
	srv     *httptest.Server
}

func newIDP(t testing.TB) *idp {
	t.Helper()
	p := &idp{keys: map[string]crypto.Signer{}}
	p.addRSA(t, "rsa-1")
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(p.jwks(t))
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) addRSA(t testing.TB, kid string) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.keys[kid] = k
	p.mu.Unlock()
}

func (p *idp) addEC(t testing.TB, kid string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.keys[kid] = k
	p.mu.Unlock()
}

func (p *idp) jwks(t testing.TB) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	var set jose.JSONWebKeySet
	for kid, k := range p.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Error(err)
	}
	// An encryption key of a type go-jose cannot parse must not spoil the set.
	return []byte(strings.Replace(string(b), `{"keys":[`, `{"keys":[{"kty":"unknown","kid":"enc-1","use":"enc"},`, 1))
}

func (p *idp) sign(t testing.TB, kid string, claims jwt.MapClaims) string {
	t.Helper()
	p.mu.Lock()
	k := p.keys[kid]
	p.mu.Unlock()
	method := jwt.SigningMethod(jwt.SigningMethodRS256)
	if _, ok := k.(*ecdsa.PrivateKey); ok {
		method = jwt.SigningMethodES256
	}
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func claims(extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": "https://idp.test/", "aud": []string{"usagemeter", "other"}, "sub": "ann",
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
		"realm_access": map[string]any{"roles": []string{"saas_admin", "offline_access"}},
		"tenants":      []string{"acme"},
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func jwtAuth(t *testing.T, c JWTConfig, clock *time.Time) *Authenticator {
	t.Helper()
	if c.Issuer == "" {
		c.Issuer = "https://idp.test/"
	}
	c.Audience = "usagemeter"
	c.JWKSRefresh = time.Hour
	c.Algorithms = defaultAlgorithms
	c.SubjectClaim, c.RolesClaim, c.TenantsClaim = "sub", "realm_access.roles", "tenants"
	a, err := New(context.Background(), Config{JWT: &c}, Options{Now: func() time.Time { return *clock }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func bearer(tok string) *http.Request { return request("Authorization", "Bearer "+tok) }

func TestJWT(t *testing.T) {
	p := newIDP(t)
	p.addEC(t, "ec-1")
	clock := now
	a := jwtAuth(t, JWTConfig{JWKSURL: p.srv.URL}, &clock)

	got, err := a.Authenticate(bearer(p.sign(t, "rsa-1", claims(nil))))
	if err != nil {
		t.Fatal(err)
	}
	if got.Subject != "ann" || got.Kind != KindJWT || !slices.Equal(got.Roles, []string{"saas_admin", "offline_access"}) || !slices.Equal(got.Tenants, []string{"acme"}) {
		t.Errorf("principal = %+v", got)
	}
	if got, err := a.Authenticate(bearer(p.sign(t, "ec-1", claims(jwt.MapClaims{"tenants": "beta"})))); err != nil || !slices.Equal(got.Tenants, []string{"beta"}) {
		t.Errorf("ES256 token with a single-string tenants claim: %+v, %v", got, err)
	}

	// A stranger's key under a known kid: the signature does not verify.
	stranger := newIDP(t)
	forged := stranger.sign(t, "rsa-1", claims(nil))
	// alg=none and HS256 keyed with the public key (algorithm confusion) must both fail.
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	pub, _ := json.Marshal(p.keys["rsa-1"].Public())
	hs, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil)).SignedString(pub)
	valid := p.sign(t, "rsa-1", claims(nil))
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + strings.TrimRight(jwtB64(`{"sub":"root","iss":"https://idp.test/","aud":"usagemeter","exp":9999999999}`), "=") + "." + parts[2]

	cases := map[string]struct {
		tok  string
		want string
	}{
		"expired":          {p.sign(t, "rsa-1", claims(jwt.MapClaims{"exp": now.Add(-time.Second).Unix()})), "token is expired"},
		"no expiry":        {p.sign(t, "rsa-1", claims(jwt.MapClaims{"exp": nil})), "missing required claim"},
		"not yet valid":    {p.sign(t, "rsa-1", claims(jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()})), "not valid yet"},
		"issued in future": {p.sign(t, "rsa-1", claims(jwt.MapClaims{"iat": now.Add(time.Hour).Unix()})), "used before issued"},
		"wrong issuer":     {p.sign(t, "rsa-1", claims(jwt.MapClaims{"iss": "https://evil.test/"})), "invalid issuer"},
		"wrong audience":   {p.sign(t, "rsa-1", claims(jwt.MapClaims{"aud": "grafana"})), "invalid audience"},
		"wrongly signed":   {forged, "signature is invalid"},
		"tampered payload": {tampered, "signature is invalid"},
		"alg none":         {none, "signature is invalid"},
		"alg confusion":    {hs, "signature is invalid"},
		"unknown kid":      {p.sign(t, "rsa-1", claims(nil))[:0] + signWithKid(t, p, "rsa-1", "nope"), "unverifiable"},
		"no subject":       {p.sign(t, "rsa-1", claims(jwt.MapClaims{"sub": nil})), "no sub claim"},
		"garbage segments": {"aaa.bbb.ccc", "malformed"},
		"truncated":        {valid[:len(valid)-10], "signature is invalid"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := a.Authenticate(bearer(c.tok))
			if !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want ErrBadCredentials mentioning %q", err, c.want)
			}
		})
	}

	// Expiry follows the clock, with the configured leeway.
	clock = now.Add(2 * time.Hour)
	if _, err := a.Authenticate(bearer(valid)); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("token used after expiry: err = %v", err)
	}
}

func signWithKid(t testing.TB, p *idp, keyKid, headerKid string) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims(nil))
	tok.Header["kid"] = headerKid
	s, err := tok.SignedString(p.keys[keyKid])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jwtB64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestJWKSRotationFromURL(t *testing.T) {
	p := newIDP(t)
	clock := now
	a := jwtAuth(t, JWTConfig{JWKSURL: p.srv.URL}, &clock)
	if _, err := a.Authenticate(bearer(p.sign(t, "rsa-1", claims(nil)))); err != nil {
		t.Fatal(err)
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	// The provider rotates to a new key: the first token under the new kid re-reads the set,
	// but not before MinRefresh has passed since the last read.
	p.addRSA(t, "rsa-2")
	tok2 := p.sign(t, "rsa-2", claims(nil))
	if _, err := a.Authenticate(bearer(tok2)); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("new kid accepted before any refresh: %v", err)
	}
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d within MinRefresh, want 1", n)
	}
	clock = clock.Add(MinRefresh)
	if _, err := a.Authenticate(bearer(tok2)); err != nil {
		t.Fatalf("new kid after MinRefresh: %v", err)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
}

func TestJWKSFile(t *testing.T) {
	p := newIDP(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, p.jwks(t), 0o600); err != nil {
		t.Fatal(err)
	}
	clock := now
	a := jwtAuth(t, JWTConfig{JWKSFile: path}, &clock)
	if _, err := a.Authenticate(bearer(p.sign(t, "rsa-1", claims(nil)))); err != nil {
		t.Fatal(err)
	}
	// Unreadable or empty key sets are config errors at start.
	for _, body := range []string{"not json", `{"keys":[]}`} {
		bad := filepath.Join(t.TempDir(), "bad.json")
		if err := os.WriteFile(bad, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		c := JWTConfig{Issuer: "i", Audience: "a", JWKSFile: bad, JWKSRefresh: time.Hour, Algorithms: defaultAlgorithms, SubjectClaim: "sub"}
		if _, err := New(context.Background(), Config{JWT: &c}, Options{}); err == nil {
			t.Errorf("JWKS %q accepted", body)
		}
	}
}

func TestJWKSURLDownIsRetried(t *testing.T) {
	var up atomic.Bool
	p := newIDP(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(p.jwks(t))
	}))
	defer srv.Close()
	clock := now
	a := jwtAuth(t, JWTConfig{JWKSURL: srv.URL}, &clock) // must not fail while the IdP is down
	tok := p.sign(t, "rsa-1", claims(nil))
	if _, err := a.Authenticate(bearer(tok)); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("IdP down: err = %v", err)
	}
	up.Store(true)
	clock = clock.Add(MinRefresh)
	if _, err := a.Authenticate(bearer(tok)); err != nil {
		t.Fatalf("IdP back: %v", err)
	}
}

package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzAuthenticate feeds arbitrary Authorization headers to an authenticator that accepts
// API keys, static tokens and JWTs. Nothing may panic, every failure must be one of the two
// sentinels, and only the configured secrets and correctly signed tokens may succeed.
func FuzzAuthenticate(f *testing.F) {
	p := newIDP(f)
	path := filepath.Join(f.TempDir(), "jwks.json")
	if err := os.WriteFile(path, p.jwks(f), 0o600); err != nil {
		f.Fatal(err)
	}
	key, _ := NewAPIKey()
	h := hashOf(f, key)
	clock := now
	c := JWTConfig{Issuer: "https://idp.test/", Audience: "usagemeter", JWKSFile: path, JWKSRefresh: time.Hour,
		Algorithms: defaultAlgorithms, SubjectClaim: "sub", RolesClaim: "realm_access.roles", TenantsClaim: "tenants"}
	a, err := New(context.Background(), Config{
		APIKeys: []APIKeyConfig{{Name: "k", Hash: h, Tenants: []string{"acme"}, Roles: []string{"ingest"}}},
		JWT:     &c,
	}, Options{Now: func() time.Time { return clock }})
	if err != nil {
		f.Fatal(err)
	}
	valid := p.sign(f, "rsa-1", claims(nil))
	for _, s := range []string{
		"Bearer " + key, "Bearer " + valid, "Bearer " + valid[:len(valid)/2], "Bearer a.b.c", "Bearer ..",
		"Bearer eyJhbGciOiJub25lIn0.e30.", "Basic Zm9vOmJhcg==", "Bearer", "", "Bearer " + valid + "=",
		"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.eyJleHAiOjF9.AAAA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Authorization"] = []string{header}
		pr, err := a.Authenticate(r)
		if err != nil {
			if !errors.Is(err, ErrBadCredentials) && !errors.Is(err, ErrNoCredentials) {
				t.Fatalf("error %v wraps neither sentinel", err)
			}
			return
		}
		switch pr.Kind {
		case KindAPIKey:
			if pr.Subject != "api_key:k" {
				t.Fatalf("api key principal %+v", pr)
			}
		case KindJWT:
			// Only a token the IdP signed can get here; the fuzzer cannot forge RS256.
			if pr.Subject != "ann" {
				t.Fatalf("jwt principal %+v from %q", pr, header)
			}
		default:
			t.Fatalf("principal %+v from %q", pr, header)
		}
	})
}

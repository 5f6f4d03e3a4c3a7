package auth

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/config"
)

// authNode parses a config file and returns its auth: node, as package config hands it over.
func authNode(t testing.TB, doc string) *yaml.Node {
	t.Helper()
	var f struct {
		Auth yaml.Node `yaml:"auth"`
	}
	if err := yaml.Unmarshal([]byte(doc), &f); err != nil {
		t.Fatal(err)
	}
	return &f.Auth
}

const validConfig = `
auth:
  api_keys:
    - name: ingest-acme
      hash: sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      tenants: [acme, beta]
    - name: checker
      hash: sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
      tenants: ["*"]
      roles: [quota_checker]
  tokens:
    - subject: alice
      hash: sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881
      roles: [platform_admin]
  jwt:
    issuer: https://idp.example.com/
    audience: usagemeter
    jwks_url: https://idp.example.com/jwks
    roles_claim: realm_access.roles
    leeway: 30s
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(authNode(t, validConfig))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Enabled() || len(c.APIKeys) != 2 || len(c.Tokens) != 1 || c.JWT == nil {
		t.Fatalf("parsed %+v", c)
	}
	if k := c.APIKeys[0]; k.Name != "ingest-acme" || !slices.Equal(k.Roles, []string{"ingest"}) || !slices.Equal(k.Tenants, []string{"acme", "beta"}) {
		t.Errorf("api key 0 = %+v (roles default to ingest)", k)
	}
	if HashKey("test") != "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" {
		t.Error("HashKey is not sha256:<hex>")
	}
	j := c.JWT
	if j.RolesClaim != "realm_access.roles" || j.TenantsClaim != "tenants" || j.SubjectClaim != "sub" || j.Leeway != 30*time.Second || j.JWKSRefresh != 15*time.Minute || len(j.Algorithms) == 0 {
		t.Errorf("jwt = %+v", j)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "audit.key")
	short := filepath.Join(dir, "short.key")
	key, _ := NewAPIKey()
	if err := os.WriteFile(good, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, []byte("tiny\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(authNode(t, "auth:\n  audit_key_file: "+good+"\n  policies: "+dir+"\n"))
	if err != nil || c.AuditKeyFile != good || c.PolicyPath != dir {
		t.Fatalf("%+v, %v", c, err)
	}
	if b, err := LoadKey(good); err != nil || string(b) != key {
		t.Errorf("LoadKey = %q, %v (white space must be trimmed)", b, err)
	}
	if _, err := ParseConfig(authNode(t, "auth:\n  policies: "+filepath.Join(dir, "missing")+"\n")); err == nil {
		t.Error("missing policy path accepted")
	}
	for _, path := range []string{short, filepath.Join(dir, "missing")} {
		_, err := ParseConfig(authNode(t, "auth:\n  audit_key_file: "+path+"\n"))
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Field != "auth.audit_key_file" || fe.Line != 2 {
			t.Errorf("%s: err = %v", path, err)
		}
	}
}

func TestParseConfigAbsentIsOpen(t *testing.T) {
	c, err := ParseConfig(authNode(t, "ingest: {}\n"))
	if err != nil || c.Enabled() {
		t.Fatalf("absent auth: %+v, %v", c, err)
	}
	if c, err := ParseConfig(nil); err != nil || c.Enabled() {
		t.Fatalf("nil node: %+v, %v", c, err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	const hashA = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	cases := []struct {
		name, doc string
		line      int
		field     string
		msg       string
	}{
		{"unknown section", "auth:\n  keys: []\n", 2, "auth.keys", "unknown field"},
		{"not a mapping", "auth: [1]\n", 1, "auth", "must be a mapping"},
		{"plaintext key instead of hash", "auth:\n  api_keys:\n    - name: k\n      hash: um_secret\n      tenants: [acme]\n", 4, "auth.api_keys[0].hash", "sha256:"},
		{"short hash", "auth:\n  api_keys:\n    - name: k\n      hash: sha256:abcd\n      tenants: [acme]\n", 4, "auth.api_keys[0].hash", "64 hex"},
		{"key without tenants", "auth:\n  api_keys:\n    - name: k\n      hash: " + hashA + "\n", 3, "auth.api_keys[0].tenants", "required"},
		{"key without hash", "auth:\n  api_keys:\n    - name: k\n      tenants: [acme]\n", 3, "auth.api_keys[0].hash", "required"},
		{"key without name", "auth:\n  api_keys:\n    - hash: " + hashA + "\n      tenants: [acme]\n", 3, "auth.api_keys[0].name", "required"},
		{"key with a human role", "auth:\n  api_keys:\n    - name: k\n      hash: " + hashA + "\n      tenants: [acme]\n      roles: [platform_admin]\n", 6, "auth.api_keys[0].roles[0]", "not one of"},
		{"bad tenant id", "auth:\n  api_keys:\n    - name: k\n      hash: " + hashA + "\n      tenants: [acme, 'bad tenant']\n", 5, "auth.api_keys[0].tenants[1]", "not a tenant id"},
		{"unknown role", "auth:\n  tokens:\n    - subject: a\n      hash: " + hashA + "\n      roles: [admin]\n", 5, "auth.tokens[0].roles[0]", `"admin" is not one of`},
		{"token without roles", "auth:\n  tokens:\n    - subject: a\n      hash: " + hashA + "\n", 3, "auth.tokens[0].roles", "required"},
		{"token unknown field", "auth:\n  tokens:\n    - subject: a\n      token: x\n", 4, "auth.tokens[0].token", "unknown field"},
		{"duplicate hash", "auth:\n  api_keys:\n    - name: k\n      hash: " + hashA + "\n      tenants: [acme]\n  tokens:\n    - subject: a\n      hash: " + hashA + "\n      roles: [sre]\n", 7, "auth.tokens[0].hash", "same hash as auth.api_keys[0]"},
		{"jwt without audience", "auth:\n  jwt:\n    issuer: https://i\n    jwks_file: /x\n", 3, "auth.jwt.audience", "required"},
		{"jwt both key sources", "auth:\n  jwt:\n    issuer: https://i\n    audience: a\n    jwks_file: /x\n    jwks_url: https://i/k\n", 3, "auth.jwt", "exactly one"},
		{"jwt bad url", "auth:\n  jwt:\n    issuer: https://i\n    audience: a\n    jwks_url: file:///etc/passwd\n", 5, "auth.jwt.jwks_url", "http(s)"},
		{"jwt bad leeway", "auth:\n  jwt:\n    leeway: soon\n", 3, "auth.jwt.leeway", "duration"},
		{"jwt alg none", "auth:\n  jwt:\n    algorithms: [none]\n", 3, "auth.jwt.algorithms[0]", "not one of"},
		{"jwt field twice", "auth:\n  jwt:\n    issuer: a\n    issuer: b\n", 4, "auth.jwt.issuer", "twice"},
		{"list expected", "auth:\n  api_keys: {}\n", 2, "auth.api_keys", "must be a list"},
		{"null string", "auth:\n  tokens:\n    - subject:\n", 3, "auth.tokens[0].subject", "must be a string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig(authNode(t, c.doc))
			var fe *config.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want a *config.FieldError", err)
			}
			if fe.Line != c.line || fe.Field != c.field || !strings.Contains(fe.Msg, c.msg) {
				t.Errorf("got line %d field %q msg %q; want line %d field %q msg containing %q", fe.Line, fe.Field, fe.Msg, c.line, c.field, c.msg)
			}
		})
	}
}

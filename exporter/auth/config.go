package auth

import (
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/config"
)

// Roles the policies know (policies/authz.rego). A role outside this list is a typo in the
// config file, and is rejected there rather than silently granting nothing.
var (
	HumanRoles   = []string{"platform_admin", "billing_admin", "saas_admin", "sre", "tenant_user"}
	ServiceRoles = []string{"ingest", "quota_checker"}
)

// Config is the auth: section of the config file. The zero Config means open mode: no
// credentials are configured and every request is anonymous (see exporter/guard).
type Config struct {
	APIKeys []APIKeyConfig
	Tokens  []TokenConfig
	JWT     *JWTConfig // nil when JWTs are not accepted
	// AuditKeyFile holds the key of the audit trail's HMAC chain (exporter/audit); empty: a
	// plain SHA-256 chain. Read with LoadKey. (The key of per-user label pseudonyms is
	// metrics.user_label_key_file.)
	AuditKeyFile string
	// PolicyPath replaces the embedded policies with a directory of .rego files or a bundle
	// tarball (exporter/authz Options.Path); empty: the embedded policies.
	PolicyPath string
}

// APIKeyConfig is one ingestion key, stored as the SHA-256 of the key.
type APIKeyConfig struct {
	Name    string   // shows in logs and the audit trail as subject "api_key:<name>"
	Hash    [32]byte // SHA-256 of the key
	Tenants []string // tenants the key may act for; "*" = every tenant
	Roles   []string // ServiceRoles; default [ingest]
}

// TokenConfig is one static bearer token, stored as its SHA-256.
type TokenConfig struct {
	Subject string
	Hash    [32]byte
	Roles   []string // HumanRoles or ServiceRoles
	Tenants []string
}

// JWTConfig accepts OIDC access or ID tokens signed by keys of a JWKS.
type JWTConfig struct {
	Issuer   string
	Audience string
	// Exactly one of JWKSFile and JWKSURL.
	JWKSFile string
	JWKSURL  string
	// JWKSRefresh is how often the key set is re-read (default 15m); an unknown key id also
	// triggers a re-read, at most once per MinRefresh.
	JWKSRefresh  time.Duration
	Algorithms   []string // default: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA
	SubjectClaim string   // default "sub"
	RolesClaim   string   // dotted path, default "roles" (e.g. "realm_access.roles")
	TenantsClaim string   // dotted path, default "tenants"
	Leeway       time.Duration
}

// Enabled reports whether any credential is configured; false means open mode.
func (c Config) Enabled() bool {
	return len(c.APIKeys) > 0 || len(c.Tokens) > 0 || c.JWT != nil
}

var defaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// tenantRe is the tenant id syntax of the public contract.
var tenantRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

// fieldErr builds the error config.Load reports with the file name in front.
func fieldErr(n *yaml.Node, field, format string, args ...any) error {
	return &config.FieldError{Line: n.Line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ParseConfig reads the auth: node. A node of Kind 0 (no auth: section) is open mode.
func ParseConfig(n *yaml.Node) (Config, error) {
	var c Config
	if n == nil || n.Kind == 0 {
		return c, nil
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	err := eachField(n, "auth", func(key string, v *yaml.Node, field string) error {
		switch key {
		case "api_keys":
			return eachItem(v, field, func(item *yaml.Node, f string) error {
				k, err := parseAPIKey(item, f)
				c.APIKeys = append(c.APIKeys, k)
				return err
			})
		case "tokens":
			return eachItem(v, field, func(item *yaml.Node, f string) error {
				t, err := parseToken(item, f)
				c.Tokens = append(c.Tokens, t)
				return err
			})
		case "jwt":
			j, err := parseJWT(v, field)
			c.JWT = &j
			return err
		case "audit_key_file":
			var err error
			c.AuditKeyFile, err = keyFile(v, field)
			return err
		case "policies":
			var err error
			if c.PolicyPath, err = str(v, field); err != nil {
				return err
			}
			if _, err := os.Stat(c.PolicyPath); err != nil {
				return fieldErr(v, field, "%v", err)
			}
			return nil
		}
		return fieldErr(v, field, "unknown field (want api_keys, tokens, jwt, policies, audit_key_file; the pseudonymisation key of per-user labels is metrics.user_label_key_file)")
	})
	if err != nil {
		return Config{}, err
	}
	// One secret must name one principal.
	seen := map[[32]byte]string{}
	for i, k := range c.APIKeys {
		if prev, dup := seen[k.Hash]; dup {
			return Config{}, &config.FieldError{Line: lineOfItem(n, "api_keys", i), Field: fmt.Sprintf("auth.api_keys[%d].hash", i), Msg: "same hash as " + prev}
		}
		seen[k.Hash] = fmt.Sprintf("auth.api_keys[%d]", i)
	}
	for i, t := range c.Tokens {
		if prev, dup := seen[t.Hash]; dup {
			return Config{}, &config.FieldError{Line: lineOfItem(n, "tokens", i), Field: fmt.Sprintf("auth.tokens[%d].hash", i), Msg: "same hash as " + prev}
		}
		seen[t.Hash] = fmt.Sprintf("auth.tokens[%d]", i)
	}
	return c, nil
}

func parseAPIKey(n *yaml.Node, field string) (APIKeyConfig, error) {
	k := APIKeyConfig{Roles: []string{"ingest"}}
	var hasHash bool
	err := eachField(n, field, func(key string, v *yaml.Node, f string) error {
		var err error
		switch key {
		case "name":
			k.Name, err = str(v, f)
		case "hash":
			k.Hash, err = parseHash(v, f)
			hasHash = true
		case "tenants":
			k.Tenants, err = tenants(v, f)
		case "roles":
			k.Roles, err = roles(v, f, ServiceRoles)
		default:
			err = fieldErr(v, f, "unknown field (want name, hash, tenants, roles)")
		}
		return err
	})
	if err != nil {
		return k, err
	}
	switch {
	case k.Name == "":
		return k, fieldErr(n, field+".name", "required")
	case !hasHash:
		return k, fieldErr(n, field+".hash", "required (sha256:<hex>; `usagectl keys new` makes one)")
	case len(k.Tenants) == 0:
		return k, fieldErr(n, field+".tenants", "required: the tenants this key may ingest for")
	case len(k.Roles) == 0:
		return k, fieldErr(n, field+".roles", "must not be empty")
	}
	return k, nil
}

func parseToken(n *yaml.Node, field string) (TokenConfig, error) {
	var t TokenConfig
	var hasHash bool
	err := eachField(n, field, func(key string, v *yaml.Node, f string) error {
		var err error
		switch key {
		case "subject":
			t.Subject, err = str(v, f)
		case "hash":
			t.Hash, err = parseHash(v, f)
			hasHash = true
		case "roles":
			t.Roles, err = roles(v, f, append(slices.Clone(HumanRoles), ServiceRoles...))
		case "tenants":
			t.Tenants, err = tenants(v, f)
		default:
			err = fieldErr(v, f, "unknown field (want subject, hash, roles, tenants)")
		}
		return err
	})
	if err != nil {
		return t, err
	}
	switch {
	case t.Subject == "":
		return t, fieldErr(n, field+".subject", "required")
	case !hasHash:
		return t, fieldErr(n, field+".hash", "required (sha256:<hex>; `usagectl keys new` makes one)")
	case len(t.Roles) == 0:
		return t, fieldErr(n, field+".roles", "required")
	}
	return t, nil
}

func parseJWT(n *yaml.Node, field string) (JWTConfig, error) {
	j := JWTConfig{
		JWKSRefresh: 15 * time.Minute, Algorithms: defaultAlgorithms,
		SubjectClaim: "sub", RolesClaim: "roles", TenantsClaim: "tenants",
	}
	err := eachField(n, field, func(key string, v *yaml.Node, f string) error {
		var err error
		switch key {
		case "issuer":
			j.Issuer, err = str(v, f)
		case "audience":
			j.Audience, err = str(v, f)
		case "jwks_file":
			j.JWKSFile, err = str(v, f)
		case "jwks_url":
			j.JWKSURL, err = str(v, f)
			if err == nil && !strings.HasPrefix(j.JWKSURL, "https://") && !strings.HasPrefix(j.JWKSURL, "http://") {
				err = fieldErr(v, f, "must be an http(s) URL")
			}
		case "jwks_refresh":
			j.JWKSRefresh, err = duration(v, f)
		case "leeway":
			j.Leeway, err = duration(v, f)
		case "algorithms":
			j.Algorithms, err = list(v, f, func(s string) error {
				if !slices.Contains(defaultAlgorithms, s) {
					return fmt.Errorf("%q is not one of %s", s, strings.Join(defaultAlgorithms, ", "))
				}
				return nil
			})
		case "subject_claim":
			j.SubjectClaim, err = str(v, f)
		case "roles_claim":
			j.RolesClaim, err = str(v, f)
		case "tenants_claim":
			j.TenantsClaim, err = str(v, f)
		default:
			err = fieldErr(v, f, "unknown field")
		}
		return err
	})
	if err != nil {
		return j, err
	}
	switch {
	case j.Issuer == "":
		return j, fieldErr(n, field+".issuer", "required")
	case j.Audience == "":
		return j, fieldErr(n, field+".audience", "required: a token minted for another service must not be accepted")
	case (j.JWKSFile == "") == (j.JWKSURL == ""):
		return j, fieldErr(n, field, "exactly one of jwks_file and jwks_url is required")
	case j.JWKSRefresh <= 0:
		return j, fieldErr(n, field+".jwks_refresh", "must be positive")
	case len(j.Algorithms) == 0:
		return j, fieldErr(n, field+".algorithms", "must not be empty")
	case j.SubjectClaim == "" || j.RolesClaim == "" || j.TenantsClaim == "":
		return j, fieldErr(n, field, "claim names must not be empty")
	}
	return j, nil
}

// eachField walks a mapping node in file order.
func eachField(n *yaml.Node, field string, f func(key string, v *yaml.Node, field string) error) error {
	if n.Kind != yaml.MappingNode {
		return fieldErr(n, field, "must be a mapping")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			return fieldErr(k, field+"."+k.Value, "given twice")
		}
		seen[k.Value] = true
		if err := f(k.Value, v, field+"."+k.Value); err != nil {
			return err
		}
	}
	return nil
}

func eachItem(n *yaml.Node, field string, f func(item *yaml.Node, field string) error) error {
	if n.Kind != yaml.SequenceNode {
		return fieldErr(n, field, "must be a list")
	}
	for i, item := range n.Content {
		if err := f(item, fmt.Sprintf("%s[%d]", field, i)); err != nil {
			return err
		}
	}
	return nil
}

// lineOfItem finds the line of the i-th item of a list under key in mapping n.
func lineOfItem(n *yaml.Node, key string, i int) int {
	for j := 0; j+1 < len(n.Content); j += 2 {
		if n.Content[j].Value == key && i < len(n.Content[j+1].Content) {
			return n.Content[j+1].Content[i].Line
		}
	}
	return n.Line
}

func str(n *yaml.Node, field string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", fieldErr(n, field, "must be a string")
	}
	return n.Value, nil
}

func duration(n *yaml.Node, field string) (time.Duration, error) {
	s, err := str(n, field)
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fieldErr(n, field, "%q is not a duration like 30s or 15m", s)
	}
	return d, nil
}

func list(n *yaml.Node, field string, check func(string) error) ([]string, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, fieldErr(n, field, "must be a list")
	}
	out := make([]string, 0, len(n.Content))
	for i, item := range n.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		s, err := str(item, f)
		if err != nil {
			return nil, err
		}
		if err := check(s); err != nil {
			return nil, fieldErr(item, f, "%v", err)
		}
		out = append(out, s)
	}
	return out, nil
}

func tenants(n *yaml.Node, field string) ([]string, error) {
	return list(n, field, func(s string) error {
		if s != "*" && !tenantRe.MatchString(s) {
			return fmt.Errorf("%q is not a tenant id (or * for every tenant)", s)
		}
		return nil
	})
}

func roles(n *yaml.Node, field string, allowed []string) ([]string, error) {
	return list(n, field, func(s string) error {
		if !slices.Contains(allowed, s) {
			return fmt.Errorf("%q is not one of %s", s, strings.Join(allowed, ", "))
		}
		return nil
	})
}

// keyFile checks at load time that a key file is readable and long enough, so a typo fails
// the config rather than the first audited request.
func keyFile(n *yaml.Node, field string) (string, error) {
	path, err := str(n, field)
	if err != nil {
		return "", err
	}
	if _, err := LoadKey(path); err != nil {
		return "", fieldErr(n, field, "%v", err)
	}
	return path, nil
}

func parseHash(n *yaml.Node, field string) ([32]byte, error) {
	var h [32]byte
	s, err := str(n, field)
	if err != nil {
		return h, err
	}
	hexed, ok := strings.CutPrefix(s, "sha256:")
	b, err := hex.DecodeString(hexed)
	if !ok || err != nil || len(b) != len(h) {
		return h, fieldErr(n, field, "must be sha256:<64 hex digits> (`usagectl keys new` makes one); never the key itself")
	}
	copy(h[:], b)
	return h, nil
}

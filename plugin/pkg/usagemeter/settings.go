package usagemeter

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

// Settings are a datasource instance's configuration (jsonData plus the secure token).
type Settings struct {
	ExporterURL        string `json:"exporterUrl"`
	VictoriaMetricsURL string `json:"victoriaMetricsUrl"`
	// RoleMappings map Grafana users to usagemeter roles and tenants. A user gets the union of
	// every mapping that matches; a user no mapping matches has no roles, so the policies deny.
	RoleMappings []RoleMapping `json:"roleMappings"`
	// BackgroundRoles and BackgroundTenants are the principal of requests without a user
	// (alerting, recorded queries, background jobs). Default: the sre role, tenant aggregates
	// of every tenant. Per-user detail, the audit trail and exports are never answered to them,
	// whatever these say.
	BackgroundRoles   []string `json:"backgroundRoles"`
	BackgroundTenants []string `json:"backgroundTenants"`
	// TopUsers is how many users top_users returns (default 10).
	TopUsers int `json:"topUsers"`

	// Token is the bearer token the plugin sends to the exporter (secureJsonData.apiToken).
	Token string `json:"-"`
}

// RoleMapping matches Grafana users. Empty criteria match anyone; all non-empty criteria must
// match. Login and Email accept shell patterns ("*@example.com").
type RoleMapping struct {
	Login   string   `json:"login,omitempty"`
	Email   string   `json:"email,omitempty"`
	OrgRole string   `json:"orgRole,omitempty"` // Admin, Editor, Viewer
	Roles   []string `json:"roles"`
	Tenants []string `json:"tenants,omitempty"`
}

// The usagemeter roles a mapping may grant (docs/security.md). Service roles (ingest,
// quota_checker) are not for people.
var knownRoles = []string{"platform_admin", "billing_admin", "saas_admin", "sre", "tenant_user"}

// LoadSettings reads and validates instance settings.
func LoadSettings(s backend.DataSourceInstanceSettings) (Settings, error) {
	st, err := LoadSettingsJSON(s.JSONData, s.DecryptedSecureJSONData)
	if err == nil && st.ExporterURL == "" {
		st.ExporterURL = s.URL // the standard URL field, when the JSON field is left empty
	}
	return st, err
}

// LoadSettingsJSON reads and validates jsonData and the decrypted secureJsonData.
func LoadSettingsJSON(jsonData []byte, secure map[string]string) (Settings, error) {
	var st Settings
	if len(jsonData) > 0 {
		if err := json.Unmarshal(jsonData, &st); err != nil {
			return st, fmt.Errorf("datasource settings: %w", err)
		}
	}
	st.Token = secure["apiToken"]
	if len(st.BackgroundRoles) == 0 {
		st.BackgroundRoles = []string{"sre"}
	}
	if st.TopUsers <= 0 {
		st.TopUsers = 10
	}
	for i, m := range st.RoleMappings {
		if len(m.Roles) == 0 {
			return st, fmt.Errorf("roleMappings[%d]: roles: required", i)
		}
		for _, r := range m.Roles {
			if !slices.Contains(knownRoles, r) {
				return st, fmt.Errorf("roleMappings[%d]: role %q: want one of %s", i, r, strings.Join(knownRoles, ", "))
			}
		}
		for _, p := range []string{m.Login, m.Email} {
			if _, err := path.Match(p, ""); err != nil {
				return st, fmt.Errorf("roleMappings[%d]: pattern %q: %w", i, p, err)
			}
		}
	}
	for _, r := range st.BackgroundRoles {
		if !slices.Contains(knownRoles, r) {
			return st, fmt.Errorf("backgroundRoles: role %q: want one of %s", r, strings.Join(knownRoles, ", "))
		}
	}
	return st, nil
}

func (m RoleMapping) matches(u *backend.User) bool {
	match := func(pattern, v string) bool {
		if pattern == "" {
			return true
		}
		ok, _ := path.Match(strings.ToLower(pattern), strings.ToLower(v))
		return ok
	}
	return match(m.Login, u.Login) && match(m.Email, u.Email) &&
		(m.OrgRole == "" || strings.EqualFold(m.OrgRole, u.Role))
}

package usagemeter

import (
	"context"
	"fmt"
	"slices"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/authz"
)

// Principal kinds the plugin puts in front of the policies.
const (
	KindGrafanaUser       = "grafana_user"
	KindGrafanaBackground = "grafana_background"
)

// userlessDenied are the actions never answered to a request without a user: alerting and
// background requests get tenant-level aggregates only, whatever roles they were configured.
var userlessDenied = []string{route.ActionUsageUserRead, route.ActionReportsExport, route.ActionAuditRead}

// ErrForbidden is a request the policies (or the plugin's no-user rule) refused.
type ErrForbidden struct {
	Action, Tenant, Reason string
}

func (e *ErrForbidden) Error() string {
	t := e.Tenant
	if t == "" {
		t = "all tenants"
	}
	return fmt.Sprintf("forbidden: %s on %s: %s", e.Action, t, e.Reason)
}

// Principal maps the Grafana user of a request to a usagemeter principal. A nil user (alerting,
// background requests) is the background principal.
func (s *Settings) Principal(u *backend.User) authz.Principal {
	if u == nil {
		return authz.Principal{Subject: "grafana:background", Kind: KindGrafanaBackground,
			Roles: slices.Clone(s.BackgroundRoles), Tenants: slices.Clone(s.BackgroundTenants)}
	}
	subject := u.Login
	if subject == "" {
		subject = u.Email
	}
	p := authz.Principal{Subject: subject, Kind: KindGrafanaUser, Roles: []string{}, Tenants: []string{}}
	for _, m := range s.RoleMappings {
		if !m.matches(u) {
			continue
		}
		for _, r := range m.Roles {
			if !slices.Contains(p.Roles, r) {
				p.Roles = append(p.Roles, r)
			}
		}
		for _, t := range m.Tenants {
			if !slices.Contains(p.Tenants, t) {
				p.Tenants = append(p.Tenants, t)
			}
		}
	}
	return p
}

// authorize decides every action for the request's user on tenant ("" = all tenants). It fails
// closed: a policy error is a denial.
func (d *Datasource) authorize(ctx context.Context, u *backend.User, tenant, user string, actions ...string) error {
	p := d.settings.Principal(u)
	for _, a := range actions {
		if u == nil && slices.Contains(userlessDenied, a) {
			return &ErrForbidden{Action: a, Tenant: tenant, Reason: "requests without a user (alerting, background) get tenant-level aggregates only"}
		}
		dec, err := d.engine.Decide(ctx, authz.Input{Principal: p, Action: a, Tenant: tenant, User: user,
			Method: "GRAFANA", Path: "plugin"})
		if err != nil {
			return &ErrForbidden{Action: a, Tenant: tenant, Reason: "no policy decision: " + err.Error()}
		}
		if !dec.Allow {
			return &ErrForbidden{Action: a, Tenant: tenant, Reason: dec.Reason}
		}
	}
	return nil
}

# Authorization of every HTTP request to the usage exporter.
#
# Input (built by exporter/guard):
#   principal: {subject, kind, roles, tenants}   who is asking (kind: anonymous, api_key, token, jwt)
#   action:    the route's action (exporter/api/route constants)
#   tenant:    the tenant the request is about; "" means all tenants (or none)
#   user:      the user the request is about; "" when none
#   method, path
# Output: data.usagemeter.authz.decision = {allow, reason}
package usagemeter.authz

# Every action a route can carry. Anything else is denied, so a typo in a route cannot open it.
known_actions := {
	"events.ingest", "usage.read", "usage.read_users", "meters.read", "quotas.read",
	"quota.check", "audit.read", "admin", "billing.read", "billing.write", "plans.read",
	"plans.change", "analytics.read", "analytics.write", "reports.export", "public",
	"notifications.read", "notifications.write",
}

# Roles that act on every tenant (and on "all tenants").
global_grants := {
	"platform_admin": {"*"},
	"billing_admin": {
		"billing.read", "billing.write", "plans.read", "plans.change", "reports.export",
		"usage.read", "quotas.read", "meters.read", "analytics.read", "analytics.write",
	},
	# Operators see aggregates and metrics, never per-user detail nor exports of it.
	"sre": {"usage.read", "quotas.read", "meters.read", "analytics.read"},
}

# Roles that act only on the tenants listed in the principal (a tenant must be named).
# Per-user detail (usage.read_users) and exports (reports.export) are separate grants.
tenant_grants := {
	"saas_admin": {
		"usage.read", "usage.read_users", "quotas.read", "quota.check", "billing.read",
		"reports.export", "analytics.read", "analytics.write",
		# Their own tenants' notification rules and deliveries (issue #16).
		"notifications.read", "notifications.write",
	},
	"ingest": {"events.ingest"},
	"quota_checker": {"quota.check"},
}

# Tenant-independent catalogue reads: the meter and plan definitions.
catalogue_grants := {
	"saas_admin": {"meters.read", "plans.read"},
	"tenant_user": {"meters.read"},
}

# A tenant user sees their own usage only: their tenant, and the user they are.
self_grants := {"usage.read", "usage.read_users"}

roles contains role if some role in input.principal.roles

# The request names one tenant and the principal holds it (or holds every tenant: "*").
in_tenant if {
	input.tenant != ""
	some t in input.principal.tenants
	t in {input.tenant, "*"}
}

grants contains sprintf("role %s", [role]) if {
	some role in roles
	some granted in global_grants[role]
	granted in {input.action, "*"}
}

grants contains sprintf("role %s on tenant %s", [role, input.tenant]) if {
	some role in roles
	input.action in tenant_grants[role]
	in_tenant
}

# A batch of events names its tenants event by event, so the request itself has none: the key
# may try, and the ingest handler checks every event's tenant against the key's tenants.
grants contains "ingest key; tenants checked per event" if {
	"ingest" in roles
	input.action == "events.ingest"
	input.tenant == ""
	count(input.principal.tenants) > 0
}

# A quota check names its tenant in the body, so the request itself has none: a principal with
# quota.check on some tenants may try, and the handler checks the body's tenant.
grants contains "quota check; tenant checked by the handler" if {
	input.action == "quota.check"
	input.tenant == ""
	some role in roles
	"quota.check" in tenant_grants[role]
	count(input.principal.tenants) > 0
}

grants contains sprintf("role %s (catalogue)", [role]) if {
	some role in roles
	input.action in catalogue_grants[role]
}

grants contains "own usage" if {
	"tenant_user" in roles
	input.action in self_grants
	in_tenant
	input.user != ""
	input.user == input.principal.subject
}

# Public routes (health probes, signed webhooks) authenticate by other means.
grants contains "public endpoint" if input.action == "public"

default allow := false

allow if {
	input.action in known_actions
	count(grants) > 0
}

# Roles that could perform the action on some tenant: used to explain a tenant denial.
tenant_scoped if {
	some role in roles
	input.action in tenant_grants[role]
}

tenant_scoped if {
	"tenant_user" in roles
	input.action in self_grants
}

reason := concat("; ", sort(grants)) if {
	allow
} else := sprintf("unknown action %q", [input.action]) if {
	not input.action in known_actions
} else := "the principal has no roles" if {
	count(roles) == 0
} else := "a tenant must be named" if {
	tenant_scoped
	input.tenant == ""
} else := sprintf("tenant %q is not among the principal's tenants", [input.tenant]) if {
	tenant_scoped
	not in_tenant
} else := "tenant users may read their own usage only" if {
	"tenant_user" in roles
	input.action in self_grants
} else := sprintf("roles %v may not perform %s", [sort(roles), input.action])

decision := {"allow": allow, "reason": reason}

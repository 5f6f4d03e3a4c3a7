package usagemeter.authz_test

import data.usagemeter.authz

p(roles, tenants) := {"subject": "alice", "kind": "token", "roles": roles, "tenants": tenants}

req(principal, action, tenant) := {
	"principal": principal, "action": action, "tenant": tenant, "user": "",
	"method": "GET", "path": "/v1/x",
}

allowed(input_doc) if authz.decision.allow with input as input_doc

reason_of(input_doc) := r if {
	r := authz.decision.reason with input as input_doc
}

# platform_admin: everything, every tenant, including admin and audit.
test_platform_admin_everything if {
	every action in authz.known_actions {
		allowed(req(p(["platform_admin"], []), action, ""))
		allowed(req(p(["platform_admin"], []), action, "acme"))
	}
	reason_of(req(p(["platform_admin"], []), "admin", "")) == "role platform_admin"
}

test_unknown_action_denied_even_for_platform_admin if {
	not allowed(req(p(["platform_admin"], []), "events.delete", ""))
	reason_of(req(p(["platform_admin"], []), "events.delete", "")) == `unknown action "events.delete"`
}

test_billing_admin if {
	every action in {"billing.read", "billing.write", "plans.read", "plans.change", "reports.export", "usage.read", "quotas.read", "meters.read", "analytics.read"} {
		allowed(req(p(["billing_admin"], []), action, "acme"))
		allowed(req(p(["billing_admin"], []), action, ""))
	}
	every action in {"usage.read_users", "audit.read", "admin", "events.ingest", "quota.check"} {
		not allowed(req(p(["billing_admin"], []), action, "acme"))
	}
	reason_of(req(p(["billing_admin"], []), "admin", "")) == `roles ["billing_admin"] may not perform admin`
}

test_sre_aggregates_not_users_nor_exports if {
	every action in {"usage.read", "quotas.read", "meters.read", "analytics.read"} {
		allowed(req(p(["sre"], []), action, ""))
		allowed(req(p(["sre"], []), action, "acme"))
	}
	every action in {"usage.read_users", "reports.export", "billing.read", "audit.read", "admin", "events.ingest"} {
		not allowed(req(p(["sre"], []), action, "acme"))
	}
}

test_saas_admin_own_tenant_only if {
	every action in {"usage.read", "usage.read_users", "quotas.read", "quota.check", "billing.read", "reports.export", "analytics.read"} {
		allowed(req(p(["saas_admin"], ["acme", "beta"]), action, "acme"))
		not allowed(req(p(["saas_admin"], ["acme", "beta"]), action, "globex"))
	}
	every action in {"usage.read", "usage.read_users", "quotas.read", "billing.read", "reports.export", "analytics.read"} {
		not allowed(req(p(["saas_admin"], ["acme", "beta"]), action, ""))
	}

	# A quota check carries its tenant in the body; the handler checks it against the principal.
	allowed(req(p(["saas_admin"], ["acme", "beta"]), "quota.check", ""))
	reason_of(req(p(["saas_admin"], ["acme"]), "usage.read", "acme")) == "role saas_admin on tenant acme"
	reason_of(req(p(["saas_admin"], ["acme"]), "usage.read", "globex")) == `tenant "globex" is not among the principal's tenants`
	reason_of(req(p(["saas_admin"], ["acme"]), "usage.read", "")) == "a tenant must be named"
}

test_saas_admin_read_only_billing_and_catalogue if {
	not allowed(req(p(["saas_admin"], ["acme"]), "billing.write", "acme"))
	not allowed(req(p(["saas_admin"], ["acme"]), "plans.change", "acme"))
	not allowed(req(p(["saas_admin"], ["acme"]), "audit.read", "acme"))
	allowed(req(p(["saas_admin"], ["acme"]), "meters.read", ""))
	allowed(req(p(["saas_admin"], ["acme"]), "plans.read", ""))
	reason_of(req(p(["saas_admin"], ["acme"]), "plans.read", "")) == "role saas_admin (catalogue)"
}

test_wildcard_tenant if {
	allowed(req(p(["saas_admin"], ["*"]), "usage.read", "anything"))
	not allowed(req(p(["saas_admin"], ["*"]), "usage.read", ""))
}

user_req(subject, user, action, tenant) := {
	"principal": {"subject": subject, "kind": "jwt", "roles": ["tenant_user"], "tenants": ["acme"]},
	"action": action, "tenant": tenant, "user": user, "method": "GET", "path": "/v1/usage",
}

test_tenant_user_own_usage_only if {
	allowed(user_req("bob", "bob", "usage.read", "acme"))
	allowed(user_req("bob", "bob", "usage.read_users", "acme"))
	reason_of(user_req("bob", "bob", "usage.read", "acme")) == "own usage"
	not allowed(user_req("bob", "carol", "usage.read_users", "acme"))
	reason_of(user_req("bob", "carol", "usage.read_users", "acme")) == "tenant users may read their own usage only"
	not allowed(user_req("bob", "", "usage.read", "acme"))
	not allowed(user_req("bob", "bob", "usage.read", "globex"))
	reason_of(user_req("bob", "bob", "usage.read", "globex")) == `tenant "globex" is not among the principal's tenants`
	not allowed(user_req("bob", "bob", "reports.export", "acme"))
	not allowed(user_req("bob", "bob", "quotas.read", "acme"))
	allowed(user_req("bob", "", "meters.read", ""))
}

key(tenants) := {"subject": "key:ingest-1", "kind": "api_key", "roles": ["ingest"], "tenants": tenants}

test_ingest_key_its_tenants_only if {
	allowed(req(key(["acme"]), "events.ingest", "acme"))
	not allowed(req(key(["acme"]), "events.ingest", "globex"))

	# A batch: tenants are checked per event by the handler.
	allowed(req(key(["acme"]), "events.ingest", ""))
	reason_of(req(key(["acme"]), "events.ingest", "")) == "ingest key; tenants checked per event"
	not allowed(req(key([]), "events.ingest", ""))
	every action in {"usage.read", "usage.read_users", "meters.read", "quota.check", "reports.export", "admin"} {
		not allowed(req(key(["acme"]), action, "acme"))
	}
}

test_quota_checker if {
	checker := {"subject": "key:app", "kind": "api_key", "roles": ["quota_checker"], "tenants": ["acme"]}
	allowed(req(checker, "quota.check", "acme"))
	not allowed(req(checker, "quota.check", "globex"))

	# The tenant is in the body: the request may pass, the handler checks the tenant.
	reason_of(req(checker, "quota.check", "")) == "quota check; tenant checked by the handler"
	not allowed(req(object.union(checker, {"tenants": []}), "quota.check", ""))
	not allowed(req(checker, "events.ingest", "acme"))
}

test_no_roles if {
	not allowed(req(p([], ["acme"]), "usage.read", "acme"))
	reason_of(req(p([], ["acme"]), "usage.read", "acme")) == "the principal has no roles"
}

test_public_needs_nothing if {
	allowed(req(p([], []), "public", ""))
	reason_of(req(p([], []), "public", "")) == "public endpoint"
}

test_unknown_role_grants_nothing if {
	not allowed(req(p(["root"], ["acme"]), "usage.read", "acme"))
}

test_several_roles_reasons_sorted if {
	reason_of(req(p(["sre", "saas_admin"], ["acme"]), "usage.read", "acme")) == "role saas_admin on tenant acme; role sre"
}

# Applying an insight changes state: analytics.write, not the read permission. A customer's
# admin applies their own tenant's insights, finance any tenant's; operators and end users only
# read.
test_analytics_write if {
	allowed(req(p(["saas_admin"], ["acme"]), "analytics.write", "acme"))
	not allowed(req(p(["saas_admin"], ["acme"]), "analytics.write", "globex"))
	allowed(req(p(["billing_admin"], []), "analytics.write", "acme"))
	allowed(req(p(["platform_admin"], []), "analytics.write", "acme"))
	not allowed(req(p(["sre"], []), "analytics.write", "acme"))
	allowed(req(p(["sre"], []), "analytics.read", "acme"))
	not allowed(req(p(["tenant_user"], ["acme"]), "analytics.write", "acme"))
	not allowed(req(p(["ingest"], ["acme"]), "analytics.write", "acme"))
}

# Notification rules and deliveries (issue #16): a saas_admin manages its own tenants', a
# platform_admin everyone's; listing every tenant's needs a global role.
test_notifications if {
	allowed(req(p(["saas_admin"], ["acme"]), "notifications.write", "acme"))
	allowed(req(p(["saas_admin"], ["acme"]), "notifications.read", "acme"))
	not allowed(req(p(["saas_admin"], ["acme"]), "notifications.write", "globex"))
	not allowed(req(p(["saas_admin"], ["acme"]), "notifications.read", ""))
	allowed(req(p(["platform_admin"], []), "notifications.write", "globex"))
	allowed(req(p(["platform_admin"], []), "notifications.read", ""))
	not allowed(req(p(["sre"], []), "notifications.read", "acme"))
	not allowed(req(p(["tenant_user"], ["acme"]), "notifications.read", "acme"))
	not allowed(req(p(["ingest"], ["acme"]), "notifications.write", "acme"))
}

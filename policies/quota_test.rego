package usagemeter.quota_test

import data.usagemeter.quota

q(extra) := object.union(
	{
		"tenant": "acme", "meter": "ai_tokens", "plan": "free", "amount": 10, "used": 50,
		"limit": 100, "warning_ratio": 0.8, "enforcement": "hard",
	},
	extra,
)

decide(extra) := d if {
	d := quota.decision with input as q(extra)
}

test_allow_within_limit if {
	d := decide({})
	d.result == "allow"
	d.remaining == 40
	d.limit_scope == "tenant"
	d.reason == "ai_tokens: 50 + 10 within the limit of 100"
	count(d) == 4
}

test_warn_near_limit if {
	d := decide({"used": 75})
	d.result == "warn"
	d.remaining == 15
	d.reason == "ai_tokens: 75 + 10 reaches 85% of the limit of 100"
}

test_no_early_warning_when_ratio_zero if {
	decide({"used": 75, "warning_ratio": 0}).result == "allow"
}

test_exactly_at_limit_is_admitted_with_warning if {
	d := decide({"used": 90})
	d.result == "warn"
	d.remaining == 0
}

test_hard_limit_denies if {
	d := decide({"used": 95})
	d.result == "deny"
	d.remaining == 5
	d.reason == "ai_tokens: 95 + 10 exceeds the hard limit of 100"
}

test_enforcement_defaults_to_hard if {
	decide({"used": 95, "enforcement": null}).result == "deny"
}

test_soft_limit_warns if {
	d := decide({"used": 95, "enforcement": "soft"})
	d.result == "warn"
	d.remaining == 0
	d.reason == "ai_tokens: 95 + 10 exceeds the soft limit of 100"
}

test_already_over_hard_limit_remaining_zero if {
	decide({"used": 150}).remaining == 0
}

test_unlimited_when_limit_absent if {
	d := quota.decision with input as object.remove(q({}), {"limit"})
	d == {"result": "allow", "unlimited": true, "reason": `no limit on ai_tokens for plan "free"`}
	decide({"limit": null}).unlimited
}

test_feature_not_in_plan_denied if {
	d := decide({"feature": "ai_search", "plan_features": ["search"]})
	d.result == "deny"
	d.remaining == 50
	d.reason == `feature "ai_search" is not in plan "free"`
	decide({"feature": "search", "plan_features": ["search"]}).result == "allow"

	# Absent plan features: every feature is in the plan.
	decide({"feature": "ai_search"}).result == "allow"
	decide({"feature": "", "plan_features": []}).result == "allow"
}

test_feature_denied_even_when_soft_or_unlimited if {
	decide({"feature": "x", "plan_features": [], "enforcement": "soft"}).result == "deny"
	decide({"feature": "x", "plan_features": [], "limit": null}).result == "deny"
}

test_invalid_amount if {
	decide({"amount": -1}).result == "deny"
	decide({"amount": 1.5}).reason == "amount must be a non-negative integer"
	decide({"amount": "10"}).result == "deny"
}

test_zero_limit if {
	d := decide({"used": 0, "amount": 0, "limit": 0})
	[d.result, d.remaining, d.reason] == ["warn", 0, "ai_tokens: 0 + 0 reaches 100% of the limit of 0"]
	decide({"used": 0, "amount": 1, "limit": 0}).result == "deny"
}

# User and feature limits: the tightest limit decides, and limit_scope says which.

user(used, limit) := {"scope": "user", "name": "alice", "used": used, "limit": limit}

feature(used, limit) := {"scope": "feature", "name": "chat", "used": used, "limit": limit}

test_user_limit_at_below_above if {
	# 10 of a user limit of 20 used, amount 10: exactly at the limit, admitted with a warning.
	at := decide({"scopes": [user(10, 20)]})
	[at.result, at.remaining, at.limit_scope] == ["warn", 0, "user"]
	at.reason == `ai_tokens of user "alice": 10 + 10 reaches 100% of the limit of 20`

	# Below the limit: within it, warning from 70 % (15 of 20), or allowed without early warning.
	below := decide({"scopes": [user(5, 20)], "warning_ratio": 0.7})
	[below.result, below.remaining, below.limit_scope] == ["warn", 5, "user"]
	below2 := decide({"scopes": [user(5, 20)], "warning_ratio": 0})
	[below2.result, below2.remaining, below2.limit_scope] == ["allow", 5, "user"]
	below2.reason == `ai_tokens of user "alice": 5 + 10 within the limit of 20`

	# One below: allowed, 1 left.
	one_below := decide({"scopes": [user(9, 20)], "warning_ratio": 0})
	[one_below.result, one_below.remaining, one_below.limit_scope] == ["allow", 1, "user"]

	# One above: denied, what is left as it stands.
	above := decide({"scopes": [user(11, 20)]})
	[above.result, above.remaining, above.limit_scope] == ["deny", 9, "user"]
	above.reason == `ai_tokens of user "alice": 11 + 10 exceeds the hard limit of 20`
}

test_feature_limit_decides_when_tightest if {
	d := decide({"feature": "chat", "scopes": [user(0, 1000), feature(95, 100)]})
	[d.result, d.remaining, d.limit_scope] == ["deny", 5, "feature"]
	d.reason == `ai_tokens of feature "chat": 95 + 10 exceeds the hard limit of 100`
}

test_tenant_limit_decides_when_tightest if {
	d := decide({"used": 95, "scopes": [user(0, 1000), feature(0, 1000)]})
	[d.result, d.remaining, d.limit_scope] == ["deny", 5, "tenant"]
}

test_least_remaining_wins_among_equal_results if {
	d := decide({"warning_ratio": 0, "scopes": [user(0, 30), feature(0, 25)]})
	[d.result, d.remaining, d.limit_scope] == ["allow", 15, "feature"]

	# Equal remaining: tenant before user before feature.
	e := decide({"warning_ratio": 0, "scopes": [feature(50, 100), user(50, 100)]})
	[e.result, e.remaining, e.limit_scope] == ["allow", 40, "tenant"]
	f := decide({"warning_ratio": 0, "limit": null, "scopes": [feature(0, 50), user(0, 50)]})
	[f.result, f.remaining, f.limit_scope] == ["allow", 40, "user"]
}

test_severity_beats_remaining if {
	# The user is past a soft limit (warn, remaining 0); the tenant is near its own (warn, 15):
	# a deny elsewhere would win, here both warn and the user has less left.
	d := decide({"used": 75, "enforcement": "soft", "scopes": [user(15, 20)]})
	[d.result, d.remaining, d.limit_scope] == ["warn", 0, "user"]
	d.reason == `ai_tokens of user "alice": 15 + 10 exceeds the soft limit of 20`

	# A hard deny with more left as it stands beats an admitted limit with less left.
	e := decide({"used": 0, "limit": 1000, "warning_ratio": 0, "scopes": [user(0, 10), feature(100, 105)]})
	[e.result, e.remaining, e.limit_scope] == ["deny", 5, "feature"]
}

test_scoped_limit_on_unlimited_tenant if {
	d := decide({"limit": null, "scopes": [user(0, 5)]})
	[d.result, d.remaining, d.limit_scope] == ["deny", 5, "user"]
	not d.unlimited
}

test_scopes_without_limit_or_unknown_scope_ignored if {
	d := decide({"limit": null, "scopes": [{"scope": "user", "name": "a", "used": 1, "limit": null}, {"scope": "tenant", "name": "x", "used": 0, "limit": 1}]})
	d.unlimited
	d.result == "allow"
}

test_denied_before_judging_reports_tightest_standing if {
	d := decide({"amount": -1, "scopes": [user(18, 20)]})
	[d.result, d.remaining, d.limit_scope] == ["deny", 2, "user"]
	d.reason == "amount must be a non-negative integer"
	e := decide({"feature": "x", "plan_features": [], "scopes": [feature(3, 4)]})
	[e.result, e.remaining, e.limit_scope] == ["deny", 1, "feature"]
}

test_billing_hold_denies_within_limit if {
	d := decide({"billing_hold": {"reason": "invoice INV-00000042 is overdue since 2026-11-14 (dunning step 3 of 3)"}})
	d.result == "deny"
	d.reason == "billing hold: invoice INV-00000042 is overdue since 2026-11-14 (dunning step 3 of 3)"
	d.remaining == 50
}

test_billing_hold_denies_unlimited if {
	d := decide({"limit": null, "billing_hold": {"reason": "overdue"}})
	d.result == "deny"
	d.unlimited == true
}

test_no_billing_hold_when_absent_or_null if {
	decide({"billing_hold": null}).result == "allow"
}

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
	decide({}) == {"result": "allow", "remaining": 40, "reason": "ai_tokens: 50 + 10 within the limit of 100"}
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
	decide({"used": 0, "amount": 0, "limit": 0}) == {"result": "warn", "remaining": 0, "reason": "ai_tokens: 0 + 0 reaches 100% of the limit of 0"}
	decide({"used": 0, "amount": 1, "limit": 0}).result == "deny"
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

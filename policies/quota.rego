# Quota admission: may a tenant (one of its users, for one feature) use `amount` more of a meter?
#
# Input (built by exporter/authz from the plan and the exact ledger usage):
#   tenant, meter, plan
#   amount:        what is about to be used (non-negative integer)
#   used:          the tenant's exact usage in the current period
#   limit:         the tenant's limit in force; absent or null = unlimited
#   warning_ratio: warn from this fraction of the limit (0 = never warn early)
#   enforcement:   "hard" (deny past the limit; the default) or "soft" (warn past it)
#   feature:       optional feature the usage is for
#   user:          optional user the usage is for
#   plan_features: features the plan allows; absent or null = all
#   scopes:        optional further limits that apply, each {scope: "user"|"feature", name,
#                  used, limit}: the user's usage against the user's limit, the feature's usage
#                  against the feature's limit (docs/quotas.md)
#   billing_hold:  optional {reason}: the tenant is on a dunning hold (an invoice overdue past
#                  the last step of a hard_deny schedule); every request is denied until it pays
# Output: data.usagemeter.quota.decision =
#   {result: allow|warn|deny, remaining?, unlimited?, limit_scope?, reason}
# Every limit that applies is judged alike; the decision is the tightest one's: the most severe
# result, then the least remaining, then tenant before user before feature. limit_scope says
# which it was.
package usagemeter.quota

valid_amount if {
	is_number(input.amount)
	input.amount >= 0
	input.amount == round(input.amount)
}

feature_denied if {
	is_string(input.feature)
	input.feature != ""
	is_array(input.plan_features)
	not input.feature in input.plan_features
}

soft if input.enforcement == "soft"

scope_order := {"tenant": 0, "user": 1, "feature": 2}

severity := {"allow": 0, "warn": 1, "deny": 2}

# Every limit that applies, with what it is called in reasons.
limits contains {"scope": "tenant", "label": input.meter, "used": input.used, "limit": input.limit} if {
	is_number(input.limit)
}

limits contains {"scope": s.scope, "label": sprintf("%s of %s %q", [input.meter, s.scope, s.name]), "used": s.used, "limit": s.limit} if {
	some s in input.scopes
	is_number(s.limit)
	scope_order[s.scope] > 0
}

# judge(l) is [result, remaining, reason] for one limit.
judge(l) := ["deny", max([0, l.limit - l.used]), sprintf("%s: %d + %d exceeds the hard limit of %d", [l.label, l.used, input.amount, l.limit])] if {
	l.used + input.amount > l.limit
	not soft
} else := ["warn", 0, sprintf("%s: %d + %d exceeds the soft limit of %d", [l.label, l.used, input.amount, l.limit])] if {
	l.used + input.amount > l.limit
} else := ["warn", l.limit - (l.used + input.amount), sprintf("%s: %d + %d reaches %d%% of the limit of %d", [l.label, l.used, input.amount, percent(l), l.limit])] if {
	input.warning_ratio > 0
	l.used + input.amount >= input.warning_ratio * l.limit
} else := ["allow", l.limit - (l.used + input.amount), sprintf("%s: %d + %d within the limit of %d", [l.label, l.used, input.amount, l.limit])]

# A limit of 0 is reached by any use at all.
percent(l) := floor((100 * (l.used + input.amount)) / l.limit) if l.limit > 0

else := 100

# The tightest limit first: most severe, least remaining, then in scope order.
ranked := sort([[0 - severity[j[0]], j[1], scope_order[l.scope], j, l.scope] |
	some l in limits
	j := judge(l)
])

# A dunning hold comes before everything else: nothing is admitted until the tenant pays.
billing_held if is_object(input.billing_hold)

verdict := ["deny", sprintf("billing hold: %s", [input.billing_hold.reason])] if {
	billing_held
} else := ["deny", sprintf("feature %q is not in plan %q", [input.feature, input.plan])] if {
	feature_denied
} else := ["deny", "amount must be a non-negative integer"] if {
	not valid_amount
} else := ["allow", sprintf("no limit on %s for plan %q", [input.meter, input.plan])] if {
	count(limits) == 0
}

# Denied before any limit is judged: what is left of the tightest limit as it stands.
standing := sort([[max([0, l.limit - l.used]), scope_order[l.scope], l.scope] | some l in limits])

decision := {"result": verdict[0], "unlimited": true, "reason": verdict[1]} if {
	count(limits) == 0
} else := {"result": verdict[0], "remaining": standing[0][0], "limit_scope": standing[0][2], "reason": verdict[1]} if {
	verdict
} else := {"result": ranked[0][3][0], "remaining": ranked[0][3][1], "limit_scope": ranked[0][4], "reason": ranked[0][3][2]}

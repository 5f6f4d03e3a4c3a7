# Quota admission: may a tenant use `amount` more of a meter?
#
# Input (built by exporter/authz from the plan and the exact ledger usage):
#   tenant, meter, plan
#   amount:        what is about to be used (non-negative integer)
#   used:          exact usage in the current period
#   limit:         the limit in force; absent or null = unlimited
#   warning_ratio: warn from this fraction of the limit (0 = never warn early)
#   enforcement:   "hard" (deny past the limit; the default) or "soft" (warn past it)
#   feature:       optional feature the usage is for
#   plan_features: features the plan allows; absent or null = all
#   billing_hold:  optional {reason}: the tenant is on a dunning hold (an invoice overdue past
#                  the last step of a hard_deny schedule); every request is denied until it pays
# Output: data.usagemeter.quota.decision = {result: allow|warn|deny, remaining?, unlimited?, reason}
package usagemeter.quota

limited if is_number(input.limit)

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

after := input.used + input.amount

over if after > input.limit

soft if input.enforcement == "soft"

near if {
	input.warning_ratio > 0
	after >= input.warning_ratio * input.limit
}

# A dunning hold comes before everything else: nothing is admitted until the tenant pays.
billing_held if is_object(input.billing_hold)

verdict := ["deny", sprintf("billing hold: %s", [input.billing_hold.reason])] if {
	billing_held
} else := ["deny", sprintf("feature %q is not in plan %q", [input.feature, input.plan])] if {
	feature_denied
} else := ["deny", "amount must be a non-negative integer"] if {
	not valid_amount
} else := ["allow", sprintf("no limit on %s for plan %q", [input.meter, input.plan])] if {
	not limited
} else := ["deny", sprintf("%s: %d + %d exceeds the hard limit of %d", [input.meter, input.used, input.amount, input.limit])] if {
	over
	not soft
} else := ["warn", sprintf("%s: %d + %d exceeds the soft limit of %d", [input.meter, input.used, input.amount, input.limit])] if {
	over
} else := ["warn", sprintf("%s: %d + %d reaches %d%% of the limit of %d", [input.meter, input.used, input.amount, percent, input.limit])] if {
	near
} else := ["allow", sprintf("%s: %d + %d within the limit of %d", [input.meter, input.used, input.amount, input.limit])]

# A limit of 0 is reached by any use at all.
percent := floor((100 * after) / input.limit) if input.limit > 0

else := 100

# What is left of the limit: after this amount when admitted, as it stands when denied.
remaining := max([0, input.limit - after]) if {
	verdict[0] != "deny"
} else := max([0, input.limit - input.used])

decision := {"result": verdict[0], "remaining": remaining, "reason": verdict[1]} if {
	limited
} else := {"result": verdict[0], "unlimited": true, "reason": verdict[1]}

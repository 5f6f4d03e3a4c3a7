package authz

import "github.com/usagemeter/usagemeter/config"

// QuotaInputFor builds the admission question for tenant on plan (config.PlanOf's answer,
// overrides applied): the limit of meter (nil when the plan sets none), the warning ratio,
// the enforcement and the plan's features. used is the ledger's exact figure for the current
// period; feature may be "".
func QuotaInputFor(plan config.Plan, tenant, meter, feature string, amount, used int64) QuotaInput {
	in := QuotaInput{
		Tenant: tenant, Meter: meter, Plan: plan.Name, Amount: amount, Used: used,
		WarningRatio: plan.WarningRatio, Enforcement: plan.Enforcement, Feature: feature,
		PlanFeatures: plan.Features,
	}
	if limit, ok := plan.Limits[meter]; ok {
		in.Limit = &limit
	}
	return in
}

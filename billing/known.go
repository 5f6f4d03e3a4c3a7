package billing

import (
	"context"
	"net/http"

	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/exporter/api/problem"
)

// knownTenant reports whether billing has anything to say about a tenant: the ledger saw it,
// the configuration lists it, or it has billing records (subscriptions, invoices, payments). A
// service without a ledger (seen nil) knows every tenant.
func (s *Service) knownTenant(ctx context.Context, tenant string) (bool, error) {
	if s.seen == nil || s.seen(tenant) {
		return true, nil
	}
	if s.cfg != nil {
		if _, ok := s.cfg.Load().Tenant(tenant); ok {
			return true, nil
		}
	}
	if subs, err := s.Subscriptions(ctx, tenant); err != nil || len(subs) > 0 {
		return len(subs) > 0, err
	}
	if invs, err := s.List(ctx, invoice.Filter{Tenant: tenant}); err != nil || len(invs) > 0 {
		return len(invs) > 0, err
	}
	pays, err := s.Payments(ctx, tenant)
	return len(pays) > 0, err
}

// tenantRead answers 404 (problem.UnknownTenant) for a tenant's billing reads when the tenant is
// not known, as the usage, quota, report and analytics reads do: a typo is not a tenant on the
// default plan with a zero balance.
func (s *Service) tenantRead(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tenant := r.PathValue("tenant")
		ok, err := s.knownTenant(r.Context(), tenant)
		if err != nil {
			writeErr(w, err)
			return
		}
		if !ok {
			problem.UnknownTenant(w, tenant)
			return
		}
		h(w, r)
	}
}

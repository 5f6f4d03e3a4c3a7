package billing

import (
	"context"
	"fmt"
	"math/big"
	"net/http"
	"sort"
	"strings"

	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/exporter/api/route"
)

// KPIGroupAll is the one group of KPIs that are not split by plan.
const KPIGroupAll = "all"

// KPIs are the billing key figures of one period, over every invoice of the period (or of one
// tenant), overall or per plan. Amounts are minor units of Currency.
type KPIs struct {
	Period   rating.Period `json:"period"`
	Tenant   string        `json:"tenant,omitempty"`
	Currency string        `json:"currency"`
	GroupBy  string        `json:"group_by,omitempty"`
	Groups   []KPIGroup    `json:"groups"`
	// Grants are the credit grants of the period (of every tenant, or of the tenant), not split
	// by plan: grants are the tenant's, not a plan's.
	Grants GrantKPIs `json:"credit_grants"`
}

// GrantKPIs are the credit grants of a period: granted (effective in it), used (drawn by its
// non-void invoices) and expired (expiring in it, what was left).
type GrantKPIs struct {
	Granted money.Amount `json:"granted"`
	Used    money.Amount `json:"used"`
	Expired money.Amount `json:"expired"`
}

// KPIGroup is the key figures of one group: every invoice ("all"), or the invoices of one plan.
// Void invoices count in nothing, but their plan still names a group (with zeros), so a plan
// whose invoices were all voided does not silently vanish from a per-plan table.
type KPIGroup struct {
	Group string `json:"group"`
	// Invoices and Tenants count the non-void invoices and their distinct tenants.
	Invoices int `json:"invoices"`
	Tenants  int `json:"tenants"`
	// Revenue is the invoiced subtotal (drafts included: they are the period's revenue so far).
	Revenue money.Amount `json:"revenue"`
	// ARPU is Revenue / Tenants rounded once by money.Round (halves away from zero).
	ARPU money.Amount `json:"arpu"`
	// OverageRevenue is the sum of the usage-charge lines (kind "usage"): revenue beyond the
	// base fees, minimum top-ups and adjustments.
	OverageRevenue money.Amount `json:"overage_revenue"`
	// Outstanding is what finalized invoices still owe (amount_remaining; drafts owe nothing yet).
	Outstanding money.Amount `json:"outstanding"`
	// MRR is the recurring revenue: the base-fee lines (prorated on plan changes).
	MRR money.Amount `json:"mrr"`
	// Collected is what was paid against the invoices (amount_paid).
	Collected money.Amount `json:"collected"`
	// Overdue is the part of Outstanding whose due date has passed.
	Overdue money.Amount `json:"overdue"`
	// CreditsUsed is credit drawn down at finalization: credit grants and prepaid credit.
	CreditsUsed money.Amount `json:"credits_used"`
}

// InvoicePlan is the plan an invoice is reported under: the plan in force at the end of its
// period (its last segment, so after any change inside the month), else, for documents without
// segments, the plan of its last base-fee line, else of the first line naming one, else "".
func InvoicePlan(inv *invoice.Invoice) string {
	if n := len(inv.Segments); n > 0 && inv.Segments[n-1].Plan != "" {
		return inv.Segments[n-1].Plan
	}
	plan := ""
	for _, l := range inv.Lines {
		if l.Kind == rating.KindBase {
			plan = l.Plan
		}
		if plan == "" && l.Plan != "" {
			plan = l.Plan
		}
	}
	return plan
}

// KPIs computes the key figures of a period from its invoices, in exact integer minor units.
// tenant "" means every tenant; groupBy is "" (one group, "all") or "plan".
func (s *Service) KPIs(ctx context.Context, tenant string, p rating.Period, groupBy string) (KPIs, error) {
	if groupBy != "" && groupBy != "plan" {
		return KPIs{}, fmt.Errorf("group_by %q: want plan or nothing: %w", groupBy, invoice.ErrInvalid)
	}
	invs, err := s.List(ctx, invoice.Filter{Tenant: tenant, Period: &p})
	if err != nil {
		return KPIs{}, fmt.Errorf("billing KPIs of %s: %w", p, err)
	}
	now := s.Now()
	type acc struct {
		KPIGroup
		tenants map[string]bool
	}
	groups := map[string]*acc{}
	currencies := map[string]bool{}
	for _, inv := range invs {
		name := KPIGroupAll
		if groupBy == "plan" {
			name = InvoicePlan(inv)
		}
		g := groups[name]
		if g == nil {
			g = &acc{KPIGroup: KPIGroup{Group: name}, tenants: map[string]bool{}}
			groups[name] = g
		}
		if inv.Status == invoice.Void {
			continue
		}
		currencies[inv.Currency.Code] = true
		g.Invoices++
		g.tenants[inv.Tenant] = true
		g.Revenue += inv.Subtotal
		for _, l := range inv.Lines {
			switch l.Kind {
			case rating.KindUsage:
				g.OverageRevenue += l.Amount
			case rating.KindBase:
				g.MRR += l.Amount
			}
		}
		if inv.Status != invoice.Draft {
			g.Outstanding += inv.AmountRemaining
			g.Collected += inv.AmountPaid
			g.CreditsUsed += inv.GrantsApplied + inv.CreditApplied
			if inv.DueAt != nil && inv.DueAt.Before(now) {
				g.Overdue += inv.AmountRemaining
			}
		}
	}
	cat := s.Catalogue()
	out := KPIs{Period: p, Tenant: tenant, Currency: cat.Currency.Code, GroupBy: groupBy}
	if tenant != "" {
		out.Currency = cat.CurrencyOf(tenant).Code
	}
	switch len(currencies) {
	case 0:
	case 1:
		for c := range currencies {
			out.Currency = c
		}
	default:
		// Sums across currencies mean nothing; the catalogue's currency changed mid-period.
		codes := make([]string, 0, len(currencies))
		for c := range currencies {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		return KPIs{}, fmt.Errorf("billing KPIs of %s: the invoices are in %s: %w", p, strings.Join(codes, " and "), invoice.ErrConflict)
	}
	grants, err := s.GrantTotals(ctx, tenant, p, out.Currency)
	if err != nil {
		return KPIs{}, fmt.Errorf("billing KPIs of %s: %w", p, err)
	}
	out.Grants = GrantKPIs{Granted: grants.Granted, Used: grants.Used, Expired: grants.Expired}
	if len(groups) == 0 {
		groups[KPIGroupAll] = &acc{KPIGroup: KPIGroup{Group: KPIGroupAll}}
	}
	out.Groups = make([]KPIGroup, 0, len(groups))
	for _, g := range groups {
		g.Tenants = len(g.tenants)
		if g.Tenants > 0 {
			g.ARPU = money.Round(big.NewRat(int64(g.Revenue), int64(g.Tenants)))
		}
		out.Groups = append(out.Groups, g.KPIGroup)
	}
	sort.Slice(out.Groups, func(i, j int) bool { return out.Groups[i].Group < out.Groups[j].Group })
	return out, nil
}

// kpis serves GET /v1/billing/kpis?period=YYYY-MM[&tenant=t][&group_by=plan].
func (s *Service) kpis(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v := q.Get("period")
	if v == "" {
		badRequest(w, "period: required (YYYY-MM)")
		return
	}
	p, err := rating.ParsePeriod(v)
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	k, err := s.KPIs(r.Context(), route.Tenant(r), p, q.Get("group_by"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, k)
}

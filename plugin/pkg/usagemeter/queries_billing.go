package usagemeter

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/plugin/pkg/upstream"
)

func init() {
	queryHandlers[QueryInvoices] = invoices
	queryHandlers[QueryBillingKPIs] = billingKPIs
	queryHandlers[QueryForecast] = forecastQuery
	queryHandlers[QueryInsights] = insightsQuery
	queryHandlers[QueryAudit] = auditQuery
}

// billingPeriod is the calendar month ("2026-11") the range ends in: invoices are monthly.
func (q *Query) billingPeriod() string {
	return q.Range.To.Add(-time.Nanosecond).UTC().Format("2006-01")
}

// major converts minor units to major units for display only (Grafana's currency units scale
// major units); exports keep the exact minor units.
func major(minor int64, currency string) float64 {
	return float64(minor) / math.Pow10(currencyDigits(currency))
}

func currencyDigits(c string) int {
	switch c {
	case "JPY", "KRW", "VND", "CLP", "ISK":
		return 0
	}
	return 2
}

func currencyUnit(c string) string {
	if c == "" {
		return "short"
	}
	return "currency" + c
}

// invoices: the invoices of the billing period the range ends in; with one invoice (one tenant),
// its lines too.
func invoices(ctx context.Context, d *Datasource, q *Query) (data.Frames, error) {
	if err := d.authorize(ctx, q.User, q.Tenant, "", route.ActionBillingRead); err != nil {
		return nil, err
	}
	invs, err := d.exporter.Invoices(ctx, q.Tenant, q.billingPeriod())
	if err != nil {
		return nil, err
	}
	slices.SortFunc(invs, func(a, b upstream.InvoiceSummary) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.ID, b.ID))
	})
	n := len(invs)
	ids, numbers, tenants, periods, statuses, currencies := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	subtotal, due, remaining := make([]float64, n), make([]float64, n), make([]float64, n)
	cur := ""
	for i, inv := range invs {
		ids[i], numbers[i], tenants[i], periods[i], statuses[i], currencies[i] = inv.ID, inv.Number, inv.Tenant, inv.Period, inv.Status, inv.Currency
		subtotal[i], due[i], remaining[i] = major(inv.Subtotal, inv.Currency), major(inv.AmountDue, inv.Currency), major(inv.AmountRemaining, inv.Currency)
		cur = inv.Currency
	}
	money := currencyUnit(cur)
	frames := data.Frames{frame("invoices", data.VisTypeTable,
		field("id", "Invoice", "", ids), field("number", "Number", "", numbers), field("tenant", "Tenant", "", tenants),
		field("period", "Period", "", periods), field("status", "Status", "", statuses), field("currency", "Currency", "", currencies),
		field("subtotal", "Subtotal", money, subtotal), field("amount_due", "Amount due", money, due),
		field("amount_remaining", "Amount remaining", money, remaining))}
	if q.Tenant != "" && n == 1 {
		inv, err := d.exporter.Invoice(ctx, invs[0].ID)
		if err != nil {
			return nil, err
		}
		m := len(inv.Lines)
		kinds, descs, meters := make([]string, m), make([]string, m), make([]string, m)
		qty, billable := make([]int64, m), make([]int64, m)
		amount := make([]float64, m)
		for i, l := range inv.Lines {
			kinds[i], descs[i], meters[i], qty[i], billable[i] = l.Kind, l.Description, l.Meter, l.Quantity, l.Billable
			amount[i] = major(l.Amount, inv.Currency.Code)
		}
		frames = append(frames, frame("invoice_lines", data.VisTypeTable,
			field("kind", "Kind", "", kinds), field("description", "Description", "", descs), field("meter", "Meter", "", meters),
			field("quantity", "Quantity", "short", qty), field("billable", "Billable", "short", billable),
			field("amount", "Amount", currencyUnit(inv.Currency.Code), amount)))
	}
	return frames, nil
}

// billingKPIs: revenue (invoiced subtotal), ARPU, overage revenue (usage-charge lines), the
// outstanding balance, MRR, collected, overdue, credits used and the period's credit grants
// (granted, used, expired) for the billing period, overall or per plan (groupBy "plan"). The billing
// service aggregates them from the period's invoices in exact minor units (GET /v1/billing/kpis):
// one request, whatever the number of invoices.
func billingKPIs(ctx context.Context, d *Datasource, q *Query) (data.Frames, error) {
	if err := d.authorize(ctx, q.User, q.Tenant, "", route.ActionBillingRead); err != nil {
		return nil, err
	}
	if q.GroupBy != "" && q.GroupBy != "plan" {
		return nil, &QueryError{"groupBy", fmt.Sprintf("%q: billing KPIs group by plan or nothing", q.GroupBy)}
	}
	k, err := d.exporter.BillingKPIs(ctx, q.Tenant, q.billingPeriod(), q.GroupBy)
	if err != nil {
		return nil, err
	}
	n := len(k.Groups)
	names := make([]string, n)
	rev, arpu, over, outst := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	mrr, coll, overdue, used := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	granted, grUsed, expired := make([]float64, n), make([]float64, n), make([]float64, n)
	cnt := make([]int64, n)
	for i, g := range k.Groups {
		names[i], cnt[i] = g.Group, int64(g.Tenants)
		rev[i], arpu[i] = major(g.Revenue, k.Currency), major(g.ARPU, k.Currency)
		over[i], outst[i] = major(g.OverageRevenue, k.Currency), major(g.Outstanding, k.Currency)
		mrr[i], coll[i] = major(g.MRR, k.Currency), major(g.Collected, k.Currency)
		overdue[i], used[i] = major(g.Overdue, k.Currency), major(g.CreditsUsed, k.Currency)
		// Grants are the tenants', not a plan's: the period's figures repeat on every row.
		granted[i], grUsed[i], expired[i] = major(k.Grants.Granted, k.Currency), major(k.Grants.Used, k.Currency), major(k.Grants.Expired, k.Currency)
	}
	money := currencyUnit(k.Currency)
	return data.Frames{frame("billing_kpis", data.VisTypeTable,
		field("group", "Plan", "", names),
		field("revenue", "Revenue", money, rev),
		field("tenants", "Invoiced tenants", "short", cnt),
		field("arpu", "ARPU", money, arpu),
		field("overage_revenue", "Overage revenue", money, over),
		field("outstanding", "Outstanding balance", money, outst),
		field("mrr", "MRR", money, mrr),
		field("collected", "Collected", money, coll),
		field("overdue", "Overdue", money, overdue),
		field("credits_used", "Credits used", money, used),
		field("credit_grants_granted", "Credit grants: granted", money, granted),
		field("credit_grants_used", "Credit grants: used", money, grUsed),
		field("credit_grants_expired", "Credit grants: expired", money, expired))}, nil
}

// forecastQuery: the analytics forecast of a meter (additive Holt-Winters) to the end of the
// billing period, with a 95 % band from the model's backtest error (±1.96 RMSE).
func forecastQuery(ctx context.Context, d *Datasource, q *Query) (data.Frames, error) {
	if err := q.requireTenant(); err != nil {
		return nil, err
	}
	if err := d.authorize(ctx, q.User, q.Tenant, "", route.ActionAnalyticsRead); err != nil {
		return nil, err
	}
	meter := cmp.Or(q.Meter, "ai_tokens")
	now := d.now().UTC()
	end := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	horizon := min(240, max(1, int(end.Sub(now.Truncate(time.Hour))/time.Hour))) // hours, the endpoint's cap
	f, err := d.exporter.Forecast(ctx, q.Tenant, meter, horizon)
	if err != nil {
		return nil, err
	}
	n := len(f.Points)
	ts, vs, lo, hi := make([]time.Time, n), make([]float64, n), make([]float64, n), make([]float64, n)
	band := 1.96 * f.Backtest.RMSE
	for i, p := range f.Points {
		ts[i], vs[i], lo[i], hi[i] = p.Time, p.Value, max(0, p.Value-band), p.Value+band
	}
	fr := frame("forecast", data.VisTypeGraph,
		field("time", "Time", "", ts),
		field("forecast", meter+" forecast", "short", vs),
		field("lower", "Lower bound (95 %)", "short", lo),
		field("upper", "Upper bound (95 %)", "short", hi))
	fr.Meta.Custom = map[string]any{"forecast_total": f.Total, "mape_percent": f.Backtest.MAPE, "rmse": f.Backtest.RMSE, "step": f.Step}
	return data.Frames{fr}, nil
}

// insightsQuery: optimization insights with their estimated savings.
func insightsQuery(ctx context.Context, d *Datasource, q *Query) (data.Frames, error) {
	if err := d.authorize(ctx, q.User, q.Tenant, "", route.ActionAnalyticsRead); err != nil {
		return nil, err
	}
	r, err := d.exporter.InsightsAt(ctx, q.Tenant, q.Range.To)
	if err != nil {
		return nil, err
	}
	n := len(r.Insights)
	tenants, kinds, titles, details, units := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	saved := make([]int64, n)
	money := make([]*float64, n)
	for i, in := range r.Insights {
		tenants[i], kinds[i], titles[i], details[i] = in.Tenant, in.Kind, in.Title, in.Detail
		saved[i], units[i] = in.Saving.Units, in.Saving.Unit
		if in.Saving.Amount != nil {
			m := major(*in.Saving.Amount, in.Saving.Currency)
			money[i] = &m
		}
	}
	return data.Frames{frame("insights", data.VisTypeTable,
		field("tenant", "Tenant", "", tenants), field("kind", "Kind", "", kinds), field("title", "Insight", "", titles),
		field("detail", "Detail", "", details), field("saving_units", "Saving (usage)", "short", saved),
		field("saving_unit", "Unit", "", units), field("saving_amount", "Saving (money)", "currencyUSD", money))}, nil
}

// auditMax bounds how many entries one panel shows: the newest in the range.
const auditMax = 10_000

// auditQuery: the audit trail entries in the range (and of the tenant, when one is selected).
// The trail names people: audit.read, never answered without a user.
func auditQuery(ctx context.Context, d *Datasource, q *Query) (data.Frames, error) {
	if err := d.authorize(ctx, q.User, q.Tenant, "", route.ActionAuditRead); err != nil {
		return nil, err
	}
	var entries []upstream.AuditEntry
	err := d.exporter.Audit(ctx, func(e upstream.AuditEntry) {
		if e.Time.Before(q.Range.From) || e.Time.After(q.Range.To) || (q.Tenant != "" && e.Tenant != q.Tenant) {
			return
		}
		if len(entries) == 2*auditMax { // keep the newest without growing without bound
			entries = append(entries[:0], entries[auditMax:]...)
		}
		entries = append(entries, e)
	})
	if err != nil {
		return nil, err
	}
	entries = entries[max(0, len(entries)-auditMax):]
	var (
		ts                                                  []time.Time
		seqs                                                []int64
		subjects, kinds, actions, paths, tenants, decisions []string
		reasons                                             []string
		statuses                                            []int64
	)
	// Newest first, as a log panel reads.
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		dec := "deny"
		if e.Allow {
			dec = "allow"
		}
		ts, seqs = append(ts, e.Time), append(seqs, int64(e.Seq))
		subjects, kinds, actions, paths = append(subjects, e.Subject), append(kinds, e.Kind), append(actions, e.Action), append(paths, e.Method+" "+e.Path)
		tenants, decisions, reasons, statuses = append(tenants, e.Tenant), append(decisions, dec), append(reasons, e.Reason), append(statuses, int64(e.Status))
	}
	return data.Frames{frame("audit", data.VisTypeTable,
		field("time", "Time", "", ts), field("seq", "Sequence", "none", seqs), field("subject", "Who", "", subjects),
		field("kind", "Principal kind", "", kinds), field("action", "Action", "", actions), field("request", "Request", "", paths),
		field("tenant", "Tenant", "", tenants), field("decision", "Decision", "", decisions), field("reason", "Reason", "", reasons),
		field("status", "HTTP status", "none", statuses))}, nil
}

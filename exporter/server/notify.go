package server

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/usagemeter/usagemeter/analytics"
	"github.com/usagemeter/usagemeter/analytics/report"
	"github.com/usagemeter/usagemeter/billing"
	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/quota"
	"github.com/usagemeter/usagemeter/notify"
)

// notifier is the notification pipeline Run starts: rule evaluation and delivery (notify/).
type notifier struct {
	eval     *notify.Evaluator
	dispatch *notify.Dispatcher
	interval time.Duration
}

// buildNotifications wires notify/ to the ledger (usage, commits), the quotas (limits in force)
// and billing (finalized invoices), and returns its API. afterCommit is what the ledger's
// OnCommit hook calls: from now on, a poke of the evaluator.
func (srv *Server) buildNotifications(cfg *config.Config, store *ledger.Store, reg prometheus.Registerer, quotas *quota.Evaluator,
	bill *billing.Service, afterCommit *atomic.Pointer[func()], log *slog.Logger) (*notify.Service, error) {
	ncfg, err := notify.ParseConfig(&cfg.Notifications)
	if err != nil {
		return nil, err
	}
	nstore := notify.NewStore(store.DB())
	metrics := notify.NewMetrics(reg)
	dispatch := notify.NewDispatcher(nstore, &ncfg.SMTP, log)
	dispatch.Workers, dispatch.Backoff, dispatch.Client.Timeout, dispatch.Metrics = ncfg.Workers, ncfg.Backoff(), ncfg.WebhookTimeout, metrics
	eval := notify.NewEvaluator(nstore, store, func(ctx context.Context, tenant, meterName string) (int64, bool) {
		limit, ok := quotas.Plan(ctx, tenant).Limits[meterName]
		return limit, ok
	}, log)
	eval.Fired, eval.OnEvent = dispatch.Wake, metrics.Event
	eval.Invoices = finalizedInvoices(bill)
	poke := eval.Poke
	afterCommit.Store(&poke)
	srv.notify = &notifier{eval: eval, dispatch: dispatch, interval: ncfg.EvaluateInterval}
	return &notify.Service{Store: nstore, Usage: store, Dispatcher: dispatch, Evaluator: eval}, nil
}

// run starts evaluation (at once: a crossing committed before a crash but not yet in the outbox
// is found) and delivery (what was pending is sent); the function returned stops both.
func (n *notifier) run(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { n.eval.Run(ctx, n.interval) })
	wg.Go(func() { n.dispatch.Run(ctx, n.interval) })
	return func() {
		cancel()
		wg.Wait()
	}
}

// finalizedInvoices feeds invoice_finalized rules from billing.
func finalizedInvoices(bill *billing.Service) notify.Invoices {
	return func(ctx context.Context, tenant string) ([]notify.InvoiceInfo, error) {
		invs, err := bill.List(ctx, invoice.Filter{Tenant: tenant})
		if err != nil {
			return nil, err
		}
		var out []notify.InvoiceInfo
		for _, inv := range invs {
			if inv.FinalizedAt == nil || inv.Number == "" || (inv.Status != invoice.Finalized && inv.Status != invoice.Paid) {
				continue
			}
			info := notify.InvoiceInfo{Number: inv.Number, Period: inv.Period.String(), Currency: inv.Currency.Code,
				Exponent: inv.Currency.Exponent, AmountDue: int64(inv.AmountDue), FinalizedAt: *inv.FinalizedAt}
			if inv.DueAt != nil {
				info.DueAt = *inv.DueAt
			}
			out = append(out, info)
		}
		return out, nil
	}
}

// executiveSummaries feeds schedule_summary rules: analytics' executive report of the tenant.
func executiveSummaries(store *ledger.Store, cfg func() *config.Config, an *analytics.Service) notify.Summaries {
	return func(ctx context.Context, tenant string, now time.Time) (notify.Summary, error) {
		src := &report.Source{Store: store, TenantName: func(t string) string { c, _ := cfg().Tenant(t); return c.Name }}
		x, err := src.ExecutiveSummary(ctx, []string{tenant}, now, an.Engine())
		if err != nil {
			return notify.Summary{}, err
		}
		sum := notify.Summary{From: x.From, To: x.To, InsightCount: x.InsightCount, InsightSavings: x.InsightSavings,
			Currency: x.InsightCurrency, Notes: x.Notes}
		if cur, err := money.ParseCurrency(x.InsightCurrency); err == nil {
			sum.Exponent = cur.Exponent
		}
		for _, k := range x.KPIs {
			sum.KPIs = append(sum.KPIs, notify.SummaryKPI{Name: k.Name, Meter: k.Meter, Unit: k.Unit, Value: k.Value, Previous: k.Previous, Percent: k.Percent})
		}
		return sum, nil
	}
}

// Package billing wires the billing packages together for the exporter: one Service that runs
// invoices, records payments, changes plans and serves the billing HTTP API.
//
//	money     exact amounts and the one rounding rule
//	pricing   the catalogue (config `billing:` section) and the charge models
//	rating    usage → invoice lines, proration, minimum commitment, plan suggestions
//	invoice   life cycle, numbering, payments, credit, subscriptions (Pebble, keys b/)
//	render    JSON, CSV, PDF
//	stripehook  Stripe webhooks
//	billingcli  usagectl invoices|payments|plans
package billing

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/stripehook"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// StockFunc is Options.Stock for a set of meter definitions: stock meters are levels and are
// prorated by amount, flow meters by allowance (see package rating).
func StockFunc(defs []meter.Def) func(string) bool {
	stock := map[string]bool{}
	for _, d := range defs {
		stock[d.Name] = d.Kind == meter.Stock
	}
	return func(name string) bool { return stock[name] }
}

// Options are invoice.Options; see there.
type Options = invoice.Options

// Service is the billing back office plus its HTTP API. PlanAt (promoted from invoice.Service)
// is the effective-dated plan lookup quotas should use.
type Service struct {
	*invoice.Service
	hook *stripehook.Handler
	coll collector
	log  *slog.Logger
	// Audit receives every dunning step (the exporter sets its audit log). May be nil.
	Audit Auditor
	dun   *dunningMetrics
	dunMu sync.Mutex
	cfg   *atomic.Pointer[config.Config] // set by NewFromConfig
	// seen reports whether the ledger saw a tenant (ledger.Store.Seen), set by NewFromConfig on
	// a ledger; nil: every tenant is known (see knownTenant).
	seen func(string) bool
}

// New opens the billing service on the ledger's DB.
func New(o Options) (*Service, error) {
	inv, err := invoice.New(o)
	if err != nil {
		return nil, err
	}
	s := &Service{Service: inv, log: o.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.dun = newDunningMetrics(s)
	s.hook = &stripehook.Handler{
		Secret: func() string {
			c := inv.Catalogue()
			return c.WebhookSecret()
		},
		Recorder: inv,
		Log:      o.Logger,
	}
	return s, nil
}

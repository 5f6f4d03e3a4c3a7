package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Catalogue derives the price catalogue from a configuration. With a `billing:` section it must
// price exactly the plans of `plans:`. Without one, the default prices (pricing.DefaultYAML)
// apply to the plans of the same name, and any other configured plan is free of charge, so that
// a configuration without billing still runs. Tenants' configured names become buyer names
// unless billing.customers says otherwise.
func Catalogue(cfg *config.Config) (cat pricing.Catalogue, err error) {
	defer func() {
		var fe *config.FieldError
		if errors.As(err, &fe) && fe.File == "" {
			fe.File = cfg.File // so users read "config.yml:42: billing.plans[1]...: ..."
		}
	}()
	names := make([]string, 0, len(cfg.Plans))
	for _, p := range cfg.Plans {
		names = append(names, p.Name)
	}
	if cfg.Billing.Kind != 0 {
		if cat, err = pricing.ParseConfig(&cfg.Billing); err != nil {
			return cat, err
		}
		if err := cat.CheckPlans(names); err != nil {
			return cat, err
		}
	} else {
		def := pricing.Default()
		cat = def
		cat.Plans = nil
		for _, n := range names {
			if p, ok := def.Plan(n); ok {
				cat.Plans = append(cat.Plans, *p)
			} else {
				cat.Plans = append(cat.Plans, pricing.Plan{Name: n, Description: "not priced: no billing section"})
			}
		}
	}
	for _, t := range cfg.Tenants {
		if _, ok := cat.Customers[t.ID]; !ok && t.Name != "" {
			if cat.Customers == nil {
				cat.Customers = map[string]pricing.Party{}
			}
			cat.Customers[t.ID] = pricing.Party{Name: t.Name}
		}
	}
	if len(cat.Plans) == 0 {
		return cat, &config.FieldError{Field: "plans", Msg: "billing needs at least one plan"}
	}
	return cat, nil
}

// NewFromConfig opens the billing service with everything the configuration decides: prices,
// stock meters, plan limits (for suggestions), the tenant → plan mapping and the configured
// tenants. Reload swaps the configuration later.
func NewFromConfig(cfg *config.Config, db *pebble.DB, usage rating.Usage, logger *slog.Logger) (*Service, error) {
	cat, err := Catalogue(cfg)
	if err != nil {
		return nil, fmt.Errorf("billing: %w", err)
	}
	cur := &atomic.Pointer[config.Config]{}
	cur.Store(cfg)
	o := Options{
		DB: db, Catalogue: cat, Usage: usage, Logger: logger,
		Stock: func(m string) bool {
			d, ok := cur.Load().Meter(m)
			return ok && d.Kind == meter.Stock
		},
		Limits: func(plan string) map[string]int64 {
			p, _ := cur.Load().Plan(plan)
			return p.Limits
		},
		DefaultPlan: func(tenant string) string { return cur.Load().PlanOf(tenant).Name },
		Tenants: func() []string {
			c := cur.Load()
			ids := make([]string, 0, len(c.Tenants))
			for _, t := range c.Tenants {
				ids = append(ids, t.ID)
			}
			return ids
		},
		TenantStart: func(tenant string) time.Time {
			t, _ := cur.Load().Tenant(tenant)
			return t.Start
		},
	}
	if b, ok := usage.(interface {
		Began(context.Context) (time.Time, error)
	}); ok {
		o.Began = b.Began
	}
	s, err := New(o)
	if err != nil {
		return nil, err
	}
	s.cfg = cur
	if sn, ok := usage.(interface{ Seen(string) bool }); ok {
		s.seen = sn.Seen
	}
	return s, nil
}

// Reload applies a new configuration. Finalized invoices keep the prices they were issued with.
func (s *Service) Reload(cfg *config.Config) error {
	if s.cfg == nil {
		return fmt.Errorf("billing: Reload needs a service made by NewFromConfig")
	}
	cat, err := Catalogue(cfg)
	if err != nil {
		return fmt.Errorf("billing: %w", err)
	}
	s.cfg.Store(cfg)
	s.SetCatalogue(cat)
	return nil
}

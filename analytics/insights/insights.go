// Package insights finds ways for tenants to use (and pay) less: plan right-sizing, cheaper
// models serving the same feature, duplicate documents, storage held by deleted or idle data,
// inactive seats and ingest jobs that resend the same data. Each insight carries its estimated
// saving (usage units, and money where the billing catalogue prices the meter) and its evidence:
// the query and the numbers behind it. An insight marked applied is stored with its baseline
// (key prefix i/ of the ledger's database) and tracked: re-detecting it later shows how much of
// the saving was realized.
package insights

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/big"
	"sort"
	"time"

	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// Kinds of insight.
const (
	KindPlanRightSizing    = "plan_right_sizing"
	KindCheaperModel       = "cheaper_model"
	KindDuplicateDocuments = "duplicate_documents"
	KindUnbackedStorage    = "storage_deleted_data"
	KindIdleData           = "storage_idle_data"
	KindInactiveSeats      = "inactive_seats"
	KindDuplicateIngest    = "duplicate_ingest"
)

// Saving is an insight's estimated saving.
type Saving struct {
	// Units of Meter saved: per Period for flows, held for stocks.
	Units  int64  `json:"units"`
	Unit   string `json:"unit,omitempty"`
	Meter  string `json:"meter,omitempty"`
	Period string `json:"period,omitempty"` // e.g. "30d", "month 2026-10", "level"
	// Amount is the money saved in minor units of Currency, when priced.
	Amount   *int64 `json:"amount,omitempty"`
	Currency string `json:"currency,omitempty"`
	// Pricing says how Amount was computed, or why there is none.
	Pricing string `json:"pricing"`
}

// Number is one named figure of the evidence.
type Number struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
}

// Evidence is what an insight rests on: the query that reproduces it and its numbers.
type Evidence struct {
	Query   string   `json:"query"`
	Numbers []Number `json:"numbers"`
}

// Insight is one optimization opportunity.
type Insight struct {
	ID       string     `json:"id"` // stable: the same opportunity has the same id in every run
	Kind     string     `json:"kind"`
	Tenant   string     `json:"tenant"`
	Subject  string     `json:"subject"` // what it is about within the tenant (a feature/model, a source, ...)
	Title    string     `json:"title"`
	Detail   string     `json:"detail"`
	Saving   Saving     `json:"saving"`
	Evidence []Evidence `json:"evidence"`
	At       time.Time  `json:"at"`
}

// ID derives an insight's stable id.
func ID(kind, tenant, subject string) string {
	h := sha256.Sum256([]byte(kind + "\x00" + tenant + "\x00" + subject))
	return hex.EncodeToString(h[:8])
}

// Pricing connects the billing package. Every field is optional: without a catalogue, savings
// are in usage units only, and plan right-sizing compares usage with plan limits and says that
// the price comparison is pending.
type Pricing struct {
	// Catalogue returns the price catalogue in force (billing's Service.Catalogue: it changes
	// on reload); nil: savings in units only.
	Catalogue func() pricing.Catalogue
	// Stock says which meters are levels, for rating (billing.StockFunc of the meters).
	Stock func(meter string) bool
	// PlanAt is the tenant's plan at an instant (billing's Service.PlanAt); nil: the
	// configuration's mapping.
	PlanAt func(ctx context.Context, tenant string, t time.Time) (string, error)
}

// catalogue returns the catalogue in force, or nil.
func (e *Engine) catalogue() *pricing.Catalogue {
	if e.Pricing.Catalogue == nil {
		return nil
	}
	c := e.Pricing.Catalogue()
	return &c
}

// rater rates on the catalogue in force, reading usage from the ledger; nil without billing.
func (e *Engine) rater(cat *pricing.Catalogue) *rating.Rater {
	if cat == nil {
		return nil
	}
	return &rating.Rater{Catalogue: cat, Usage: e.Store, Stock: e.Pricing.Stock, Limits: e.adviceLimits}
}

// adviceLimits are the limits a plan must leave room under before it is recommended: each limit
// times the plan's warning ratio. A plan the usage exceeds (a hard limit would refuse it), or
// would sit in its warning band, is no advice: without this, every plan fitted, and an
// enterprise tenant was told to move to free. No configuration: no limits known.
func (e *Engine) adviceLimits(plan string) map[string]int64 {
	if e.Config == nil {
		return nil
	}
	c := e.Config()
	if c == nil {
		return nil
	}
	p, ok := c.Plan(plan)
	if !ok {
		return nil
	}
	out := make(map[string]int64, len(p.Limits))
	for m, lim := range p.Limits {
		out[m] = int64(float64(lim) * p.WarningRatio)
	}
	return out
}

// Engine detects insights.
type Engine struct {
	Store *ledger.Store
	// Config returns the configuration in force (plans, limits, tenant mapping); may be nil.
	Config  func() *config.Config
	Pricing Pricing
	// ModelCosts is the provider cost of each AI model in minor units per million tokens; nil
	// means DefaultModelCosts. Models missing from it are never compared.
	ModelCosts map[string]int64
	// Lookback is the window of flow usage examined (default 30 days).
	Lookback time.Duration
	// InactiveDays: a user with no activity for that long holds an inactive seat (default 30).
	InactiveDays int
	// IdleDays: documents of users inactive for that long are idle data (default 90).
	IdleDays int
	// Index, when set, keeps the raw-event figures and the AI token usage up to date between
	// calls, so that Detect need not scan them (index.go); nil: every call scans.
	Index *Index
	Log   *slog.Logger
}

// DefaultModelCosts are illustrative provider costs (minor units per million tokens) for the
// simulator's models. Deployments set their own (analytics.Service.ModelCosts).
var DefaultModelCosts = map[string]int64{"gpt-large": 1000, "claude-mid": 300, "gpt-small": 50, "embed-v2": 10}

func (e *Engine) lookback() time.Duration {
	if e.Lookback <= 0 {
		return 30 * 24 * time.Hour
	}
	return e.Lookback
}

func (e *Engine) inactiveDays() int {
	if e.InactiveDays <= 0 {
		return 30
	}
	return e.InactiveDays
}

func (e *Engine) idleDays() int {
	if e.IdleDays <= 0 {
		return 90
	}
	return e.IdleDays
}

func (e *Engine) modelCosts() map[string]int64 {
	if e.ModelCosts == nil {
		return DefaultModelCosts
	}
	return e.ModelCosts
}

// planOf is the tenant's plan name at t.
func (e *Engine) planOf(ctx context.Context, tenant string, t time.Time) (string, error) {
	if e.Pricing.PlanAt != nil {
		return e.Pricing.PlanAt(ctx, tenant, t)
	}
	if e.Config != nil {
		if c := e.Config(); c != nil {
			return c.PlanOf(tenant).Name, nil
		}
	}
	return "", nil
}

// priceDelta prices the difference between two quantities of a meter on the tenant's plan for
// one month: the catalogue's charge of the meter at qty minus at reduced. It returns nil and the
// reason when the meter is not priced.
func (e *Engine) priceDelta(ctx context.Context, tenant, meterName string, at time.Time, qty, reduced int64) (*int64, string, string) {
	cat := e.catalogue()
	if cat == nil {
		return nil, "", "units only: the billing catalogue is not wired"
	}
	planName, err := e.planOf(ctx, tenant, at)
	if err != nil {
		return nil, "", "units only: " + err.Error()
	}
	plan, ok := cat.Plan(planName)
	if !ok {
		return nil, "", fmt.Sprintf("units only: plan %q has no price in the catalogue", planName)
	}
	for i := range plan.Charges {
		ch := &plan.Charges[i]
		if ch.Meter != meterName {
			continue
		}
		full := money.Round(ch.Apply(qty, ch.Included).Exact)
		less := money.Round(ch.Apply(max(reduced, 0), ch.Included).Exact)
		d := int64(full - less)
		return &d, cat.Currency.Code, fmt.Sprintf("catalogue plan %s, charge on %s (%s): %d at %d minus %d at %d minor units per month",
			plan.Name, meterName, ch.Model, full, qty, less, max(reduced, 0))
	}
	return nil, "", fmt.Sprintf("units only: plan %s does not charge %s", plan.Name, meterName)
}

// Detect runs every detector for the tenants at instant at (truncated to the hour), and returns
// the insights with a positive saving, largest money saving first, then largest units.
func (e *Engine) Detect(ctx context.Context, tenants []string, at time.Time) ([]Insight, error) {
	at = at.UTC().Truncate(time.Hour)
	var out []Insight
	raw, models, err := e.inputs(ctx, tenants, at)
	if err != nil {
		return nil, err
	}
	l, err := e.lookup(ctx, tenants, at)
	if err != nil {
		return nil, err
	}
	for _, t := range tenants {
		for _, d := range []func(context.Context, string, time.Time) ([]Insight, error){
			e.planRightSizing,
			func(ctx context.Context, t string, at time.Time) ([]Insight, error) {
				return e.cheaperModel(ctx, t, at, models)
			},
			func(ctx context.Context, t string, at time.Time) ([]Insight, error) {
				return e.duplicateDocs(ctx, t, at, raw[t], l)
			},
			func(ctx context.Context, t string, at time.Time) ([]Insight, error) {
				return e.storage(ctx, t, at, raw[t], l)
			},
			func(ctx context.Context, t string, at time.Time) ([]Insight, error) {
				return e.inactiveSeats(ctx, t, at, l)
			},
			func(ctx context.Context, t string, at time.Time) ([]Insight, error) {
				return e.duplicateIngest(ctx, t, at, raw[t])
			},
		} {
			ins, err := d(ctx, t, at)
			if err != nil {
				return nil, fmt.Errorf("insights for %s: %w", t, err)
			}
			for _, in := range ins {
				in.ID = ID(in.Kind, in.Tenant, in.Subject)
				in.At = at
				out = append(out, in)
			}
		}
	}
	Sort(out)
	return out, nil
}

// inputs are what the detectors read beyond point lookups: the raw-event summaries and the AI
// token usage by feature and model of the tenants. The index answers when it can (an at at or
// after its frontier, the lookback it keeps); otherwise the raw events and rollups are scanned.
func (e *Engine) inputs(ctx context.Context, tenants []string, at time.Time) (map[string]*rawSummary, *modelRows, error) {
	if e.Index != nil {
		raw, models, ok, err := e.Index.inputs(ctx, tenants, at, e.lookback())
		if err != nil {
			return nil, nil, err
		}
		if ok && models == nil {
			// ai_tokens is not a meter the index keeps (not configured, or not a flow).
			models, err = e.modelUse(ctx, tenants, at)
		}
		if ok || err != nil {
			return raw, models, err
		}
	}
	scanned, err := e.scanRaw(ctx, tenants, at)
	if err != nil {
		return nil, nil, err
	}
	raw := make(map[string]*rawSummary, len(scanned))
	for t, rd := range scanned {
		raw[t] = summarize(rd)
	}
	models, err := e.modelUse(ctx, tenants, at)
	if err != nil {
		return nil, nil, err
	}
	return raw, models, nil
}

// Sort orders insights by money saved, then units saved, then id.
func Sort(ins []Insight) {
	amt := func(i Insight) int64 {
		if i.Saving.Amount == nil {
			return -1
		}
		return *i.Saving.Amount
	}
	sort.SliceStable(ins, func(i, j int) bool {
		if a, b := amt(ins[i]), amt(ins[j]); a != b {
			return a > b
		}
		if ins[i].Saving.Units != ins[j].Saving.Units {
			return ins[i].Saving.Units > ins[j].Saving.Units
		}
		return ins[i].ID < ins[j].ID
	})
}

func usageQuery(meterName, tenant string, from, to time.Time, groupBy string) string {
	q := fmt.Sprintf("GET /v1/usage?tenant=%s&meter=%s&from=%s&to=%s", tenant, meterName, from.Format(time.RFC3339), to.Format(time.RFC3339))
	if groupBy != "" {
		q += "&group_by=" + groupBy
	}
	return q
}

// mulDiv is a*b/c without overflow, rounded down.
func mulDiv(a, b, c int64) int64 {
	r := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
	return r.Quo(r, big.NewInt(c)).Int64()
}

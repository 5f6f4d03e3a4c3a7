// Package quota evaluates each tenant's usage against the limits of its plan, exactly, from the
// ledger: the current calendar month for flow meters, the current level for stock meters. It
// also evaluates the limits of single users and features of a tenant (docs/quotas.md).
package quota

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
	"github.com/usagemeter/usagemeter/exporter/quota/quotastate"
	"github.com/usagemeter/usagemeter/exporter/seriescap"
)

// States of a quota (see quotastate.Of).
const (
	StateOK       = quotastate.OK
	StateWarning  = quotastate.Warning
	StateExceeded = quotastate.Exceeded
)

// Status is one meter's quota for one tenant.
type Status struct {
	// Scope is whose usage is limited: the tenant's, one user's (User) or one feature's
	// (Feature).
	Scope        string     `json:"scope"`
	User         string     `json:"user,omitempty"`
	Feature      string     `json:"feature,omitempty"`
	Meter        string     `json:"meter"`
	Unit         string     `json:"unit,omitempty"`
	Kind         string     `json:"kind"`
	Used         int64      `json:"used"`
	Limit        int64      `json:"limit"`
	Ratio        float64    `json:"ratio"`
	WarningRatio float64    `json:"warning_ratio"`
	Enforcement  string     `json:"enforcement"`
	State        string     `json:"state"`
	PeriodStart  *time.Time `json:"period_start,omitempty"`
	PeriodEnd    *time.Time `json:"period_end,omitempty"`
}

// PlanSource says which plan a tenant is on at a time. The config's tenant list is the default;
// billing's subscriptions (plan changes through the API) take precedence when wired in.
type PlanSource interface {
	PlanAt(ctx context.Context, tenant string, t time.Time) (string, error)
}

// Evaluator computes quota states.
type Evaluator struct {
	store *ledger.Store
	cfg   func() *config.Config
	plans PlanSource
	now   func() time.Time
	sums  sumsCache
}

// New returns an evaluator reading the config in force through cfg (it changes on reload).
func New(store *ledger.Store, cfg func() *config.Config, plans PlanSource) *Evaluator {
	return &Evaluator{store: store, cfg: cfg, plans: plans, now: time.Now}
}

// Plan returns a tenant's plan in force now, with the tenant's overrides applied.
func (e *Evaluator) Plan(ctx context.Context, tenant string) config.Plan {
	c := e.cfg()
	if e.plans != nil {
		if name, err := e.plans.PlanAt(ctx, tenant, e.now()); err == nil && name != "" {
			if _, ok := c.Plan(name); ok {
				t, _ := c.Tenant(tenant)
				return c.WithOverrides(name, t)
			}
		}
	}
	return c.PlanOf(tenant)
}

// Tenant returns a tenant's plan in force and the quota of every limited meter of it, sorted
// by meter.
func (e *Evaluator) Tenant(ctx context.Context, tenant string) (config.Plan, []Status) {
	plan := e.Plan(ctx, tenant)
	return plan, e.statuses(tenant, plan)
}

// statuses evaluates a tenant's quotas under a plan already resolved.
func (e *Evaluator) statuses(tenant string, plan config.Plan) []Status {
	now := e.now().UTC()
	out := make([]Status, 0, len(plan.Limits))
	for name, limit := range plan.Limits {
		def, ok := e.store.Meter(name)
		if !ok {
			continue
		}
		used, _ := e.store.Current(name, tenant, now)
		out = append(out, evaluate(def, used, limit, plan, now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Meter < out[j].Meter })
	return out
}

func evaluate(def *meter.Def, used, limit int64, plan config.Plan, now time.Time) Status {
	st := Status{Scope: ScopeTenant, Meter: def.Name, Unit: def.Unit, Kind: string(def.Kind), Used: used, Limit: limit,
		WarningRatio: plan.WarningRatio, Enforcement: plan.Enforcement}
	if periodic(def) {
		start := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		end := ledger.MonthEnd(now)
		st.PeriodStart, st.PeriodEnd = &start, &end
	}
	st.State, st.Ratio = quotastate.Of(used, limit, plan.WarningRatio)
	return st
}

// periodic: flow meters and distinct-identity meters (monthly active users) reset every month.
func periodic(def *meter.Def) bool {
	return def.Kind == meter.Flow || def.Aggregation == meter.UniqueCount
}

// Collector exposes quotas as metrics: usage_quota_limit, usage_quota_used,
// usage_quota_warning_ratio, usage_quota_hard, usage_quota_period_end_timestamp_seconds and
// usage_tenant_info, for the configured tenants and every tenant with usage.
type Collector struct {
	e                                   *Evaluator
	limit, used, ratio, hard, end, info *prometheus.Desc
	// Cap, when set, holds each family to the per-metric series cap: label sets past it are
	// folded into one __overflow__ series and counted (usage_exporter_series_overflow_total).
	// Its value is the folded sum for usage_quota_used and usage_quota_limit, and the number of
	// folded series for the gauges that do not add up (ratio, hard, period end, tenant info).
	Cap *seriescap.Admission
}

// NewCollector returns the quota collector.
func NewCollector(e *Evaluator) *Collector {
	tm := []string{"tenant", "meter"}
	return &Collector{
		e:     e,
		limit: prometheus.NewDesc("usage_quota_limit", "Quota limit in force for a tenant and meter (plan, or tenant override).", tm, nil),
		used:  prometheus.NewDesc("usage_quota_used", "Exact usage counted against the quota: current calendar month for flow meters, current level for stock meters.", tm, nil),
		ratio: prometheus.NewDesc("usage_quota_warning_ratio", "Share of the limit at which the quota warns.", tm, nil),
		hard:  prometheus.NewDesc("usage_quota_hard", "1 when the limit is enforced hard (requests past it are denied), 0 when soft.", tm, nil),
		end:   prometheus.NewDesc("usage_quota_period_end_timestamp_seconds", "End of the current quota period (Unix time), for meters that reset monthly.", tm, nil),
		info:  prometheus.NewDesc("usage_tenant_info", "A tenant's plan.", []string{"tenant", "plan"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.limit, c.used, c.ratio, c.hard, c.end, c.info} {
		ch <- d
	}
}

// Families of the collector, in the order of their descriptors.
var quotaFamilies = []string{"usage_quota_limit", "usage_quota_used", "usage_quota_warning_ratio",
	"usage_quota_hard", "usage_quota_period_end_timestamp_seconds", "usage_tenant_info"}

// NewCappedCollector returns the quota collector under the series cap of adm (shared with the
// usage families, exporter/collector).
func NewCappedCollector(e *Evaluator, adm *seriescap.Admission) *Collector {
	c := NewCollector(e)
	c.Cap = adm
	adm.Declare(quotaFamilies...)
	return c
}

// capped emits the samples of one family under the cap: admitted label sets as they are, the
// folded ones as one __overflow__ series (their sum when sum is set, else their number).
type capped struct {
	c      *Collector
	ch     chan<- prometheus.Metric
	folded map[*prometheus.Desc]*foldedSum
}

type foldedSum struct {
	family string
	value  float64
	n      int
	sum    bool
}

// emit sends one sample of family, keyed for admission by its labels.
func (w *capped) emit(d *prometheus.Desc, family string, sum bool, v float64, labels ...string) {
	w.emitKeyed(d, family, strings.Join(labels, "\x00"), sum, v, labels...)
}

func (w *capped) emitKeyed(d *prometheus.Desc, family, key string, sum bool, v float64, labels ...string) {
	if w.c.Cap == nil || w.c.Cap.Admit(family, key, 1) {
		w.ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
		return
	}
	f := w.folded[d]
	if f == nil {
		f = &foldedSum{family: family, sum: sum}
		w.folded[d] = f
	}
	f.value += v
	f.n++
}

func (w *capped) flush() {
	for d, f := range w.folded {
		v := f.value
		if !f.sum {
			v = float64(f.n)
		}
		w.ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, seriescap.Overflow, seriescap.Overflow)
		w.c.Cap.ObserveFolded(f.family, f.n)
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx := context.Background()
	cfg := c.e.cfg()
	tenants := c.e.store.KnownTenants()
	known := make(map[string]bool, len(tenants))
	for _, t := range tenants {
		known[t] = true
	}
	for _, t := range cfg.Tenants {
		if !known[t.ID] {
			tenants = append(tenants, t.ID)
			known[t.ID] = true
		}
	}
	// Admission in tenant order, so that a restart admits the same tenants.
	slices.Sort(tenants)
	w := &capped{c: c, ch: ch, folded: map[*prometheus.Desc]*foldedSum{}}
	for _, tenant := range tenants {
		plan := c.e.Plan(ctx, tenant)
		// Keyed by tenant alone: a plan change keeps the tenant's admission.
		w.emitKeyed(c.info, quotaFamilies[5], tenant, false, 1, tenant, plan.Name)
		hard := 0.0
		if plan.Enforcement == config.Hard {
			hard = 1
		}
		for _, st := range c.e.statuses(tenant, plan) {
			w.emit(c.limit, quotaFamilies[0], true, float64(st.Limit), tenant, st.Meter)
			w.emit(c.used, quotaFamilies[1], true, float64(st.Used), tenant, st.Meter)
			w.emit(c.ratio, quotaFamilies[2], false, st.WarningRatio, tenant, st.Meter)
			w.emit(c.hard, quotaFamilies[3], false, hard, tenant, st.Meter)
			if st.PeriodEnd != nil {
				w.emit(c.end, quotaFamilies[4], false, float64(st.PeriodEnd.Unix()), tenant, st.Meter)
			}
		}
	}
	w.flush()
}

// Scopes of a limit.
const (
	ScopeTenant  = "tenant"
	ScopeUser    = "user"
	ScopeFeature = "feature"
)

// Limit is one user's or one feature's limit on a meter with its exact usage in the period.
type Limit struct {
	Scope string // ScopeUser or ScopeFeature
	Name  string // the user or the feature
	Used  int64
	Limit int64
}

// Scoped returns the user and feature limits that apply to a use of meter by user for feature
// (either may be ""), each with its exact usage: only those the plan sets are read. Usage of one
// user or feature is read from the ledger's hourly rollups of the period, filtered by the
// dimension (docs/quotas.md: what that costs per check).
func (e *Evaluator) Scoped(ctx context.Context, plan config.Plan, tenant, meterName, user, feature string) ([]Limit, error) {
	def, ok := e.store.Meter(meterName)
	if !ok {
		return nil, nil
	}
	var out []Limit
	where := map[string]string{}
	if user != "" {
		if limit, _, ok := plan.UserLimit(meterName, user); ok {
			out = append(out, Limit{Scope: ScopeUser, Name: user, Limit: limit})
			where["user"] = user
		}
	}
	if feature != "" {
		if limit, ok := plan.FeatureLimit(meterName, feature); ok {
			out = append(out, Limit{Scope: ScopeFeature, Name: feature, Limit: limit})
			where["feature"] = feature
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	used, err := e.usedWhere(ctx, def, tenant, where, e.now().UTC())
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Used = used[out[i].Scope]
	}
	return out, nil
}

// usedWhere is the exact usage of a meter by one value of each dimension of where (one user,
// one feature) of a tenant in the quota period, by dimension. Flow meters are read in one scan
// of the period's rollups (ledger.DimensionTotals); the others with Usage, dimension by
// dimension.
func (e *Evaluator) usedWhere(ctx context.Context, def *meter.Def, tenant string, where map[string]string, now time.Time) (map[string]int64, error) {
	from, to := quotaPeriod(now)
	if sums, ok, err := e.sums.read(ctx, e.store, def, tenant, from, to, now); err != nil {
		return nil, err
	} else if ok {
		totals := make(map[string]int64, len(where))
		for dim, value := range where {
			totals[dim] = sums.by[dim][value]
		}
		return totals, nil
	}
	totals, ok, err := e.store.DimensionTotals(ctx, def.Name, tenant, from, to, where)
	if err != nil {
		return nil, fmt.Errorf("usage of %s by %v of %s: %w", def.Name, where, tenant, err)
	}
	if ok {
		return totals, nil
	}
	totals = make(map[string]int64, len(where))
	for dim, value := range where {
		if totals[dim], err = e.usedBy(ctx, def, tenant, dim, value, now); err != nil {
			return nil, err
		}
	}
	return totals, nil
}

// quotaPeriod is the range of rollups a quota counts: the calendar month of now. Stock meters
// answer their level at its end, which is the current level (nothing is later than now).
func quotaPeriod(now time.Time) (time.Time, time.Time) {
	return time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC), ledger.MonthEnd(now)
}

// usedBy is the exact usage of a meter by one value of a dimension (one user, one feature) of a
// tenant in the quota period.
func (e *Evaluator) usedBy(ctx context.Context, def *meter.Def, tenant, dim, value string, now time.Time) (int64, error) {
	from, to := quotaPeriod(now)
	rows, err := e.store.Usage(ctx, ledger.Query{Meter: def.Name, Tenant: tenant, From: from, To: to, Where: map[string]string{dim: value}})
	if err != nil {
		return 0, fmt.Errorf("usage of %s by %s %q of %s: %w", def.Name, dim, value, tenant, err)
	}
	var used int64
	for _, r := range rows {
		used += r.Value
	}
	return used, nil
}

// usedByEach is the exact usage of a meter by every value of a dimension with usage in the
// quota period.
func (e *Evaluator) usedByEach(ctx context.Context, def *meter.Def, tenant, dim string, now time.Time) (map[string]int64, error) {
	from, to := quotaPeriod(now)
	if sums, ok, err := e.sums.read(ctx, e.store, def, tenant, from, to, now); err != nil {
		return nil, err
	} else if ok {
		out := make(map[string]int64, len(sums.by[dim]))
		for v, n := range sums.by[dim] {
			if v != "" {
				out[v] = n
			}
		}
		return out, nil
	}
	rows, err := e.store.Usage(ctx, ledger.Query{Meter: def.Name, Tenant: tenant, From: from, To: to, GroupBy: []string{dim}})
	if err != nil {
		return nil, fmt.Errorf("usage of %s by %s of %s: %w", def.Name, dim, tenant, err)
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		if v := r.Group[dim]; v != "" {
			out[v] += r.Value
		}
	}
	return out, nil
}

// UserStatuses lists the per-user quotas of a tenant under a plan already resolved: every named
// user with a limit, and under a default limit for every user, every user with usage in the
// period. Sorted by user, then meter.
func (e *Evaluator) UserStatuses(ctx context.Context, tenant string, plan config.Plan) ([]Status, error) {
	now := e.now().UTC()
	meters := map[string]bool{}
	for m := range plan.UserLimits {
		meters[m] = true
	}
	for _, limits := range plan.Users {
		for m := range limits {
			meters[m] = true
		}
	}
	var out []Status
	for name := range meters {
		def, ok := e.store.Meter(name)
		if !ok {
			continue
		}
		used, err := e.usedByEach(ctx, def, tenant, "user", now)
		if err != nil {
			return nil, err
		}
		users := map[string]bool{}
		if _, ok := plan.UserLimits[name]; ok {
			for u := range used {
				users[u] = true
			}
		}
		for u, limits := range plan.Users {
			if _, ok := limits[name]; ok {
				users[u] = true
			}
		}
		for u := range users {
			limit, _, _ := plan.UserLimit(name, u)
			st := evaluate(def, used[u], limit, plan, now)
			st.Scope, st.User = ScopeUser, u
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].User != out[j].User {
			return out[i].User < out[j].User
		}
		return out[i].Meter < out[j].Meter
	})
	return out, nil
}

// FeatureStatuses lists the per-feature quotas of a tenant under a plan already resolved, sorted
// by feature, then meter.
func (e *Evaluator) FeatureStatuses(ctx context.Context, tenant string, plan config.Plan) ([]Status, error) {
	now := e.now().UTC()
	byMeter := map[string]map[string]int64{} // meter → feature → limit
	for f, limits := range plan.FeatureLimits {
		for m, l := range limits {
			if byMeter[m] == nil {
				byMeter[m] = map[string]int64{}
			}
			byMeter[m][f] = l
		}
	}
	var out []Status
	for name, features := range byMeter {
		def, ok := e.store.Meter(name)
		if !ok {
			continue
		}
		used, err := e.usedByEach(ctx, def, tenant, "feature", now)
		if err != nil {
			return nil, err
		}
		for f, limit := range features {
			st := evaluate(def, used[f], limit, plan, now)
			st.Scope, st.Feature = ScopeFeature, f
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Feature != out[j].Feature {
			return out[i].Feature < out[j].Feature
		}
		return out[i].Meter < out[j].Meter
	})
	return out, nil
}

// Package analytics serves usagemeter's admin intelligence over HTTP: analytics under
// /v1/analytics (trends, seasonality, forecasts, adoption and retention, engagement, ingestion
// patterns, optimization insights) and reports under /v1/reports (usage, executive summary,
// compliance; CSV, JSON, PDF, XLSX). The computations live in small packages:
//
//	forecast   additive Holt-Winters and its backtest
//	stats      trends, seasonality, engagement, adoption/retention, ingestion, forecasts
//	insights   optimization insights, their savings and evidence; applied insights (i/ keys)
//	report     report definitions, the usage/executive/compliance reports, the four formats
//	reportcli  `usagectl report ...`
package analytics

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/usagemeter/usagemeter/analytics/insights"
	"github.com/usagemeter/usagemeter/analytics/stats"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// Service holds the dependencies of the analytics and report endpoints. Only Store is
// required.
type Service struct {
	Store *ledger.Store
	// Config returns the configuration in force: plans and limits (insights without billing),
	// the tenant → plan mapping, and the retention section (compliance report).
	Config func() *config.Config
	// Pricing connects billing (catalogue, rater, plan lookup) for savings in money.
	Pricing insights.Pricing
	// ModelCosts overrides insights.DefaultModelCosts (minor units per million tokens).
	ModelCosts map[string]int64
	// Insights keeps what insight detection reads of raw events and token rollups up to date
	// between requests (its Changes attached to the store); nil: every request scans.
	Insights *insights.Index
	// Audit is the access audit log, listed and verified by the compliance report.
	Audit *audit.Log
	// Authorize checks an extra action inside a handler (per-user detail: usage.read_users).
	Authorize func(r *http.Request, action, tenant string) error
	// May asks whether the caller holds an action, to choose what a report shows (the
	// compliance report's scope); unlike Authorize a "no" is not a refused request and is not
	// audited. nil: yes.
	May func(r *http.Request, action, tenant string) bool
	Log *slog.Logger
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Engine returns the insight engine over the service's store, configuration and pricing.
func (s *Service) Engine() *insights.Engine {
	return &insights.Engine{Store: s.Store, Config: s.Config, Pricing: s.Pricing, ModelCosts: s.ModelCosts, Index: s.Insights, Log: s.Log}
}

// Routes are the analytics and report endpoints.
func (s *Service) Routes() []route.Route {
	get := func(p, action string, h http.HandlerFunc) route.Route {
		return route.Route{Method: http.MethodGet, Pattern: p, Action: action, Audit: true, Handler: s.tenantsKnown(s.withHistory(p, h))}
	}
	export := func(rt route.Route) route.Route {
		rt.Streams = true
		return rt
	}
	return []route.Route{
		get("/v1/analytics/trends", route.ActionAnalyticsRead, s.trends),
		get("/v1/analytics/seasonality", route.ActionAnalyticsRead, s.seasonality),
		get("/v1/analytics/forecast", route.ActionAnalyticsRead, s.forecast),
		get("/v1/analytics/adoption", route.ActionAnalyticsRead, s.adoption),
		get("/v1/analytics/engagement", route.ActionAnalyticsRead, s.engagement),
		get("/v1/analytics/new-users", route.ActionAnalyticsRead, s.newUsers),
		get("/v1/analytics/ingestion", route.ActionAnalyticsRead, s.ingestion),
		get("/v1/analytics/insights", route.ActionAnalyticsRead, s.insights),
		get("/v1/analytics/insights/applied", route.ActionAnalyticsRead, s.applied),
		// Marking an insight applied records a baseline; it changes no usage or billing data.
		{Method: http.MethodPost, Pattern: "/v1/analytics/tenants/{tenant}/insights/{id}/apply", Action: route.ActionAnalyticsWrite, Audit: true, Handler: s.tenantsKnown(s.apply)},
		export(get("/v1/reports/usage", route.ActionReportsExport, s.usageReport)),
		export(get("/v1/reports/executive", route.ActionReportsExport, s.executiveReport)),
		export(get("/v1/reports/compliance", route.ActionReportsExport, s.complianceReport)),
		{Method: http.MethodPost, Pattern: "/v1/reports", Action: route.ActionReportsExport, Audit: true, Streams: true, Handler: s.definedReport},
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// fail answers an error: the caller's (400) or ours (500, logged).
func (s *Service) fail(w http.ResponseWriter, r *http.Request, err error) {
	var qe *ledger.QueryError
	var pe *paramError
	switch {
	case errors.Is(err, stats.ErrBadRequest), errors.As(err, &qe), errors.As(err, &pe), errors.Is(err, errBadReport):
		problem.Error(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, insights.ErrNotFound):
		problem.Error(w, http.StatusNotFound, err.Error())
	case errors.Is(err, errForbidden):
		problem.Error(w, http.StatusForbidden, err.Error())
	default:
		s.log().Error("analytics request failed", "path", r.URL.Path, "err", err)
		problem.Error(w, http.StatusInternalServerError, "the analytics query failed")
	}
}

type paramError struct{ name, msg string }

func (e *paramError) Error() string { return e.name + ": " + e.msg }

var (
	errForbidden = errors.New("per-user detail needs the usage.read_users permission")
	errBadReport = errors.New("invalid report")
)

// params reads query parameters with defaults; the first error is kept.
type params struct {
	r   *http.Request
	err error
}

func (p *params) str(name string) string { return p.r.URL.Query().Get(name) }

func (p *params) required(name string) string {
	v := p.str(name)
	if v == "" && p.err == nil {
		p.err = &paramError{name, "required"}
	}
	return v
}

func (p *params) time(name string, def time.Time) time.Time {
	v := p.str(name)
	if v == "" {
		return def
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil && p.err == nil {
		p.err = &paramError{name, fmt.Sprintf("%q is not an RFC 3339 time", v)}
	}
	return t.UTC()
}

func (p *params) int(name string, def, lo, hi int) int {
	v := p.str(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if (err != nil || n < lo || n > hi) && p.err == nil {
		p.err = &paramError{name, fmt.Sprintf("%q must be an integer from %d to %d", v, lo, hi)}
	}
	return n
}

func (p *params) list(name string) []string {
	var out []string
	for _, v := range p.r.URL.Query()[name] {
		for _, x := range strings.Split(v, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
	}
	return out
}

// allTenants lists tenants with usage in the last two months or any total.
func (s *Service) allTenants(r *http.Request, now time.Time) ([]string, error) {
	ts, err := s.Store.Tenants(r.Context(), stats.MonthStart(now).AddDate(0, -2, 0), now.Add(time.Hour))
	if err != nil {
		return nil, err
	}
	ts = append(ts, s.Store.KnownTenants()...)
	sort.Strings(ts)
	return slices.Compact(ts), nil
}

// TrendsResponse is the body of /v1/analytics/trends.
type TrendsResponse struct {
	At     time.Time      `json:"at"`
	Trends []stats.Growth `json:"trends"`
	// Total counts the tenant × meter pairs before the limit.
	Total int `json:"total"`
}

func (s *Service) trends(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	at := p.time("at", s.now())
	meters := p.list("meter")
	limit := p.int("limit", 100, 1, 100000)
	if p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	if len(meters) == 0 {
		meters = []string{"ai_tokens"}
	}
	tenants := []string{route.Tenant(r)}
	if tenants[0] == "" {
		var err error
		if tenants, err = s.allTenants(r, at); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	gs, err := stats.Trends(r.Context(), s.Store, tenants, meters, at)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	resp := TrendsResponse{At: stats.HourFloor(at), Total: len(gs), Trends: gs[:min(limit, len(gs))]}
	writeJSON(w, resp)
}

func (s *Service) seasonality(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	tenant := p.required("tenant")
	m := p.required("meter")
	to := p.time("to", stats.DayFloor(s.now()))
	from := p.time("from", to.Add(-28*stats.Day))
	s.respond(w, r, p, func() (any, error) { return stats.Seasonality(r.Context(), s.Store, tenant, m, from, to) })
}

func (s *Service) forecast(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	tenant := p.required("tenant")
	m := p.required("meter")
	o := stats.ForecastOptions{Season: p.str("season"), At: p.time("at", s.now())}
	o.History = p.int("history", 0, 0, 400*24)
	o.Horizon = p.int("horizon", 0, 0, 240)
	s.respond(w, r, p, func() (any, error) { return stats.Predict(r.Context(), s.Store, tenant, m, o) })
}

func (s *Service) adoption(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	tenant := p.required("tenant")
	to := p.time("to", stats.DayFloor(s.now()))
	from := p.time("from", to.Add(-56*stats.Day))
	s.respond(w, r, p, func() (any, error) { return stats.Adopt(r.Context(), s.Store, tenant, from, to) })
}

// respond answers with what compute returns, or with the first parameter or compute error.
func (s *Service) respond(w http.ResponseWriter, r *http.Request, p *params, compute func() (any, error)) {
	if p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	v, err := compute()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, v)
}

// known reports whether a tenant was ever named by an event or is configured: reads naming any
// other tenant answer 404 (problem.UnknownTenant), so that a typo is not mistaken for a tenant
// without usage.
func (s *Service) known(tenant string) bool {
	if s.Store.Seen(tenant) {
		return true
	}
	if s.Config == nil {
		return false
	}
	_, ok := s.Config().Tenant(tenant)
	return ok
}

// tenantsKnown answers 404 (problem.UnknownTenant) before h when the request names a tenant
// (?tenant=, a comma list, or the path's {tenant}) that is not known.
func (s *Service) tenantsKnown(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		named := (&params{r: r}).list("tenant")
		if t := r.PathValue("tenant"); t != "" {
			named = append(named, t)
		}
		if unknown := s.unknownTenants(named); len(unknown) > 0 {
			problem.UnknownTenant(w, unknown...)
			return
		}
		h(w, r)
	}
}

// unknownTenants lists the tenants of ts that are not known.
func (s *Service) unknownTenants(ts []string) []string {
	var out []string
	for _, t := range ts {
		if !s.known(t) {
			out = append(out, t)
		}
	}
	return out
}

// authorizeUsers checks the per-user permission for a tenant ("" = all).
func (s *Service) authorizeUsers(r *http.Request, tenant string) error {
	if s.Authorize == nil {
		return nil
	}
	if err := s.Authorize(r, route.ActionUsageUserRead, tenant); err != nil {
		return errForbidden
	}
	return nil
}

func (s *Service) engagement(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	tenant := p.required("tenant")
	at := p.time("at", s.now())
	days := p.int("inactive_days", 30, 1, 3650)
	users := p.str("users") == "true"
	if p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	if users {
		if err := s.authorizeUsers(r, tenant); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	e, err := stats.Engage(r.Context(), s.Store, tenant, at, days, users)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, e)
}

func (s *Service) ingestion(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	tenant := p.required("tenant")
	to := p.time("to", stats.HourFloor(s.now()))
	from := p.time("from", to.Add(-7*stats.Day))
	s.respond(w, r, p, func() (any, error) { return stats.Ingest(r.Context(), s.Store, tenant, from, to) })
}

// InsightsResponse is the body of /v1/analytics/insights.
type InsightsResponse struct {
	At       time.Time          `json:"at"`
	Insights []insights.Insight `json:"insights"`
}

func (s *Service) insights(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	at := p.time("at", s.now())
	if p.err != nil {
		s.fail(w, r, p.err)
		return
	}
	tenants := []string{route.Tenant(r)}
	if tenants[0] == "" {
		var err error
		if tenants, err = s.allTenants(r, at); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	ins, err := s.Engine().Detect(r.Context(), tenants, at)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if ins == nil {
		ins = []insights.Insight{}
	}
	writeJSON(w, InsightsResponse{At: at.Truncate(time.Hour), Insights: ins})
}

func (s *Service) apply(w http.ResponseWriter, r *http.Request) {
	tenant, id := r.PathValue("tenant"), r.PathValue("id")
	var body struct {
		Note string `json:"note"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
			s.fail(w, r, &paramError{"body", "want {\"note\": \"...\"}: " + err.Error()})
			return
		}
	}
	a, err := s.Engine().Apply(r.Context(), tenant, id, s.now(), body.Note)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
	writeJSON(w, a)
}

// AppliedResponse is the body of /v1/analytics/insights/applied.
type AppliedResponse struct {
	At      time.Time           `json:"at"`
	Applied []insights.Tracking `json:"applied"`
}

func (s *Service) applied(w http.ResponseWriter, r *http.Request) {
	at := s.now()
	trs, err := s.Engine().Track(r.Context(), route.Tenant(r), at)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if trs == nil {
		trs = []insights.Tracking{}
	}
	writeJSON(w, AppliedResponse{At: at.Truncate(time.Hour), Applied: trs})
}

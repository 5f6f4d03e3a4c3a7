package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/usagemeter/usagemeter/exporter/api/openapi/usageapi"
)

// The answer types below mirror the JSON of the usagemeter HTTP API (exporter/api, billing,
// analytics). They are declared here rather than imported so the plugin binary depends on the
// HTTP contract only, not on the ledger, billing and analytics packages behind it.

// UsageRow is one row of GET /v1/usage.
type UsageRow struct {
	WindowStart time.Time         `json:"window_start"`
	WindowEnd   time.Time         `json:"window_end"`
	Group       map[string]string `json:"group"`
	Value       int64             `json:"value"`
}

// Usage is the answer of GET /v1/usage.
type Usage struct {
	Meter string     `json:"meter"`
	Unit  string     `json:"unit"`
	Kind  string     `json:"kind"`
	Rows  []UsageRow `json:"rows"`
}

// UsageQuery are the parameters of GET /v1/usage.
type UsageQuery struct {
	Tenant, Meter, Window, User string
	GroupBy                     []string
	From, To                    time.Time
}

// Usage reads exact usage from the exporter.
func (c *Client) Usage(ctx context.Context, q UsageQuery) (*Usage, error) {
	from, to := q.From.UTC(), q.To.UTC()
	p := &usageapi.GetV1UsageParams{Tenant: q.Tenant, Meter: q.Meter, From: &from, To: &to,
		Window: opt[usageapi.GetV1UsageParamsWindow](q.Window), User: opt[string](q.User),
		GroupBy: opt[string](strings.Join(q.GroupBy, ","))}
	var u Usage
	return &u, c.CallJSON(ctx, &u, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
		return api.GetV1Usage(ctx, p)
	})
}

// QuotaStatus is one meter's quota state (exporter/quota.Status).
type QuotaStatus struct {
	Meter        string     `json:"meter"`
	Unit         string     `json:"unit"`
	Kind         string     `json:"kind"`
	Used         int64      `json:"used"`
	Limit        int64      `json:"limit"`
	Ratio        float64    `json:"ratio"`
	WarningRatio float64    `json:"warning_ratio"`
	Enforcement  string     `json:"enforcement"`
	State        string     `json:"state"`
	PeriodEnd    *time.Time `json:"period_end,omitempty"`
}

// Quotas is the answer of GET /v1/tenants/{tenant}/quotas.
type Quotas struct {
	Tenant string        `json:"tenant"`
	Plan   string        `json:"plan"`
	Quotas []QuotaStatus `json:"quotas"`
}

// Quotas reads a tenant's quota state.
func (c *Client) Quotas(ctx context.Context, tenant string) (*Quotas, error) {
	var q Quotas
	return &q, c.CallJSON(ctx, &q, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
		return api.GetV1TenantsTenantQuotas(ctx, tenant, nil)
	})
}

// AuditEntry is one entry of GET /v1/audit.
type AuditEntry struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Subject string    `json:"subject"`
	Kind    string    `json:"kind"`
	Action  string    `json:"action"`
	Method  string    `json:"method"`
	Path    string    `json:"path"`
	Tenant  string    `json:"tenant"`
	Allow   bool      `json:"allow"`
	Reason  string    `json:"reason"`
	Status  int       `json:"status"`
}

// Audit pages through the whole audit trail in order, 1,000 entries a request, handing each
// entry to keep. The API pages forward only (after=seq), so the newest entries are the last read.
func (c *Client) Audit(ctx context.Context, keep func(AuditEntry)) error {
	var after uint64
	for {
		var page struct {
			Entries []AuditEntry `json:"entries"`
			Next    string       `json:"next"`
		}
		p := &usageapi.GetV1AuditParams{After: ptr(int64(after)), Limit: ptr(1000)}
		if err := c.CallJSON(ctx, &page, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.GetV1Audit(ctx, p)
		}); err != nil {
			return err
		}
		for _, e := range page.Entries {
			keep(e)
		}
		if page.Next == "" || len(page.Entries) == 0 {
			return nil
		}
		after = page.Entries[len(page.Entries)-1].Seq
	}
}

// InvoiceSummary is one invoice of GET /v1/invoices (amounts in minor units).
type InvoiceSummary struct {
	ID              string `json:"id"`
	Number          string `json:"number"`
	Tenant          string `json:"tenant"`
	Period          string `json:"period"`
	Status          string `json:"status"`
	Currency        string `json:"currency"`
	Subtotal        int64  `json:"subtotal"`
	AmountDue       int64  `json:"amount_due"`
	AmountRemaining int64  `json:"amount_remaining"`
}

// Invoices lists invoices of a tenant ("" = all) for a billing period ("2026-11"; "" = all).
func (c *Client) Invoices(ctx context.Context, tenant, period string) ([]InvoiceSummary, error) {
	var r struct {
		Invoices []InvoiceSummary `json:"invoices"`
	}
	return r.Invoices, c.CallJSON(ctx, &r, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
		return api.GetV1Invoices(ctx, &usageapi.GetV1InvoicesParams{Tenant: opt[string](tenant), Period: opt[string](period)})
	})
}

// InvoiceLine is one line of an invoice (billing/rating.Line).
type InvoiceLine struct {
	Kind        string `json:"kind"`
	Description string `json:"description"`
	Plan        string `json:"plan"`
	Meter       string `json:"meter"`
	Quantity    int64  `json:"quantity"`
	Included    int64  `json:"included"`
	Billable    int64  `json:"billable"`
	Amount      int64  `json:"amount"`
}

// Invoice is the JSON of GET /v1/invoices/{id}.
type Invoice struct {
	ID       string `json:"id"`
	Tenant   string `json:"tenant"`
	Status   string `json:"status"`
	Currency struct {
		Code string `json:"code"`
	} `json:"currency"`
	Lines []InvoiceLine `json:"lines"`
}

// Invoice reads one invoice with its lines.
func (c *Client) Invoice(ctx context.Context, id string) (*Invoice, error) {
	var inv Invoice
	return &inv, c.CallJSON(ctx, &inv, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
		return api.GetV1InvoicesId(ctx, id, &usageapi.GetV1InvoicesIdParams{Format: ptr(usageapi.GetV1InvoicesIdParamsFormatJson)})
	})
}

// KPIGroup is one group of GET /v1/billing/kpis (amounts in minor units).
type KPIGroup struct {
	Group          string `json:"group"`
	Invoices       int    `json:"invoices"`
	Tenants        int    `json:"tenants"`
	Revenue        int64  `json:"revenue"`
	ARPU           int64  `json:"arpu"`
	OverageRevenue int64  `json:"overage_revenue"`
	Outstanding    int64  `json:"outstanding"`
	MRR            int64  `json:"mrr"`
	Collected      int64  `json:"collected"`
	Overdue        int64  `json:"overdue"`
	CreditsUsed    int64  `json:"credits_used"` // credit grants and prepaid credit drawn down
}

// GrantKPIs are a period's credit grants: granted, used and expired.
type GrantKPIs struct {
	Granted int64 `json:"granted"`
	Used    int64 `json:"used"`
	Expired int64 `json:"expired"`
}

// BillingKPIs is the answer of GET /v1/billing/kpis.
type BillingKPIs struct {
	Period   string     `json:"period"`
	Currency string     `json:"currency"`
	GroupBy  string     `json:"group_by"`
	Groups   []KPIGroup `json:"groups"`
	Grants   GrantKPIs  `json:"credit_grants"`
}

// BillingKPIs reads a billing period's key figures, aggregated by the billing service, for a
// tenant ("" = all), overall or per plan (groupBy "plan").
func (c *Client) BillingKPIs(ctx context.Context, tenant, period, groupBy string) (*BillingKPIs, error) {
	p := &usageapi.GetV1BillingKpisParams{Period: period, Tenant: opt[string](tenant), GroupBy: opt[usageapi.GetV1BillingKpisParamsGroupBy](groupBy)}
	var k BillingKPIs
	return &k, c.CallJSON(ctx, &k, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
		return api.GetV1BillingKpis(ctx, p)
	})
}

// Balance is GET /v1/tenants/{tenant}/balance.
type Balance struct {
	Tenant      string `json:"tenant"`
	Currency    string `json:"currency"`
	Outstanding int64  `json:"outstanding"`
	Credit      int64  `json:"credit"`
}

// FeatureAdoption is one feature of GET /v1/analytics/adoption.
type FeatureAdoption struct {
	Feature  string    `json:"feature"`
	Uses     int64     `json:"uses"`
	Adopters int       `json:"adopters"`
	Percent  float64   `json:"percent"`
	FirstUse time.Time `json:"first_use"`
	Curve    []int     `json:"curve"` // cumulative adopters per week
}

// Adoption is GET /v1/analytics/adoption.
type Adoption struct {
	Tenant      string            `json:"tenant"`
	From        time.Time         `json:"from"`
	To          time.Time         `json:"to"`
	Weeks       int               `json:"weeks"`
	ActiveUsers int               `json:"active_users"`
	Features    []FeatureAdoption `json:"features"`
}

// Engagement is GET /v1/analytics/engagement.
type Engagement struct {
	Tenant            string    `json:"tenant"`
	At                time.Time `json:"at"`
	DAU               int64     `json:"dau"`
	WAU               int64     `json:"wau"`
	MAU               int64     `json:"mau"`
	Stickiness        float64   `json:"stickiness"`
	KnownUsers        int       `json:"known_users"`
	InactiveDays      int       `json:"inactive_days"`
	InactiveUsers     int       `json:"inactive_users"`
	Logins            int64     `json:"logins"`
	LoginUsers        int       `json:"login_users"`
	SessionSeconds    int64     `json:"session_seconds"`
	AvgSessionSeconds float64   `json:"avg_session_seconds"`
}

// NewUsersWindow is one window of GET /v1/analytics/new-users.
type NewUsersWindow struct {
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	NewUsers    int64     `json:"new_users"`
}

// NewUsers is GET /v1/analytics/new-users: users first seen in [From, To), per window.
type NewUsers struct {
	Tenant      string           `json:"tenant"`
	From        time.Time        `json:"from"`
	To          time.Time        `json:"to"`
	Window      string           `json:"window"`
	NewUsers    int64            `json:"new_users"`
	Windows     []NewUsersWindow `json:"windows"`
	HistoryFrom *time.Time       `json:"history_from"`
}

// SourceStats is one ingestion source of GET /v1/analytics/ingestion.
type SourceStats struct {
	Source        string  `json:"source"`
	Jobs          int64   `json:"jobs"`
	Bytes         int64   `json:"bytes"`
	Records       int64   `json:"records"`
	AvgDurationMS float64 `json:"avg_duration_ms"`
	JobsPerDay    float64 `json:"jobs_per_day"`
	PeakHourly    int64   `json:"peak_hourly_jobs"`
	Slow          bool    `json:"slow"`
	Silent        bool    `json:"silent"`
}

// Ingestion is GET /v1/analytics/ingestion.
type Ingestion struct {
	Tenant  string        `json:"tenant"`
	Sources []SourceStats `json:"sources"`
}

// ForecastPoint is one forecast step.
type ForecastPoint struct {
	Time  time.Time `json:"time"`
	Value float64   `json:"value"`
}

// Forecast is GET /v1/analytics/forecast.
type Forecast struct {
	Tenant   string `json:"tenant"`
	Meter    string `json:"meter"`
	Step     string `json:"step"`
	Backtest struct {
		MAPE float64 `json:"mape_percent"`
		RMSE float64 `json:"rmse"`
	} `json:"backtest"`
	Points     []ForecastPoint `json:"points"`
	Total      float64         `json:"forecast_total"`
	HistoryEnd time.Time       `json:"history_end"`
}

// Insight is one optimization insight.
type Insight struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Tenant  string `json:"tenant"`
	Subject string `json:"subject"`
	Title   string `json:"title"`
	Detail  string `json:"detail"`
	Saving  struct {
		Units    int64  `json:"units"`
		Unit     string `json:"unit"`
		Amount   *int64 `json:"amount"`
		Currency string `json:"currency"`
	} `json:"saving"`
}

// Insights is GET /v1/analytics/insights.
type Insights struct {
	Insights []Insight `json:"insights"`
}

// Forecast reads GET /v1/analytics/forecast: the next horizon hours of a tenant's meter.
func (c *Client) Forecast(ctx context.Context, tenant, meter string, horizon int) (*Forecast, error) {
	var f Forecast
	return &f, c.CallJSON(ctx, &f, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
		return api.GetV1AnalyticsForecast(ctx, &usageapi.GetV1AnalyticsForecastParams{Tenant: tenant, Meter: meter, Horizon: &horizon})
	})
}

// InsightsAt reads GET /v1/analytics/insights as of at, for a tenant ("" = all).
func (c *Client) InsightsAt(ctx context.Context, tenant string, at time.Time) (*Insights, error) {
	var r Insights
	return &r, c.CallJSON(ctx, &r, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
		return api.GetV1AnalyticsInsights(ctx, &usageapi.GetV1AnalyticsInsightsParams{Tenant: opt[string](tenant), At: &at})
	})
}

// EngagementAt reads GET /v1/analytics/engagement as of at.
func (c *Client) EngagementAt(ctx context.Context, tenant string, at time.Time) (*Engagement, error) {
	var e Engagement
	return &e, c.CallJSON(ctx, &e, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
		return api.GetV1AnalyticsEngagement(ctx, &usageapi.GetV1AnalyticsEngagementParams{Tenant: tenant, At: &at})
	})
}

// NewUsersIn reads GET /v1/analytics/new-users: users first seen in [from, to), per window.
func (c *Client) NewUsersIn(ctx context.Context, tenant string, from, to time.Time, window string) (*NewUsers, error) {
	var nu NewUsers
	return &nu, c.CallJSON(ctx, &nu, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
		return api.GetV1AnalyticsNewUsers(ctx, &usageapi.GetV1AnalyticsNewUsersParams{Tenant: tenant, From: &from, To: &to,
			Window: opt[usageapi.GetV1AnalyticsNewUsersParamsWindow](window)})
	})
}

// MeterCount reads GET /v1/meters and counts the meters (the health check).
func (c *Client) MeterCount(ctx context.Context) (int, error) {
	var m struct {
		Meters []json.RawMessage `json:"meters"`
	}
	err := c.CallJSON(ctx, &m, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
		return api.GetV1Meters(ctx)
	})
	return len(m.Meters), err
}

// opt is an optional parameter of the generated client: nil when empty.
func opt[T ~string](s string) *T {
	if s == "" {
		return nil
	}
	v := T(s)
	return &v
}

func ptr[T any](v T) *T { return &v }

// PromSeries is one series of a Prometheus API matrix or vector.
type PromSeries struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"` // range queries
	Value  [2]any            `json:"value"`  // instant queries
}

// PromResult is the data of /api/v1/query and /api/v1/query_range.
type PromResult struct {
	ResultType string       `json:"resultType"`
	Result     []PromSeries `json:"result"`
}

// QueryRange runs a MetricsQL range query on VictoriaMetrics. Start and end are aligned to
// the step here, outwards: VictoriaMetrics aligns them itself (for its cache) by rounding down,
// which would drop the current, still filling step, the one users look at.
func (c *Client) QueryRange(ctx context.Context, expr string, from, to time.Time, step time.Duration) (*PromResult, error) {
	from = from.Truncate(step)
	if t := to.Truncate(step); t.Before(to) {
		to = t.Add(step)
	}
	v := url.Values{"query": {expr}, "start": {unix(from)}, "end": {unix(to)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	return c.prom(ctx, "/api/v1/query_range", v)
}

// Query runs an instant MetricsQL query.
func (c *Client) Query(ctx context.Context, expr string, at time.Time) (*PromResult, error) {
	return c.prom(ctx, "/api/v1/query", url.Values{"query": {expr}, "time": {unix(at)}})
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// Sample decodes a [timestamp, "value"] pair.
func Sample(p [2]any) (time.Time, float64, error) {
	ts, ok := p[0].(float64)
	if !ok {
		return time.Time{}, 0, fmt.Errorf("sample time %v: not a number", p[0])
	}
	s, ok := p[1].(string)
	if !ok {
		return time.Time{}, 0, fmt.Errorf("sample value %v: not a string", p[1])
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("sample value %q: %w", s, err)
	}
	return time.UnixMilli(int64(ts * 1000)).UTC(), v, nil
}

// Raw is a JSON value kept as is.
type Raw = json.RawMessage

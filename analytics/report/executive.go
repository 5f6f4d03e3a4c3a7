package report

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/usagemeter/usagemeter/analytics/forecast"
	"github.com/usagemeter/usagemeter/analytics/insights"
	"github.com/usagemeter/usagemeter/analytics/stats"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// KPI is one headline figure: its value over the period and over the period before.
type KPI struct {
	Name     string   `json:"name"`
	Meter    string   `json:"meter"`
	Unit     string   `json:"unit"`
	Value    int64    `json:"value"`
	Previous int64    `json:"previous"`
	Percent  *float64 `json:"percent,omitempty"`
}

// Executive is the executive summary's content.
type Executive struct {
	GeneratedAt time.Time `json:"generated_at"`
	From        time.Time `json:"from"` // the 30 days summarised
	To          time.Time `json:"to"`
	Tenants     int       `json:"tenants"`
	KPIs        []KPI     `json:"kpis"`
	// ChartMeter is charted: Daily over the period, History and Forecast by day.
	ChartMeter string             `json:"chart_meter"`
	Daily      []stats.Point      `json:"daily"`
	History    []stats.Point      `json:"history"`
	Forecast   []stats.Point      `json:"forecast"`
	Backtest   forecast.Errors    `json:"backtest"`
	Movers     []stats.Growth     `json:"top_movers"`
	Insights   []insights.Insight `json:"top_insights"`
	// InsightCount and InsightSavings sum every insight found (money in minor units of
	// InsightCurrency, for the priced ones).
	InsightCount    int      `json:"insight_count"`
	InsightSavings  int64    `json:"insight_savings"`
	InsightCurrency string   `json:"insight_currency,omitempty"`
	Notes           []string `json:"notes,omitempty"`
	// TenantNames maps the ids shown (movers, insights) to display names, where configured.
	TenantNames map[string]string `json:"tenant_names,omitempty"`
}

// MoverMinShare is the evidence threshold of a top mover: a tenant whose usage in both weeks is
// below this share of all tenants' usage in the last week is not a mover, however large its
// percentage (a test tenant going from 1 to 100 events is not news).
const MoverMinShare = 0.01

// topMovers keeps the growths that pass MoverMinShare and ranks them by the size of their weekly
// change in units, largest first.
func topMovers(gs []stats.Growth, n int) []stats.Growth {
	var total int64
	for _, g := range gs {
		total += g.WeekOverWeek.Current
	}
	floor := max(1, int64(float64(total)*MoverMinShare))
	var out []stats.Growth
	for _, g := range gs {
		if max(g.WeekOverWeek.Current, g.WeekOverWeek.Previous) >= floor && g.WeekOverWeek.Delta != 0 {
			out = append(out, g)
		}
	}
	abs := func(v int64) int64 {
		if v < 0 {
			return -v
		}
		return v
	}
	sort.SliceStable(out, func(i, j int) bool { return abs(out[i].WeekOverWeek.Delta) > abs(out[j].WeekOverWeek.Delta) })
	return out[:min(n, len(out))]
}

// Name is a tenant's display name, or its id.
func (x *Executive) Name(tenant string) string {
	if n := x.TenantNames[tenant]; n != "" {
		return n
	}
	return tenant
}

// KPIMeters are the meters summed into KPIs, when configured.
var KPIMeters = []struct{ Name, Meter string }{
	{"AI tokens", "ai_tokens"}, {"Documents held", "documents"}, {"Storage held", "storage_bytes"},
	{"Data ingested", "ingest_bytes"}, {"Active users (30 days)", "active_users"}, {"Logins", "logins"},
}

// ExecutiveSummary computes the summary of the 30 whole days before now, over tenants (all
// known tenants when empty).
func (s *Source) ExecutiveSummary(ctx context.Context, tenants []string, now time.Time, eng *insights.Engine) (*Executive, error) {
	to := stats.DayFloor(now)
	from := to.Add(-30 * stats.Day)
	prev := from.Add(-30 * stats.Day)
	if len(tenants) == 0 {
		var err error
		if tenants, err = s.tenants(ctx, &Definition{}, prev, to); err != nil {
			return nil, err
		}
	}
	x := &Executive{GeneratedAt: now.UTC(), From: from, To: to, Tenants: len(tenants), ChartMeter: "ai_tokens"}
	for _, k := range KPIMeters {
		def, ok := s.Store.Meter(k.Meter)
		if !ok {
			continue
		}
		kpi := KPI{Name: k.Name, Meter: k.Meter, Unit: def.Unit}
		for _, t := range tenants {
			cur, err := stats.Total(ctx, s.Store, t, k.Meter, from, to)
			if err != nil {
				return nil, err
			}
			p, err := stats.Total(ctx, s.Store, t, k.Meter, prev, from)
			if err != nil {
				return nil, err
			}
			kpi.Value += cur
			kpi.Previous += p
		}
		if kpi.Previous != 0 {
			pc := 100 * float64(kpi.Value-kpi.Previous) / float64(kpi.Previous)
			kpi.Percent = &pc
		}
		x.KPIs = append(x.KPIs, kpi)
	}
	if def, ok := s.Store.Meter(x.ChartMeter); !ok || def.Kind != meter.Flow {
		for _, m := range s.Store.Meters() {
			if m.Kind == meter.Flow {
				x.ChartMeter = m.Name
				break
			}
		}
	}
	// Twelve weeks of daily totals: the last 30 days are charted, all of it feeds the forecast.
	histFrom := to.Add(-84 * stats.Day)
	sum := make([]float64, 84)
	for _, t := range tenants {
		ys, err := stats.DailySeries(ctx, s.Store, t, x.ChartMeter, histFrom, to)
		if err != nil {
			return nil, err
		}
		for i, v := range ys {
			sum[i] += v
		}
	}
	for i, v := range sum {
		p := stats.Point{Time: histFrom.Add(time.Duration(i) * stats.Day), Value: v}
		x.History = append(x.History, p)
		if i >= 84-30 {
			x.Daily = append(x.Daily, p)
		}
	}
	if bt, err := forecast.Backtest(sum, 7, 7); err == nil {
		x.Backtest = bt
	}
	if m, err := forecast.Fit(sum, 7); err == nil {
		for i, v := range m.Forecast(7) {
			x.Forecast = append(x.Forecast, stats.Point{Time: to.Add(time.Duration(i) * stats.Day), Value: max(v, 0)})
		}
	} else {
		x.Notes = append(x.Notes, "no forecast: "+err.Error())
	}
	movers, err := stats.Trends(ctx, s.Store, tenants, []string{x.ChartMeter}, to)
	if err != nil {
		return nil, err
	}
	x.Movers = topMovers(movers, 5)
	x.Notes = append(x.Notes, fmt.Sprintf("Top movers: ranked by the size of the weekly change; tenants below %.0f%% of the week's %s are left out.", 100*MoverMinShare, x.chartName()))
	if eng != nil {
		ins, err := eng.Detect(ctx, tenants, to)
		if err != nil {
			return nil, fmt.Errorf("executive summary insights: %w", err)
		}
		x.InsightCount = len(ins)
		for _, in := range ins {
			if in.Saving.Amount != nil && (x.InsightCurrency == "" || x.InsightCurrency == in.Saving.Currency) {
				x.InsightSavings += *in.Saving.Amount
				x.InsightCurrency = in.Saving.Currency
			}
		}
		x.Insights = ins[:min(5, len(ins))]
	} else {
		x.Notes = append(x.Notes, "insights not wired")
	}
	if s.TenantName != nil {
		x.TenantNames = map[string]string{}
		for _, g := range x.Movers {
			x.TenantNames[g.Tenant] = s.TenantName(g.Tenant)
		}
		for _, in := range x.Insights {
			x.TenantNames[in.Tenant] = s.TenantName(in.Tenant)
		}
	}
	return x, nil
}

// WriteTables writes the summary as tables (CSV, JSON, XLSX and a tabular PDF).
func (x *Executive) WriteTables(t Tables) error {
	if err := t.Begin("KPIs", []string{"kpi", "meter", "unit", "last_30_days", "previous_30_days", "change_percent"},
		fmt.Sprintf("%s to %s, %d tenants", x.From.Format(time.DateOnly), x.To.Format(time.DateOnly), x.Tenants)); err != nil {
		return err
	}
	for _, k := range x.KPIs {
		if err := t.Row(k.Name, k.Meter, k.Unit, k.Value, k.Previous, k.Percent); err != nil {
			return err
		}
	}
	if err := t.Begin("Daily "+x.ChartMeter, []string{"day", "value"}); err != nil {
		return err
	}
	for _, p := range x.Daily {
		if err := t.Row(p.Time, p.Value); err != nil {
			return err
		}
	}
	if err := t.Begin("Forecast "+x.ChartMeter, []string{"day", "forecast"},
		fmt.Sprintf("Holt-Winters, weekly season; backtest on the last 7 days: MAPE %.2f%%, RMSE %.1f", x.Backtest.MAPE, x.Backtest.RMSE)); err != nil {
		return err
	}
	for _, p := range x.Forecast {
		if err := t.Row(p.Time, p.Value); err != nil {
			return err
		}
	}
	if err := t.Begin("Top movers", []string{"tenant", "tenant_name", "meter", "current_week", "previous_week", "change_percent"}); err != nil {
		return err
	}
	for _, g := range x.Movers {
		if err := t.Row(g.Tenant, x.Name(g.Tenant), g.Meter, g.WeekOverWeek.Current, g.WeekOverWeek.Previous, g.WeekOverWeek.Percent); err != nil {
			return err
		}
	}
	if err := t.Begin("Top insights", []string{"id", "tenant", "tenant_name", "kind", "title", "units", "unit", "amount", "currency"},
		fmt.Sprintf("%d insights; priced savings %d minor units %s", x.InsightCount, x.InsightSavings, x.InsightCurrency)); err != nil {
		return err
	}
	for _, in := range x.Insights {
		if err := t.Row(in.ID, in.Tenant, x.Name(in.Tenant), in.Kind, in.Title, in.Saving.Units, in.Saving.Unit, in.Saving.Amount, in.Saving.Currency); err != nil {
			return err
		}
	}
	return nil
}

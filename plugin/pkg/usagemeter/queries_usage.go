package usagemeter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/quota/quotastate"
	"github.com/usagemeter/usagemeter/plugin/pkg/upstream"
)

func init() {
	queryHandlers[QueryUsageSummary] = usageSummary
	queryHandlers[QueryUsageTimeseries] = usageTimeseries
	queryHandlers[QueryTopUsers] = topUsers
	queryHandlers[QueryStorageDocuments] = storageDocuments
	queryHandlers[QueryIngestion] = ingestion
	queryHandlers[QueryAnomalies] = anomalies
}

// needVM is the error of a query type that reads VictoriaMetrics when none is configured.
func (d *Datasource) needVM(q *Query) error {
	if d.vm == nil {
		return &QueryError{"victoriaMetricsUrl", q.QueryType + " reads VictoriaMetrics; configure its URL in the datasource"}
	}
	return nil
}

// usageSummary: per tenant and meter, the current period's usage against the quota, with its
// state. One tenant: exact, from the exporter; all tenants: the quota gauges in VictoriaMetrics
// (the same figures, as of the last scrape).
func usageSummary(ctx context.Context, d *Datasource, q *Query) (data.Frames, error) {
	if err := d.authorize(ctx, q.User, q.Tenant, "", route.ActionUsageRead, route.ActionQuotasRead); err != nil {
		return nil, err
	}
	var (
		tenants, plans, meters, states, enforcement []string
		used, limits                                []int64
		ratios, warnings                            []float64
	)
	if q.Tenant != "" {
		qs, err := d.exporter.Quotas(ctx, q.Tenant)
		if err != nil {
			return nil, err
		}
		for _, s := range qs.Quotas {
			tenants, plans, meters = append(tenants, qs.Tenant), append(plans, qs.Plan), append(meters, s.Meter)
			used, limits, ratios, warnings = append(used, s.Used), append(limits, s.Limit), append(ratios, s.Ratio), append(warnings, s.WarningRatio)
			states, enforcement = append(states, s.State), append(enforcement, s.Enforcement)
		}
	} else {
		if err := d.needVM(q); err != nil {
			return nil, err
		}
		type key struct{ tenant, meter string }
		type row struct {
			used, limit, warning, hard float64
		}
		rows := map[key]*row{}
		plan := map[string]string{}
		at := q.Range.To
		// Five independent instant queries over every tenant: run them together.
		exprs := []string{"usage_quota_used", "usage_quota_limit", "usage_quota_warning_ratio", "usage_quota_hard", "usage_tenant_info"}
		results := make([]*upstream.PromResult, len(exprs))
		errs := make([]error, len(exprs))
		var wg sync.WaitGroup
		for i, m := range exprs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				by := "tenant, meter"
				if m == "usage_tenant_info" {
					by = "tenant, plan"
				}
				results[i], errs[i] = d.vm.Query(ctx, "max by ("+by+") ("+m+")", at)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		for _, s := range results[4].Result {
			plan[s.Metric["tenant"]] = s.Metric["plan"]
		}
		for i, res := range results[:4] {
			for _, s := range res.Result {
				_, v, err := upstream.Sample(s.Value)
				if err != nil {
					return nil, err
				}
				k := key{s.Metric["tenant"], s.Metric["meter"]}
				if rows[k] == nil {
					rows[k] = &row{}
				}
				switch i {
				case 0:
					rows[k].used = v
				case 1:
					rows[k].limit = v
				case 2:
					rows[k].warning = v
				case 3:
					rows[k].hard = v
				}
			}
		}
		keys := make([]key, 0, len(rows))
		for k := range rows {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b key) int { return cmp.Or(cmp.Compare(a.tenant, b.tenant), cmp.Compare(a.meter, b.meter)) })
		for _, k := range keys {
			r := rows[k]
			// The same states as the exporter's own (/v1/quotas, the per-tenant path above).
			state, ratio := quotastate.Of(int64(r.used), int64(r.limit), r.warning)
			enf := "soft"
			if r.hard == 1 {
				enf = "hard"
			}
			tenants, plans, meters = append(tenants, k.tenant), append(plans, plan[k.tenant]), append(meters, k.meter)
			used, limits, ratios, warnings = append(used, int64(r.used)), append(limits, int64(r.limit)), append(ratios, ratio), append(warnings, r.warning)
			states, enforcement = append(states, state), append(enforcement, enf)
		}
	}
	f := frame("usage_summary", data.VisTypeTable,
		field("tenant", "Tenant", "", tenants),
		field("plan", "Plan", "", plans),
		field("meter", "Meter", "", meters),
		field("used", "Used (current period)", "short", used),
		field("limit", "Quota limit", "short", limits),
		field("ratio", "Quota used", "percentunit", ratios),
		field("warning_ratio", "Warning threshold", "percentunit", warnings),
		field("state", "Quota state", "", states),
		field("enforcement", "Enforcement", "", enforcement),
	)
	return data.Frames{f}, nil
}

// usageTimeseries: one meter over the time range from VictoriaMetrics, per tenant (or per
// tenant and groupBy label), at the period's step: increases for flow meters, levels for stock.
func usageTimeseries(ctx context.Context, d *Datasource, q *Query) (data.Frames, error) {
	g, err := labelName(q.GroupBy)
	if err != nil {
		return nil, err
	}
	actions := []string{route.ActionUsageRead}
	if perUserLabel(g) {
		// Series per user (metrics.per_user_labels) are per-user detail, as top_users is.
		actions = append(actions, route.ActionUsageUserRead)
	}
	if err := d.authorize(ctx, q.User, q.Tenant, "", actions...); err != nil {
		return nil, err
	}
	if err := d.needVM(q); err != nil {
		return nil, err
	}
	m, err := lookupMeter(q.Meter)
	if err != nil {
		return nil, err
	}
	by := "tenant"
	if g != "" && g != "tenant" {
		by += ", " + g
	}
	_, step := q.window()
	// Keep at most ~1,000 points per series whatever the period: Grafana draws no more.
	if min := q.Range.To.Sub(q.Range.From) / 1000; step < min {
		step = min.Truncate(time.Minute) + time.Minute
	}
	expr := fmt.Sprintf("sum by (%s) (%s)", by, m.selector(q.Tenant))
	if m.Flow {
		expr = fmt.Sprintf("sum by (%s) (increase(%s[%s]))", by, m.selector(q.Tenant), promDuration(step))
	}
	res, err := d.vm.QueryRange(ctx, expr, q.Range.From, q.Range.To, step)
	if err != nil {
		return nil, err
	}
	meter := cmp.Or(q.Meter, "ai_tokens")
	return seriesFrames(res, meter, m.Unit, func(l map[string]string) string {
		if g != "" && g != "tenant" {
			return l["tenant"] + " " + l[g]
		}
		return l["tenant"]
	})
}

// seriesFrames turns a range result into one time series frame per series, labels on the value
// field (the long-to-multi-frame shape Grafana's Prometheus datasource returns).
func seriesFrames(res *upstream.PromResult, name, unit string, display func(map[string]string) string) (data.Frames, error) {
	out := make(data.Frames, 0, len(res.Result))
	slices.SortFunc(res.Result, func(a, b upstream.PromSeries) int { return cmp.Compare(display(a.Metric), display(b.Metric)) })
	for _, s := range res.Result {
		ts := make([]time.Time, 0, len(s.Values))
		vs := make([]float64, 0, len(s.Values))
		for _, p := range s.Values {
			t, v, err := upstream.Sample(p)
			if err != nil {
				return nil, err
			}
			ts, vs = append(ts, t), append(vs, v)
		}
		labels := data.Labels{}
		for k, v := range s.Metric {
			labels[k] = v
		}
		val := field(name, display(s.Metric), unit, vs)
		val.Labels = labels
		out = append(out, frame(name, data.VisTypeGraph, field("time", "Time", "", ts), val))
	}
	if len(out) == 0 {
		// An empty frame with the schema, so the panel says "no data" rather than an error.
		out = append(out, frame(name, data.VisTypeGraph, field("time", "Time", "", []time.Time{}), field(name, name, unit, []float64{})))
	}
	return out, nil
}

func promDuration(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return fmt.Sprintf("%dm", d/time.Minute)
}

// topUsers: the tenant's heaviest users of a meter over the range, exact from the exporter.
// Per-user detail: usage.read_users.
func topUsers(ctx context.Context, d *Datasource, q *Query) (data.Frames, error) {
	if err := q.requireTenant(); err != nil {
		return nil, err
	}
	if err := d.authorize(ctx, q.User, q.Tenant, "", route.ActionUsageRead, route.ActionUsageUserRead); err != nil {
		return nil, err
	}
	from, to := q.hourRange()
	meter := cmp.Or(q.Meter, "ai_tokens")
	u, err := d.exporter.Usage(ctx, upstream.UsageQuery{Tenant: q.Tenant, Meter: meter, GroupBy: []string{"user"}, From: from, To: to})
	if err != nil {
		return nil, err
	}
	type uv struct {
		user  string
		value int64
	}
	var rows []uv
	var total int64
	for _, r := range u.Rows {
		if r.Group["user"] == "" {
			continue // usage not attributed to a user (e.g. service ingestion)
		}
		rows = append(rows, uv{r.Group["user"], r.Value})
		total += r.Value
	}
	slices.SortFunc(rows, func(a, b uv) int { return cmp.Or(cmp.Compare(b.value, a.value), cmp.Compare(a.user, b.user)) })
	rows = rows[:min(len(rows), d.settings.TopUsers)]
	users, values, shares := make([]string, len(rows)), make([]int64, len(rows)), make([]float64, len(rows))
	for i, r := range rows {
		users[i], values[i] = r.user, r.value
		if total > 0 {
			shares[i] = float64(r.value) / float64(total)
		}
	}
	f := frame("top_users", data.VisTypeTable,
		field("user", "User", "", users),
		field(meter, fmt.Sprintf("%s (%s)", meter, u.Unit), unitOf(u.Unit), values),
		field("share", "Share of the tenant's usage", "percentunit", shares),
	)
	return data.Frames{f}, nil
}

// storageDocuments: documents held and their bytes by document type, and storage by class, at
// the end of the range. One tenant: exact from the exporter; all: VictoriaMetrics gauges.
func storageDocuments(ctx context.Context, d *Datasource, q *Query) (data.Frames, error) {
	if err := d.authorize(ctx, q.User, q.Tenant, "", route.ActionUsageRead); err != nil {
		return nil, err
	}
	docs := map[string][2]int64{} // doc_type → count, bytes
	classes := map[string]int64{}
	if q.Tenant != "" {
		_, to := q.hourRange()
		from := to.Add(-time.Hour) // stock meters: the level at the end of the window
		for i, meter := range []string{"documents", "document_bytes"} {
			u, err := d.exporter.Usage(ctx, upstream.UsageQuery{Tenant: q.Tenant, Meter: meter, GroupBy: []string{"doc_type"}, From: from, To: to})
			if err != nil {
				return nil, err
			}
			for _, r := range u.Rows {
				v := docs[r.Group["doc_type"]]
				v[i] = r.Value
				docs[r.Group["doc_type"]] = v
			}
		}
		u, err := d.exporter.Usage(ctx, upstream.UsageQuery{Tenant: q.Tenant, Meter: "storage_bytes", GroupBy: []string{"storage_class"}, From: from, To: to})
		if err != nil {
			return nil, err
		}
		for _, r := range u.Rows {
			classes[r.Group["storage_class"]] = r.Value
		}
	} else {
		if err := d.needVM(q); err != nil {
			return nil, err
		}
		for i, metric := range []string{"usage_documents", "usage_document_bytes"} {
			res, err := d.vm.Query(ctx, "sum by (doc_type) ("+metric+")", q.Range.To)
			if err != nil {
				return nil, err
			}
			for _, s := range res.Result {
				_, v, err := upstream.Sample(s.Value)
				if err != nil {
					return nil, err
				}
				x := docs[s.Metric["doc_type"]]
				x[i] = int64(v)
				docs[s.Metric["doc_type"]] = x
			}
		}
		res, err := d.vm.Query(ctx, "sum by (storage_class) (usage_storage_bytes)", q.Range.To)
		if err != nil {
			return nil, err
		}
		for _, s := range res.Result {
			_, v, err := upstream.Sample(s.Value)
			if err != nil {
				return nil, err
			}
			classes[s.Metric["storage_class"]] = int64(v)
		}
	}
	types := sortedKeys(docs)
	counts, bytes := make([]int64, len(types)), make([]int64, len(types))
	for i, t := range types {
		counts[i], bytes[i] = docs[t][0], docs[t][1]
	}
	cls := sortedKeys(classes)
	cbytes := make([]int64, len(cls))
	for i, c := range cls {
		cbytes[i] = classes[c]
	}
	return data.Frames{
		frame("documents", data.VisTypeTable,
			field("doc_type", "Document type", "", types),
			field("documents", "Documents", "short", counts),
			field("bytes", "Document bytes", "bytes", bytes)),
		frame("storage", data.VisTypeTable,
			field("storage_class", "Storage class", "", cls),
			field("bytes", "Storage", "bytes", cbytes)),
	}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ingestion: volumes (bytes, records) and frequency (jobs, jobs per day) per source over the
// range, exact from the exporter for one tenant; from VictoriaMetrics counters for all.
func ingestion(ctx context.Context, d *Datasource, q *Query) (data.Frames, error) {
	if err := d.authorize(ctx, q.User, q.Tenant, "", route.ActionUsageRead); err != nil {
		return nil, err
	}
	from, to := q.hourRange()
	days := to.Sub(from).Hours() / 24
	per := map[string][3]int64{} // source → bytes, records, jobs
	if q.Tenant != "" {
		for i, meter := range []string{"ingest_bytes", "ingest_records", "ingest_jobs"} {
			u, err := d.exporter.Usage(ctx, upstream.UsageQuery{Tenant: q.Tenant, Meter: meter, GroupBy: []string{"source"}, From: from, To: to})
			if err != nil {
				return nil, err
			}
			for _, r := range u.Rows {
				v := per[r.Group["source"]]
				v[i] = r.Value
				per[r.Group["source"]] = v
			}
		}
	} else {
		if err := d.needVM(q); err != nil {
			return nil, err
		}
		rng := promDuration(to.Sub(from))
		for i, metric := range []string{"usage_ingest_bytes_total", "usage_ingest_records_total", "usage_ingest_jobs_total"} {
			res, err := d.vm.Query(ctx, fmt.Sprintf("sum by (source) (increase(%s[%s]))", metric, rng), to)
			if err != nil {
				return nil, err
			}
			for _, s := range res.Result {
				_, v, err := upstream.Sample(s.Value)
				if err != nil {
					return nil, err
				}
				x := per[s.Metric["source"]]
				x[i] = int64(v + 0.5)
				per[s.Metric["source"]] = x
			}
		}
	}
	srcs := sortedKeys(per)
	b, r, j, jpd := make([]int64, len(srcs)), make([]int64, len(srcs)), make([]int64, len(srcs)), make([]float64, len(srcs))
	for i, s := range srcs {
		b[i], r[i], j[i] = per[s][0], per[s][1], per[s][2]
		jpd[i] = float64(per[s][2]) / days
	}
	return data.Frames{frame("ingestion", data.VisTypeTable,
		field("source", "Source", "", srcs),
		field("bytes", "Bytes ingested", "bytes", b),
		field("records", "Records ingested", "short", r),
		field("jobs", "Ingestion jobs", "short", j),
		field("jobs_per_day", "Jobs per day", "short", jpd),
	)}, nil
}

// anomalySeries is how many tenants the anomalies panel shows at most: the most anomalous.
const anomalySeries = 20

// zscoreRecord is the recording rule of rules/usage.yml (group usage-baselines) holding the
// z-score of every tenant's and meter's hourly rate against its week, evaluated by vmalert.
const zscoreRecord = "tenant_meter:usage_rate1h:zscore_1w"

// Where the anomalies panel's z-scores came from (frame meta custom "zscore_source").
const (
	zscoreRecorded = "recorded"
	zscoreInline   = "inline"
)

// anomalies: the z-score of a meter's hourly rate against its 7-day mean and deviation, as |z|,
// for the tenants (at most 20) whose |z| passed 3 in the range. The score is read from the
// recorded series tenant_meter:usage_rate1h:zscore_1w: a lookup of one sample per tenant and
// step. Only when that series is absent in the range (vmalert does not run rules/usage.yml, or
// the meter has no rule) is the same expression computed inline over a week of raw counters per
// step, which costs VictoriaMetrics far more. The frames say which (meta and a notice).
func anomalies(ctx context.Context, d *Datasource, q *Query) (data.Frames, error) {
	if err := d.authorize(ctx, q.User, q.Tenant, "", route.ActionUsageRead); err != nil {
		return nil, err
	}
	if err := d.needVM(q); err != nil {
		return nil, err
	}
	meter := cmp.Or(q.Meter, "ai_tokens")
	m, err := lookupMeter(meter)
	if err != nil {
		return nil, err
	}
	if !m.Flow {
		return nil, &QueryError{"meter", "anomalies score the rate of a flow meter (tokens, requests, ingestion, logins, feature uses)"}
	}
	step := max(time.Hour, (q.Range.To.Sub(q.Range.From) / 500).Truncate(time.Minute))
	// max by (tenant): one series per tenant whatever labels vmalert or VictoriaMetrics add
	// (external labels, several vmalert replicas).
	sel := fmt.Sprintf("%s{meter=%q}", zscoreRecord, meter)
	if q.Tenant != "" {
		sel = fmt.Sprintf("%s{meter=%q,tenant=%q}", zscoreRecord, meter, q.Tenant)
	}
	expr := fmt.Sprintf("topk_max(%d, max by (tenant) (abs(%s)))", anomalySeries, sel)
	source := zscoreRecorded
	res, err := d.vm.QueryRange(ctx, expr, q.Range.From, q.Range.To, step)
	if err != nil {
		return nil, err
	}
	if len(res.Result) == 0 {
		source, expr = zscoreInline, inlineZScore(m, q.Tenant)
		if res, err = d.vm.QueryRange(ctx, expr, q.Range.From, q.Range.To, step); err != nil {
			return nil, err
		}
	}
	// The first scored step, before the |z| > 3 filter: how much of the range the source covers.
	var first time.Time
	for _, s := range res.Result {
		if len(s.Values) > 0 {
			if t, _, err := upstream.Sample(s.Values[0]); err == nil && (first.IsZero() || t.Before(first)) {
				first = t
			}
		}
	}
	// Only tenants that were anomalous (|z| > 3) at some point of the range.
	res.Result = slices.DeleteFunc(res.Result, func(s upstream.PromSeries) bool {
		for _, p := range s.Values {
			if _, v, err := upstream.Sample(p); err == nil && v > 3 {
				return false
			}
		}
		return true
	})
	frames, err := seriesFrames(res, "zscore", "none", func(l map[string]string) string { return l["tenant"] + " |z|" })
	if err != nil {
		return nil, err
	}
	text := "z-scores read from the recorded series " + zscoreRecord + " (vmalert, rules/usage.yml)"
	if source == zscoreInline {
		text = "z-scores computed inline: the recorded series " + zscoreRecord + "{meter=\"" + meter +
			"\"} is absent in the range (deploy rules/usage.yml to vmalert, and backfill with vmalert -replay.timeFrom, for the cheap path)"
	}
	if !first.IsZero() && first.Sub(q.Range.From.Truncate(step)) > step {
		text += "; the first score in the range is at " + first.UTC().Format(time.RFC3339)
	}
	for _, f := range frames {
		f.Meta.ExecutedQueryString = expr
		f.Meta.Custom = map[string]any{"zscore_source": source}
	}
	frames[0].AppendNotices(data.Notice{Severity: data.NoticeSeverityInfo, Text: text})
	return frames, nil
}

// inlineZScore is the tenant_meter:usage_rate1h:zscore_1w rule's expression for one meter,
// computed at query time from the raw counters.
func inlineZScore(m meterMetric, tenant string) string {
	rate := fmt.Sprintf("sum by (tenant) (rate(%s[1h]))", m.selector(tenant))
	// The mean of a week of hourly rates is the weekly rate: one range read instead of a
	// 168-point subquery. The deviation needs the subquery.
	avg := fmt.Sprintf("sum by (tenant) (rate(%s[1w]))", m.selector(tenant))
	sd := fmt.Sprintf("stddev_over_time((%s)[1w:1h])", rate)
	// As in the rule: no score for tenants with no traffic in the week, and the deviation
	// floored at 10 % of the mean so a flat history does not score +Inf on its first change.
	z := fmt.Sprintf("((%[1]s) - %[2]s) / ((%[3]s >= 0.1 * (%[2]s > 0)) or (0.1 * (%[2]s > 0)))", rate, avg, sd)
	return fmt.Sprintf("topk_max(%d, abs(%s))", anomalySeries, z)
}

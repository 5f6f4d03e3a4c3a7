package usagemeter

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/plugin/pkg/upstream"
)

func init() {
	queryHandlers[QueryUserActivity] = userActivity
	queryHandlers[QueryFeatureAdoption] = featureAdoption
}

// userActivity: DAU/WAU/MAU over time (the exporter's usage_active_users gauges in
// VictoriaMetrics), logins and session durations over the range, and for one tenant the new
// users per window (users first seen then, from the ledger's presence rollups) and the known and
// inactive users from the analytics engagement endpoint.
func userActivity(ctx context.Context, d *Datasource, q *Query) (data.Frames, error) {
	if err := d.authorize(ctx, q.User, q.Tenant, "", route.ActionUsageRead); err != nil {
		return nil, err
	}
	if err := d.needVM(q); err != nil {
		return nil, err
	}
	_, step := q.window()
	step = max(step, (q.Range.To.Sub(q.Range.From) / 1000).Truncate(time.Minute))
	m := meterMetric{Metric: "usage_active_users"}
	res, err := d.vm.QueryRange(ctx, fmt.Sprintf("sum by (window) (%s)", m.selector(q.Tenant)), q.Range.From, q.Range.To, step)
	if err != nil {
		return nil, err
	}
	// Wide frame: one time column, one column per window, aligned on the query's steps.
	byWindow := map[string]map[int64]float64{}
	var times []time.Time
	seen := map[int64]bool{}
	for _, s := range res.Result {
		vals := map[int64]float64{}
		for _, p := range s.Values {
			t, v, err := upstream.Sample(p)
			if err != nil {
				return nil, err
			}
			vals[t.Unix()] = v
			if !seen[t.Unix()] {
				seen[t.Unix()] = true
				times = append(times, t)
			}
		}
		byWindow[s.Metric["window"]] = vals
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	fields := []*data.Field{field("time", "Time", "", times)}
	for _, w := range []struct{ window, name, display string }{{"1d", "dau", "Daily active users"}, {"7d", "wau", "Weekly active users"}, {"30d", "mau", "Monthly active users"}} {
		vs := make([]*float64, len(times))
		for i, t := range times {
			if v, ok := byWindow[w.window][t.Unix()]; ok {
				vs[i] = &v
			}
		}
		fields = append(fields, field(w.name, w.display, "short", vs))
	}
	active := frame("active_users", data.VisTypeGraph, fields...)

	// Logins and session time over the range.
	var logins, seconds int64
	from, to := q.hourRange()
	if q.Tenant != "" {
		for _, p := range []struct {
			meter string
			dst   *int64
		}{{"logins", &logins}, {"session_seconds", &seconds}} {
			u, err := d.exporter.Usage(ctx, upstream.UsageQuery{Tenant: q.Tenant, Meter: p.meter, From: from, To: to})
			if err != nil {
				return nil, err
			}
			for _, r := range u.Rows {
				*p.dst += r.Value
			}
		}
	} else {
		for _, p := range []struct {
			metric string
			dst    *int64
		}{{"usage_user_logins_total", &logins}, {"usage_user_session_seconds_total", &seconds}} {
			r, err := d.vm.Query(ctx, fmt.Sprintf("sum(increase(%s[%s]))", p.metric, promDuration(to.Sub(from))), to)
			if err != nil {
				return nil, err
			}
			if len(r.Result) > 0 {
				_, v, err := upstream.Sample(r.Result[0].Value)
				if err != nil {
					return nil, err
				}
				*p.dst = int64(v + 0.5)
			}
		}
	}
	avg := 0.0
	if logins > 0 {
		avg = float64(seconds) / float64(logins)
	}
	sessions := frame("sessions", data.VisTypeTable,
		field("logins", "Logins", "short", []int64{logins}),
		field("session_seconds", "Session time", "s", []int64{seconds}),
		field("avg_session_seconds", "Average session", "s", []float64{avg}))

	frames := data.Frames{active, sessions}
	if q.Tenant != "" {
		if err := d.authorize(ctx, q.User, q.Tenant, "", route.ActionAnalyticsRead); err != nil {
			return nil, err
		}
		e, err := d.exporter.EngagementAt(ctx, q.Tenant, q.Range.To)
		switch {
		case upstream.IsNotServed(err):
			// Partial answer: the usage figures above stand; say what is missing and why.
			sessions.AppendNotices(data.Notice{Severity: data.NoticeSeverityWarning,
				Text: "known and inactive users need /v1/analytics/engagement, which the exporter does not serve"})
		case err != nil:
			return nil, err
		default:
			frames = append(frames, frame("engagement", data.VisTypeTable,
				field("known_users", "Known users", "short", []int64{int64(e.KnownUsers)}),
				field("active_users", "Monthly active users", "short", []int64{e.MAU}),
				field("inactive_users", fmt.Sprintf("Inactive users (%d days)", e.InactiveDays), "short", []int64{int64(e.InactiveUsers)}),
				field("stickiness", "Stickiness (DAU/MAU)", "percentunit", []float64{e.Stickiness})))
		}
		window := newUsersWindow(q, to.Sub(from))
		nu, err := d.exporter.NewUsersIn(ctx, q.Tenant, from, to, window)
		switch {
		case upstream.IsNotServed(err):
			sessions.AppendNotices(data.Notice{Severity: data.NoticeSeverityWarning,
				Text: "new users need /v1/analytics/new-users, which the exporter does not serve"})
		case err != nil:
			return nil, err
		default:
			frames = append(frames, newUsersFrame(nu))
		}
	}
	return frames, nil
}

// newUsersWindow is the panel's period, widened (hour → day → month) while the range would hold
// more than 1,000 windows: Grafana draws no more points, and the endpoint caps its windows.
func newUsersWindow(q *Query, span time.Duration) string {
	window, length := q.window()
	for window != "month" && span > 1000*length {
		if window == "hour" {
			window, length = "day", 24*time.Hour
		} else {
			window, length = "month", 30*24*time.Hour
		}
	}
	return window
}

// newUsersFrame: the users first seen in each window of the range (the windows the exporter
// answers, aligned on UTC hours, days or months and clipped to the range), their total in meta.
func newUsersFrame(nu *upstream.NewUsers) *data.Frame {
	ts, vs := make([]time.Time, len(nu.Windows)), make([]int64, len(nu.Windows))
	for i, w := range nu.Windows {
		ts[i], vs[i] = w.WindowStart, w.NewUsers
	}
	f := frame("new_users", data.VisTypeGraph,
		field("time", "Time", "", ts),
		field("new_users", "New users", "short", vs))
	f.Meta.Custom = map[string]any{"new_users_total": nu.NewUsers}
	if nu.HistoryFrom != nil {
		// Retention deleted older presence: a user whose only earlier activity is gone is new.
		f.AppendNotices(data.Notice{Severity: data.NoticeSeverityInfo,
			Text: "activity before " + nu.HistoryFrom.UTC().Format(time.RFC3339) + " was archived: users last seen before then count as new"})
	}
	return f
}

// featureAdoption: users and tenants per feature over the range, and the adoption rate over time
// (the share of active users, or of tenants for all tenants, that used each feature in each
// window). One tenant: exact from the exporter's feature_uses meter; all: VictoriaMetrics.
func featureAdoption(ctx context.Context, d *Datasource, q *Query) (data.Frames, error) {
	if err := d.authorize(ctx, q.User, q.Tenant, "", route.ActionUsageRead, route.ActionAnalyticsRead); err != nil {
		return nil, err
	}
	from, to := q.hourRange()
	if q.Tenant == "" {
		return featureAdoptionAll(ctx, d, q, from, to)
	}
	window, _ := q.window()
	// Distinct users per feature and window: the exporter aggregates, only counts leave this
	// function (the panel shows no user ids).
	u, err := d.exporter.Usage(ctx, upstream.UsageQuery{Tenant: q.Tenant, Meter: "feature_uses", GroupBy: []string{"feature", "user"}, Window: window, From: from, To: to})
	if err != nil {
		return nil, err
	}
	act, err := d.exporter.Usage(ctx, upstream.UsageQuery{Tenant: q.Tenant, Meter: "active_users", Window: window, From: from, To: to})
	if err != nil {
		return nil, err
	}
	activeAll, err := d.exporter.Usage(ctx, upstream.UsageQuery{Tenant: q.Tenant, Meter: "active_users", From: from, To: to})
	if err != nil {
		return nil, err
	}
	var activeUsers int64
	for _, r := range activeAll.Rows {
		activeUsers = max(activeUsers, r.Value)
	}
	uses := map[string]int64{}
	adopters := map[string]map[string]bool{}
	perWindow := map[string]map[int64]int{} // feature → window → users
	var windows []time.Time
	seen := map[int64]bool{}
	for _, r := range u.Rows {
		f, usr := r.Group["feature"], r.Group["user"]
		uses[f] += r.Value
		if adopters[f] == nil {
			adopters[f], perWindow[f] = map[string]bool{}, map[int64]int{}
		}
		if usr != "" {
			adopters[f][usr] = true
			perWindow[f][r.WindowStart.Unix()]++
		}
		if !seen[r.WindowStart.Unix()] {
			seen[r.WindowStart.Unix()] = true
			windows = append(windows, r.WindowStart)
		}
	}
	activeIn := map[int64]int64{}
	for _, r := range act.Rows {
		activeIn[r.WindowStart.Unix()] = r.Value
		if !seen[r.WindowStart.Unix()] {
			seen[r.WindowStart.Unix()] = true
			windows = append(windows, r.WindowStart)
		}
	}
	slices.SortFunc(windows, func(a, b time.Time) int { return a.Compare(b) })
	features := sortedKeys(uses)
	nUses, nUsers, nTenants, pct := make([]int64, len(features)), make([]int64, len(features)), make([]int64, len(features)), make([]float64, len(features))
	rates := []*data.Field{field("time", "Time", "", windows)}
	for i, f := range features {
		nUses[i], nUsers[i], nTenants[i] = uses[f], int64(len(adopters[f])), 1
		if activeUsers > 0 {
			pct[i] = float64(nUsers[i]) / float64(activeUsers)
		}
		vs := make([]float64, len(windows))
		for j, w := range windows {
			if a := activeIn[w.Unix()]; a > 0 {
				vs[j] = float64(perWindow[f][w.Unix()]) / float64(a)
			}
		}
		rates = append(rates, field(f, f, "percentunit", vs))
	}
	return data.Frames{
		frame("feature_adoption", data.VisTypeTable,
			field("feature", "Feature", "", features),
			field("uses", "Uses", "short", nUses),
			field("users", "Users", "short", nUsers),
			field("tenants", "Tenants", "short", nTenants),
			field("adoption", "Adoption (users / active users)", "percentunit", pct)),
		frame("adoption_rate", data.VisTypeGraph, rates...),
	}, nil
}

// featureAdoptionAll: tenants per feature and the share of tenants using each feature per
// window, from the feature counters. Distinct users across tenants are not in VictoriaMetrics
// (no per-user labels), so the users column is left empty rather than guessed.
func featureAdoptionAll(ctx context.Context, d *Datasource, q *Query, from, to time.Time) (data.Frames, error) {
	if err := d.needVM(q); err != nil {
		return nil, err
	}
	rng := promDuration(to.Sub(from))
	perTenant := fmt.Sprintf("sum by (tenant, feature) (increase(usage_feature_uses_total[%s]))", rng)
	uses := map[string]int64{}
	tenants := map[string]int64{}
	res, err := d.vm.Query(ctx, perTenant, to)
	if err != nil {
		return nil, err
	}
	for _, s := range res.Result {
		_, v, err := upstream.Sample(s.Value)
		if err != nil {
			return nil, err
		}
		f := s.Metric["feature"]
		uses[f] += int64(v + 0.5)
		if v > 0 {
			tenants[f]++
		}
	}
	total := 0.0
	if r, err := d.vm.Query(ctx, "count(group by (tenant) (usage_tenant_info))", to); err != nil {
		return nil, err
	} else if len(r.Result) > 0 {
		if _, total, err = upstream.Sample(r.Result[0].Value); err != nil {
			return nil, err
		}
	}
	features := sortedKeys(uses)
	nUses, nTenants, pct := make([]int64, len(features)), make([]int64, len(features)), make([]float64, len(features))
	users := make([]*int64, len(features))
	for i, f := range features {
		nUses[i], nTenants[i] = uses[f], tenants[f]
		if total > 0 {
			pct[i] = float64(tenants[f]) / total
		}
	}
	_, step := q.window()
	step = max(step, (to.Sub(from) / 1000).Truncate(time.Minute))
	expr := fmt.Sprintf("count by (feature) (sum by (tenant, feature) (increase(usage_feature_uses_total[%s])) > 0) / scalar(count(group by (tenant) (usage_tenant_info)))", promDuration(step))
	rr, err := d.vm.QueryRange(ctx, expr, from, to, step)
	if err != nil {
		return nil, err
	}
	rates, err := seriesFrames(rr, "adoption", "percentunit", func(l map[string]string) string { return l["feature"] })
	if err != nil {
		return nil, err
	}
	out := data.Frames{frame("feature_adoption", data.VisTypeTable,
		field("feature", "Feature", "", features),
		field("uses", "Uses", "short", nUses),
		field("users", "Users", "short", users),
		field("tenants", "Tenants", "short", nTenants),
		field("adoption", "Adoption (tenants / all tenants)", "percentunit", pct))}
	return append(out, rates...), nil
}

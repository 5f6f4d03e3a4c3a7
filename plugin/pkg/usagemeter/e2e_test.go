package usagemeter

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"

	"github.com/usagemeter/usagemeter/plugin/pkg/pluginhost"
	"github.com/usagemeter/usagemeter/plugin/pkg/upstream"
)

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// grafanaClients are the plugin's services as Grafana dials them.
type grafanaClients struct {
	data        pluginv2.DataClient
	diagnostics pluginv2.DiagnosticsClient
	resource    pluginv2.ResourceClient
}

// launch starts the plugin binary the way Grafana's backend plugin manager does (package
// pluginhost: go-plugin, the grafana_plugin_type=datasource handshake, protocol version 2).
func launch(t testing.TB, bin string) (grafanaClients, int) {
	c, pid := pluginhost.Launch(t, bin)
	return grafanaClients{data: c.Data, diagnostics: c.Diagnostics, resource: c.Resource}, pid
}

// seed sends a few days of every event type for two tenants, all within the late window.
func seed(t *testing.T, s *stack, now time.Time) {
	var evs []map[string]any
	n := 0
	id := func() string { n++; return "e2e-" + strconv.Itoa(n) }
	for _, tenant := range []string{"acme", "globex"} {
		for h := 72; h >= 1; h-- {
			at := now.Add(-time.Duration(h) * time.Hour)
			for i, user := range []string{"alice", "bob", "carol"} {
				if tenant == "globex" && user == "carol" {
					continue
				}
				evs = append(evs,
					event(id(), "ai.tokens", at, map[string]any{"tenant": tenant, "user": user, "feature": []string{"chat", "search", "chat"}[i], "model": "gpt-large", "input_tokens": 100 * (i + 1), "output_tokens": 20 * (i + 1)}),
					event(id(), "feature.used", at, map[string]any{"tenant": tenant, "user": user, "feature": []string{"chat", "search", "export"}[i]}),
				)
			}
			if h%6 == 0 {
				evs = append(evs,
					event(id(), "ingest.completed", at, map[string]any{"tenant": tenant, "source": "s3", "bytes": 1_000_000, "records": 1000, "duration_ms": 1500}),
					event(id(), "user.login", at, map[string]any{"tenant": tenant, "user": "alice", "session_seconds": 600}),
					event(id(), "document.created", at, map[string]any{"tenant": tenant, "user": "bob", "document_id": id(), "doc_type": "invoice", "bytes": 20_000}),
				)
			}
		}
		evs = append(evs, event(id(), "storage.measured", now.Add(-time.Hour), map[string]any{"tenant": tenant, "storage_class": "hot", "bytes": 5 << 30}))
	}
	for len(evs) > 0 {
		k := min(len(evs), 1000)
		s.post(t, evs[:k])
		evs = evs[k:]
	}
}

// TestPluginOverGoPlugin builds the plugin, launches it as Grafana does, and drives it against a
// real exporter and VictoriaMetrics: CheckHealth, QueryData for every query type, and a usage
// export through CallResource, streamed in chunks.
func TestPluginOverGoPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and starts the exporter and VictoriaMetrics")
	}
	_, bin := binaries(t)
	s := startStack(t, []string{"acme", "globex"}, time.Second)
	now := time.Now().UTC()
	seed(t, s, now)
	// Draft invoices of the month, so invoices and billing KPIs have something to show.
	s.do(t, "POST", "/v1/invoices/run?period="+now.Format("2006-01"), 200)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// VictoriaMetrics sees the counters once it scraped the exporter after the events.
	waitFor(t, "VictoriaMetrics to scrape both tenants", 2*time.Minute, func() bool {
		return s.vmHas(ctx, `usage_ai_tokens_total{tenant=~"acme|globex"}`, 2) && s.vmHas(ctx, `usage_quota_used{meter="ai_tokens"}`, 2)
	})

	// Anomalies: a week and a half of hourly token counters for two tenants only
	// VictoriaMetrics knows (initech spikes in its last hours, hooli stays flat), and the
	// recorded z-score backfilled over them by vmalert's replay mode, as the cheap path reads it.
	histEnd := time.Now().UTC().Truncate(time.Hour)
	histStart := histEnd.Add(-10 * 24 * time.Hour)
	s.importText(t, strings.NewReader(anomalyHistory(histStart, histEnd)))
	t.Logf("vmalert replay of the anomaly rules: %s", s.backfillRules(t, histStart, histEnd, anomalyRecords...).Round(time.Millisecond))

	c, _ := launch(t, bin)
	settings, _ := json.Marshal(map[string]any{"exporterUrl": s.Exporter, "victoriaMetricsUrl": s.VM,
		"roleMappings": []map[string]any{{"orgRole": "Admin", "roles": []string{"platform_admin"}}, {"login": "ops", "roles": []string{"sre"}}}})
	pc := func(u *backend.User) *pluginv2.PluginContext {
		return backend.ToProto().PluginContext(backend.PluginContext{PluginID: PluginID, User: u,
			DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{ID: 1, UID: "usagemeter", Name: "usagemeter", JSONData: settings,
				DecryptedSecureJSONData: map[string]string{"apiToken": s.Token}, Updated: time.Unix(1, 0)}})
	}
	adminUser := &backend.User{Login: "admin", Email: "admin@example.com", Role: "Admin"}

	// CheckHealth.
	h, err := c.diagnostics.CheckHealth(ctx, &pluginv2.CheckHealthRequest{PluginContext: pc(adminUser)})
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != pluginv2.CheckHealthResponse_OK {
		t.Fatalf("CheckHealth: %s %s", h.Status, h.Message)
	}
	t.Logf("CheckHealth: %s", h.Message)

	// QueryData, every query type, one request (as a dashboard refresh sends them).
	models := map[string]map[string]string{
		QueryUsageSummary:     {"tenant": "acme"},
		QueryUsageTimeseries:  {"tenant": "$__all", "meter": "ai_tokens", "period": "hour"},
		QueryTopUsers:         {"tenant": "acme", "meter": "ai_tokens"},
		QueryFeatureAdoption:  {"tenant": "acme", "period": "day"},
		QueryUserActivity:     {"tenant": "acme", "period": "hour"},
		QueryStorageDocuments: {"tenant": "acme"},
		QueryIngestion:        {"tenant": "acme"},
		QueryInvoices:         {"tenant": "acme"},
		QueryBillingKPIs:      {},
		QueryForecast:         {"tenant": "acme", "meter": "ai_tokens"},
		QueryAnomalies:        {"meter": "ai_tokens"},
		QueryInsights:         {"tenant": "acme"},
		QueryAudit:            {},
	}
	req := &backend.QueryDataRequest{}
	end := time.Now().UTC().Add(time.Minute) // after the seeding: VictoriaMetrics scraped it since
	for _, qt := range QueryTypes() {
		m := models[qt]
		m["queryType"] = qt
		b, _ := json.Marshal(m)
		req.Queries = append(req.Queries, backend.DataQuery{RefID: qt, QueryType: qt, JSON: b,
			TimeRange: backend.TimeRange{From: end.Add(-73 * time.Hour), To: end}, Interval: time.Hour, MaxDataPoints: 1000})
	}
	preq := backend.ToProto().QueryDataRequest(req)
	preq.PluginContext = pc(adminUser)
	presp, err := c.data.QueryData(ctx, preq)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := backend.FromProto().QueryDataResponse(presp)
	if err != nil {
		t.Fatal(err)
	}
	for _, qt := range QueryTypes() {
		dr := resp.Responses[qt]
		if dr.Error != nil {
			t.Errorf("%s: %v", qt, dr.Error)
			continue
		}
		rows := 0
		for _, f := range dr.Frames {
			n, _ := f.RowLen()
			rows += n
		}
		t.Logf("%-18s %d frame(s), %d rows", qt, len(dr.Frames), rows)
		// The audit trail is read before the other queries' reads are recorded (checked
		// below); insights may rightly find nothing.
		if rows == 0 && qt != QueryAudit && qt != QueryInsights {
			t.Errorf("%s: no rows from the seeded data", qt)
		}
	}
	checkValues(t, resp)
	checkAnomalies(t, ctx, s, resp.Responses[QueryAnomalies], end.Add(-73*time.Hour), end)
	checkNewUsers(t, resp.Responses[QueryUserActivity], now)

	// The reads above are in the audit trail now.
	auditReq := &backend.QueryDataRequest{Queries: []backend.DataQuery{{RefID: "A", QueryType: QueryAudit, JSON: []byte(`{"queryType":"audit"}`),
		TimeRange: backend.TimeRange{From: now.Add(-time.Hour), To: time.Now().Add(time.Minute)}}}}
	apreq := backend.ToProto().QueryDataRequest(auditReq)
	apreq.PluginContext = pc(adminUser)
	if ar, err := c.data.QueryData(ctx, apreq); err != nil {
		t.Fatal(err)
	} else if a, err := backend.FromProto().QueryDataResponse(ar); err != nil || a.Responses["A"].Error != nil {
		t.Fatalf("audit: %v %v", err, a.Responses["A"].Error)
	} else if n, _ := a.Responses["A"].Frames[0].RowLen(); n == 0 {
		t.Errorf("audit: the plugin's reads are not in the trail")
	} else {
		t.Logf("audit              %d entries", n)
	}

	// The same queries for an SRE: per-user detail and the audit trail are refused by policy.
	preq.PluginContext = pc(&backend.User{Login: "ops", Role: "Viewer"})
	presp, err = c.data.QueryData(ctx, preq)
	if err != nil {
		t.Fatal(err)
	}
	for _, qt := range []string{QueryTopUsers, QueryAudit, QueryInvoices} {
		if r := presp.Responses[qt]; r.Error == "" || !strings.Contains(r.Error, "forbidden") {
			t.Errorf("sre %s: want forbidden, got %q", qt, r.Error)
		}
	}
	if r := presp.Responses[QueryUsageSummary]; r.Error != "" {
		t.Errorf("sre usage_summary: %s", r.Error)
	}

	// An export through CallResource: the usage report of every tenant as CSV.
	body, status, chunks := callResource(t, ctx, c, pc(adminUser), "export?report=usage&format=csv&window=hour&meter=ai_tokens,ingest_bytes&from="+
		url.QueryEscape(now.Add(-73*time.Hour).Format(time.RFC3339))+"&to="+url.QueryEscape(now.Format(time.RFC3339)))
	if status != 200 {
		t.Fatalf("export: %d %s", status, body)
	}
	cr := csv.NewReader(bytes.NewReader(body))
	cr.Comment = '#' // the report's notes
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatalf("export is not CSV: %v", err)
	}
	var tokens int64
	for _, r := range recs[1:] {
		if r[0] == "acme" && r[1] == "ai_tokens" {
			v, _ := strconv.ParseInt(r[len(r)-1], 10, 64)
			tokens += v
		}
	}
	// acme: 72 hours × (alice 120 + bob 240 + carol 360) tokens.
	if want := int64(72 * (120 + 240 + 360)); tokens != want {
		t.Errorf("exported acme ai_tokens total %d, want %d", tokens, want)
	}
	t.Logf("export: %d rows in %d chunk(s)", len(recs)-1, chunks)

	// A PDF report rendered by the analytics service, streamed through.
	body, status, _ = callResource(t, ctx, c, pc(adminUser), "export?report=executive&format=pdf")
	if status != 200 || !bytes.HasPrefix(body, []byte("%PDF")) {
		t.Errorf("executive PDF: %d, %d bytes starting %q", status, len(body), body[:min(len(body), 8)])
	}

	// No user (alerting, background): aggregates yes, exports no.
	preq.PluginContext = pc(nil)
	presp, err = c.data.QueryData(ctx, preq)
	if err != nil {
		t.Fatal(err)
	}
	if r := presp.Responses[QueryUsageSummary]; r.Error != "" {
		t.Errorf("no user, usage_summary: %s", r.Error)
	}
	if r := presp.Responses[QueryTopUsers]; !strings.Contains(r.Error, "forbidden") {
		t.Errorf("no user, top_users: want forbidden, got %q", r.Error)
	}
	if body, status, _ := callResource(t, ctx, c, pc(nil), "export?report=usage&format=csv&tenant=acme"); status != 403 {
		t.Errorf("no user, export: want 403, got %d %s", status, body)
	}
}

// checkValues compares a few answers with the seeded events.
func checkValues(t *testing.T, resp *backend.QueryDataResponse) {
	t.Helper()
	top := resp.Responses[QueryTopUsers].Frames
	if len(top) != 1 {
		t.Fatalf("top_users: %d frames", len(top))
	}
	users := top[0].Fields[0]
	vals := top[0].Fields[1]
	if users.Len() != 3 || users.At(0).(string) != "carol" || vals.At(0).(int64) != 72*360 {
		t.Errorf("top_users: first %v=%v of %d, want carol=%d", users.At(0), vals.At(0), users.Len(), 72*360)
	}
	sum := resp.Responses[QueryUsageSummary].Frames[0]
	for i := 0; i < sum.Fields[0].Len(); i++ {
		if sum.Fields[2].At(i).(string) == "ai_tokens" {
			if used := sum.Fields[3].At(i).(int64); used <= 0 {
				t.Errorf("usage_summary: acme ai_tokens used %d", used)
			}
		}
	}
	ing := resp.Responses[QueryIngestion].Frames[0]
	if ing.Fields[0].Len() != 1 || ing.Fields[3].At(0).(int64) != 12 {
		t.Errorf("ingestion: want one source with 12 jobs, got %v", ing.Fields[3])
	}
}

// anomalyHistory is Prometheus text of usage_ai_tokens_total for initech and hooli, one sample
// an hour over [from, to]: 1,000 to 1,040 tokens an hour, except initech's last four hours at
// 20,000.
func anomalyHistory(from, to time.Time) string {
	var sb strings.Builder
	for _, tenant := range []string{"initech", "hooli"} {
		var total int64
		for at := from; !at.After(to); at = at.Add(time.Hour) {
			h := int64(at.Sub(from) / time.Hour)
			inc := 1000 + 10*(h%5)
			if tenant == "initech" && to.Sub(at) < 4*time.Hour {
				inc = 20_000
			}
			total += inc
			fmt.Fprintf(&sb, "usage_ai_tokens_total{tenant=%q,feature=\"chat\",model=\"gpt-large\",direction=\"input\"} %d %d\n", tenant, total, at.UnixMilli())
		}
	}
	return sb.String()
}

// checkAnomalies: the panel read the recorded z-score; initech's spike is the anomaly, hooli's
// flat usage is not; and the recorded score agrees with the rule's expression computed inline
// from the counters (the fallback path) at initech's peak.
func checkAnomalies(t *testing.T, ctx context.Context, s *stack, dr backend.DataResponse, from, to time.Time) {
	t.Helper()
	if dr.Error != nil || len(dr.Frames) == 0 {
		t.Fatalf("anomalies: %v", dr.Error)
	}
	if src := dr.Frames[0].Meta.Custom.(map[string]any)["zscore_source"]; src != zscoreRecorded {
		t.Fatalf("anomalies read the %v z-score, want the recorded one", src)
	}
	peak := map[string]float64{}
	for _, f := range dr.Frames {
		if len(f.Fields) < 2 {
			continue
		}
		for i := 0; i < f.Fields[1].Len(); i++ {
			peak[f.Fields[1].Labels["tenant"]] = max(peak[f.Fields[1].Labels["tenant"]], f.Fields[1].At(i).(float64))
		}
	}
	if peak["initech"] <= 3 || len(peak) != 1 {
		t.Fatalf("anomalies: peaks %v, want initech alone above 3", peak)
	}
	vm, err := upstream.New("victoriametrics", s.VM, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	inline, err := vm.QueryRange(ctx, inlineZScore(meterMetrics["ai_tokens"], "initech"), from, to, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var want float64
	for _, sr := range inline.Result {
		for _, p := range sr.Values {
			if _, v, err := upstream.Sample(p); err == nil {
				want = max(want, v)
			}
		}
	}
	if d := math.Abs(peak["initech"]-want) / want; d > 0.05 {
		t.Errorf("initech peak |z|: recorded %.3f, inline %.3f (%.1f %% apart)", peak["initech"], want, 100*d)
	}
	t.Logf("anomalies: initech peak |z| recorded %.3f, inline %.3f", peak["initech"], want)
}

// checkNewUsers: acme's users (alice, bob, carol) were all first seen 72 hours before the
// seeding's clock, inside the range: three new users, all in that hour's window.
func checkNewUsers(t *testing.T, dr backend.DataResponse, now time.Time) {
	t.Helper()
	var f *data.Frame
	for _, fr := range dr.Frames {
		if fr.Name == "new_users" {
			f = fr
		}
	}
	if f == nil {
		t.Fatalf("user_activity: no new_users frame")
	}
	first := now.Add(-72 * time.Hour).Truncate(time.Hour)
	var total int64
	for i := 0; i < f.Fields[0].Len(); i++ {
		n := f.Fields[1].At(i).(int64)
		total += n
		if ts := f.Fields[0].At(i).(time.Time); n != 0 && !ts.Equal(first) {
			t.Errorf("new users: %d at %s, want them all at %s", n, ts, first)
		}
	}
	if total != 3 {
		t.Errorf("new users: %d, want 3 (alice, bob, carol)", total)
	}
}

// callResource streams a resource call and reassembles the body, counting chunks.
func callResource(t testing.TB, ctx context.Context, c grafanaClients, pc *pluginv2.PluginContext, path string) ([]byte, int, int) {
	t.Helper()
	u, _ := url.Parse(path)
	stream, err := c.resource.CallResource(ctx, &pluginv2.CallResourceRequest{PluginContext: pc, Path: u.Path, Method: "GET", Url: path})
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	status, chunks := 0, 0
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if chunks == 0 {
			status = int(r.Code)
		}
		chunks++
		if len(r.Body) > 16<<20 {
			t.Fatalf("a chunk of %d bytes: above Grafana's 16 MiB message limit", len(r.Body))
		}
		body.Write(r.Body)
	}
	return body.Bytes(), status, chunks
}

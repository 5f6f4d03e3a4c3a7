package usagemeter

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/experimental"

	"github.com/usagemeter/usagemeter/exporter/api/route"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixtureServer answers the usagemeter API and the Prometheus API with recorded answers
// (testdata/fixtures.json, in the shapes exporter/api, billing and analytics encode): golden
// frames need fixed inputs, and the exporter only takes events from the last 35 days. The
// end-to-end test (e2e_test.go) runs the same handlers against the real exporter and
// VictoriaMetrics. It also records every request, so tests can check what was asked.
type fixtureServer struct {
	*httptest.Server
	t        *testing.T
	mu       sync.Mutex // guards the fields below: the plugin sends requests concurrently
	fixtures map[string]json.RawMessage
	requests []string
	auth     []string // auth[i] is the Authorization header of requests[i]
}

func newFixtureServer(t *testing.T) *fixtureServer {
	t.Helper()
	b, err := os.ReadFile("testdata/fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fixtureServer{t: t}
	if err := json.Unmarshal(b, &fs.fixtures); err != nil {
		t.Fatal(err)
	}
	fs.Server = httptest.NewServer(http.HandlerFunc(fs.serve))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fixtureServer) serve(w http.ResponseWriter, r *http.Request) {
	fs.mu.Lock()
	fs.requests = append(fs.requests, r.URL.String())
	fs.auth = append(fs.auth, r.Header.Get("Authorization"))
	fs.mu.Unlock()
	key := r.URL.Path
	q := r.URL.Query()
	if r.URL.Path == "/v1/reports/usage" && q.Get("meter") == "bulk" {
		serveBulk(w, q.Get("tenant"))
		return
	}
	switch {
	case r.URL.Path == "/v1/usage":
		for _, p := range []string{"meter", "group_by", "window"} {
			if v := q.Get(p); v != "" {
				key += " " + p + "=" + v
			}
		}
	case strings.HasPrefix(r.URL.Path, "/api/v1/"):
		key = ""
		expr := q.Get("query")
		for _, k := range []string{"zscore recorded", "zscore", "usage_quota_used", "usage_quota_limit", "usage_quota_warning_ratio", "usage_quota_hard",
			"usage_tenant_info", "increase(usage_ai_tokens_total", "usage_active_users", "vector(1)"} {
			match := strings.Contains(expr, k)
			switch k {
			case "zscore recorded":
				match = strings.Contains(expr, zscoreRecord)
			case "zscore":
				match = strings.Contains(expr, "stddev_over_time")
			}
			if match {
				key = "vm " + k
				break
			}
		}
	}
	fs.mu.Lock()
	body, ok := fs.fixtures[key]
	fs.mu.Unlock()
	if !ok || q.Get("tenant") == "nobody" {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"title":"Not Found","status":404,"detail":"no fixture for ` + key + `"}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// set replaces the recorded answer for key (as serve computes it).
func (fs *fixtureServer) set(key, body string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.fixtures[key] = json.RawMessage(body)
}

// fixedNow is the clock of the golden tests: the end of the panels' time range.
var fixedNow = time.Date(2026, 11, 8, 0, 0, 0, 0, time.UTC)

func newTestDatasource(t *testing.T, url string, jsonData string) *Datasource {
	t.Helper()
	d, err := New(context.Background(), backend.DataSourceInstanceSettings{
		JSONData:                []byte(jsonData),
		DecryptedSecureJSONData: map[string]string{"apiToken": "um_test_token"},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.now = func() time.Time { return fixedNow }
	return d
}

func settingsJSON(url string) string {
	return `{"exporterUrl":"` + url + `","victoriaMetricsUrl":"` + url + `","roleMappings":[
		{"orgRole":"Admin","roles":["platform_admin"]},
		{"email":"*@acme.example","roles":["saas_admin"],"tenants":["acme"]},
		{"login":"viewer","roles":["sre"]}]}`
}

var admin = &backend.User{Login: "admin", Email: "admin@example.com", Role: "Admin"}

func query(d *Datasource, user *backend.User, queryType string, model map[string]string) backend.DataResponse {
	if model == nil {
		model = map[string]string{}
	}
	model["queryType"] = queryType
	b, _ := json.Marshal(model)
	resp, err := d.QueryData(context.Background(), &backend.QueryDataRequest{
		PluginContext: backend.PluginContext{User: user},
		Queries: []backend.DataQuery{{RefID: "A", QueryType: queryType, JSON: b,
			TimeRange: backend.TimeRange{From: fixedNow.Add(-7 * 24 * time.Hour), To: fixedNow}}},
	})
	if err != nil {
		panic(err)
	}
	return resp.Responses["A"]
}

// TestGoldenFrames runs every query type through QueryData and compares the frames (schema,
// units, display names, preferred visualization, values) with testdata/golden.
func TestGoldenFrames(t *testing.T) {
	fs := newFixtureServer(t)
	d := newTestDatasource(t, fs.URL, settingsJSON(fs.URL))
	cases := []struct {
		name, queryType string
		model           map[string]string
	}{
		{"usage_summary_tenant", QueryUsageSummary, map[string]string{"tenant": "acme"}},
		{"usage_summary_all", QueryUsageSummary, map[string]string{"tenant": "$__all"}},
		{"usage_timeseries", QueryUsageTimeseries, map[string]string{"tenant": "acme", "meter": "ai_tokens", "period": "day"}},
		{"top_users", QueryTopUsers, map[string]string{"tenant": "acme", "meter": "ai_tokens"}},
		{"feature_adoption", QueryFeatureAdoption, map[string]string{"tenant": "acme", "period": "day"}},
		{"user_activity", QueryUserActivity, map[string]string{"tenant": "acme", "period": "day"}},
		{"storage_documents", QueryStorageDocuments, map[string]string{"tenant": "acme"}},
		{"ingestion", QueryIngestion, map[string]string{"tenant": "acme"}},
		{"invoices", QueryInvoices, map[string]string{"tenant": "acme"}},
		{"billing_kpis", QueryBillingKPIs, map[string]string{"tenant": "acme"}},
		{"forecast", QueryForecast, map[string]string{"tenant": "acme", "meter": "ai_tokens"}},
		{"anomalies", QueryAnomalies, map[string]string{"meter": "ai_tokens"}},
		{"insights", QueryInsights, map[string]string{"tenant": "acme"}},
		{"audit", QueryAudit, map[string]string{"tenant": "acme"}},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dr := query(d, admin, c.queryType, c.model)
			if dr.Error != nil {
				t.Fatalf("query failed: %v", dr.Error)
			}
			for _, f := range dr.Frames {
				if f.Meta == nil || f.Meta.PreferredVisualization == "" {
					t.Errorf("frame %q has no preferred visualization", f.Name)
				}
				for _, fd := range f.Fields {
					if fd.Config == nil || fd.Config.DisplayNameFromDS == "" {
						t.Errorf("frame %q field %q has no display name", f.Name, fd.Name)
					}
				}
			}
			experimental.CheckGoldenJSONResponse(t, "testdata/golden", c.name, &dr, *update)
		})
		covered[c.queryType] = true
	}
	for _, qt := range QueryTypes() {
		if !covered[qt] {
			t.Errorf("query type %s has no golden test", qt)
		}
	}
	// The exporter gets the configured token; VictoriaMetrics never sees it.
	for i, a := range fs.auth {
		vm := strings.HasPrefix(fs.requests[i], "/api/v1/")
		if vm && a != "" || !vm && a != "Bearer um_test_token" {
			t.Fatalf("request %s carried Authorization %q", fs.requests[i], a)
		}
	}
}

// TestAuthorization: the policies decide each query for the mapped user; a request without a
// user gets aggregates only.
func TestAuthorization(t *testing.T) {
	fs := newFixtureServer(t)
	d := newTestDatasource(t, fs.URL, settingsJSON(fs.URL))
	acmeAdmin := &backend.User{Login: "ann", Email: "ann@acme.example", Role: "Viewer"}
	sre := &backend.User{Login: "viewer", Role: "Viewer"}
	stranger := &backend.User{Login: "eve", Email: "eve@evil.example", Role: "Viewer"}
	cases := []struct {
		name      string
		user      *backend.User
		queryType string
		tenant    string
		allow     bool
	}{
		{"admin reads the audit trail", admin, QueryAudit, "", true},
		{"tenant admin reads its top users", acmeAdmin, QueryTopUsers, "acme", true},
		{"tenant admin may not read another tenant", acmeAdmin, QueryUsageSummary, "globex", false},
		{"tenant admin may not read all tenants", acmeAdmin, QueryUsageSummary, "", false},
		{"tenant admin reads its invoices", acmeAdmin, QueryInvoices, "acme", true},
		{"tenant admin may not read the audit trail", acmeAdmin, QueryAudit, "acme", false},
		{"sre reads aggregates of all tenants", sre, QueryUsageSummary, "", true},
		{"sre gets no per-user detail", sre, QueryTopUsers, "acme", false},
		{"sre gets no billing", sre, QueryInvoices, "acme", false},
		{"an unmapped user gets nothing", stranger, QueryUsageSummary, "acme", false},
		{"no user: tenant aggregates", nil, QueryUsageSummary, "acme", true},
		{"no user: time series for alerting", nil, QueryUsageTimeseries, "acme", true},
		{"no user: no per-user detail", nil, QueryTopUsers, "acme", false},
		{"no user: no audit trail", nil, QueryAudit, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(fs.requests)
			dr := query(d, c.user, c.queryType, map[string]string{"tenant": c.tenant, "meter": "ai_tokens"})
			if c.allow && dr.Error != nil {
				t.Fatalf("denied: %v", dr.Error)
			}
			if !c.allow {
				if dr.Error == nil || dr.Status != backend.StatusForbidden || !strings.Contains(dr.Error.Error(), "forbidden") {
					t.Fatalf("want forbidden, got status %d err %v", dr.Status, dr.Error)
				}
				if len(fs.requests) != before {
					t.Fatalf("a denied query reached upstream: %v", fs.requests[before:])
				}
			}
		})
	}
}

func TestQueryErrors(t *testing.T) {
	fs := newFixtureServer(t)
	d := newTestDatasource(t, fs.URL, settingsJSON(fs.URL))
	for _, c := range []struct {
		queryType string
		model     map[string]string
		want      string
	}{
		{"revenue", nil, "want one of"},
		{QueryTopUsers, map[string]string{}, "needs one tenant"},
		{QueryUsageTimeseries, map[string]string{"tenant": "a b"}, "tenant"},
		{QueryUsageTimeseries, map[string]string{"meter": "nope"}, "has no VictoriaMetrics series"},
		{QueryUsageSummary, map[string]string{"period": "week"}, "period"},
		{QueryUsageTimeseries, map[string]string{"groupBy": "x)"}, "label name"},
		// An upstream 404 with a problem body is passed on with its detail.
		{QueryTopUsers, map[string]string{"tenant": "nobody"}, "404 no fixture"},
	} {
		dr := query(d, admin, c.queryType, c.model)
		if dr.Error == nil || !strings.Contains(dr.Error.Error(), c.want) {
			t.Errorf("%s %v: want an error containing %q, got %v", c.queryType, c.model, c.want, dr.Error)
		}
	}
}

func TestSettings(t *testing.T) {
	for _, bad := range []string{
		`{"exporterUrl":""}`,
		`{"exporterUrl":"not a url"}`,
		`{"exporterUrl":"http://x","roleMappings":[{"login":"a"}]}`,
		`{"exporterUrl":"http://x","roleMappings":[{"roles":["root"]}]}`,
		`{"exporterUrl":"http://x","backgroundRoles":["ingest"]}`,
		`{"exporterUrl":"http://x","roleMappings":[{"login":"[","roles":["sre"]}]}`,
	} {
		if _, err := New(context.Background(), backend.DataSourceInstanceSettings{JSONData: []byte(bad)}); err == nil {
			t.Errorf("settings %s: accepted", bad)
		}
	}
	st, err := LoadSettings(backend.DataSourceInstanceSettings{JSONData: []byte(settingsJSON("http://x"))})
	if err != nil {
		t.Fatal(err)
	}
	p := st.Principal(&backend.User{Login: "ann", Email: "Ann@ACME.example", Role: "Admin"})
	if strings.Join(p.Roles, ",") != "platform_admin,saas_admin" || strings.Join(p.Tenants, ",") != "acme" || p.Subject != "ann" {
		t.Errorf("principal of an admin of acme: %+v", p)
	}
	if p := st.Principal(nil); p.Kind != KindGrafanaBackground || strings.Join(p.Roles, ",") != "sre" {
		t.Errorf("background principal: %+v", p)
	}
}

// bulkRows is the size of the synthetic "bulk" meter: enough CSV for many 1 MiB chunks.
const bulkRows = 300_000

// serveBulk answers /v1/reports/usage?meter=bulk with bulkRows hourly rows of CSV, in the
// analytics report's layout (comment lines, then a header), written as it goes.
func serveBulk(w http.ResponseWriter, tenant string) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="usage.csv"`)
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fmt.Fprintf(bw, "# Usage\n# window hour\ntenant,meter,unit,kind,window_start,window_end,model,value\n")
	for i := range bulkRows {
		ws := start.Add(time.Duration(i) * time.Hour)
		fmt.Fprintf(bw, "%s,bulk,units,flow,%s,%s,m%d,%d\n", tenant, ws.Format(time.RFC3339), ws.Add(time.Hour).Format(time.RFC3339), i%7, i)
	}
}

// TestAnomaliesSource: the recorded z-score is read when VictoriaMetrics has it (one query); when
// it is absent the rule's expression is computed inline, and the frame says which.
func TestAnomaliesSource(t *testing.T) {
	for _, c := range []struct {
		name, recorded, source, tenant string
		queries                        int
		want                           float64
	}{
		{"recorded", "", zscoreRecorded, "", 1, 3.8},
		{"recorded, one tenant", "", zscoreRecorded, "acme", 1, 3.8},
		{"absent", `{"status": "success", "data": {"resultType": "matrix", "result": []}}`, zscoreInline, "", 2, 4.2},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := newFixtureServer(t)
			if c.recorded != "" {
				fs.set("vm zscore recorded", c.recorded)
			}
			d := newTestDatasource(t, fs.URL, settingsJSON(fs.URL))
			dr := query(d, admin, QueryAnomalies, map[string]string{"meter": "ai_tokens", "tenant": c.tenant})
			if dr.Error != nil {
				t.Fatal(dr.Error)
			}
			if len(fs.requests) != c.queries {
				t.Fatalf("%d requests, want %d: %v", len(fs.requests), c.queries, fs.requests)
			}
			u, _ := url.Parse(fs.requests[0])
			first := u.Query().Get("query")
			wantSel := `tenant_meter:usage_rate1h:zscore_1w{meter="ai_tokens"}`
			if c.tenant != "" {
				wantSel = `tenant_meter:usage_rate1h:zscore_1w{meter="ai_tokens",tenant="acme"}`
			}
			if !strings.Contains(first, wantSel) {
				t.Errorf("first query %q does not select %s", first, wantSel)
			}
			f := dr.Frames[0]
			if f.Meta.Custom.(map[string]any)["zscore_source"] != c.source || len(f.Meta.Notices) != 1 || !strings.Contains(f.Meta.Notices[0].Text, c.source) {
				t.Errorf("meta %+v, want source %s", f.Meta, c.source)
			}
			if c.source == zscoreInline && !strings.Contains(f.Meta.ExecutedQueryString, "stddev_over_time") {
				t.Errorf("inline: executed %q", f.Meta.ExecutedQueryString)
			}
			// Only acme passed |z| > 3 (globex peaks below it in both fixtures).
			if len(dr.Frames) != 1 || f.Fields[1].Labels["tenant"] != "acme" || f.Fields[1].At(1).(float64) != c.want {
				t.Errorf("frames %d, first %v", len(dr.Frames), f.Fields[1])
			}
		})
	}
}

// TestUserActivityNewUsers: the new users frame asks the exporter for the panel's range, whole
// hours, at the panel's period, and says when archived activity limits what "new" means.
func TestUserActivityNewUsers(t *testing.T) {
	fs := newFixtureServer(t)
	d := newTestDatasource(t, fs.URL, settingsJSON(fs.URL))
	dr := query(d, admin, QueryUserActivity, map[string]string{"tenant": "acme", "period": "hour"})
	if dr.Error != nil {
		t.Fatal(dr.Error)
	}
	var asked url.Values
	for _, r := range fs.requests {
		if u, _ := url.Parse(r); u.Path == "/v1/analytics/new-users" {
			asked = u.Query()
		}
	}
	want := url.Values{"tenant": {"acme"}, "from": {"2026-11-01T00:00:00Z"}, "to": {"2026-11-08T00:00:00Z"}, "window": {"hour"}}
	if !reflect.DeepEqual(asked, want) {
		t.Errorf("asked %v, want %v", asked, want)
	}
	f := dr.Frames[len(dr.Frames)-1]
	if f.Name != "new_users" || f.Meta.Custom.(map[string]any)["new_users_total"] != int64(4) || len(f.Meta.Notices) != 0 {
		t.Fatalf("frame %s meta %+v", f.Name, f.Meta)
	}
	var sum int64
	for i := 0; i < f.Fields[1].Len(); i++ {
		sum += f.Fields[1].At(i).(int64)
	}
	if sum != 4 {
		t.Errorf("windows add up to %d, want the total 4", sum)
	}

	fs.set("/v1/analytics/new-users", `{"tenant":"acme","window":"day","new_users":0,"windows":[],"history_from":"2026-10-01T00:00:00Z"}`)
	dr = query(d, admin, QueryUserActivity, map[string]string{"tenant": "acme"})
	if f := dr.Frames[len(dr.Frames)-1]; dr.Error != nil || len(f.Meta.Notices) != 1 || !strings.Contains(f.Meta.Notices[0].Text, "2026-10-01T00:00:00Z") {
		t.Errorf("history_from: %v %+v", dr.Error, f.Meta)
	}
	// All tenants: no per-tenant engagement or new users (as before).
	dr = query(d, admin, QueryUserActivity, map[string]string{"tenant": "$__all"})
	for _, f := range dr.Frames {
		if f.Name == "new_users" || f.Name == "engagement" {
			t.Errorf("all tenants: frame %s", f.Name)
		}
	}
}

func TestNewUsersWindow(t *testing.T) {
	for _, c := range []struct {
		period string
		span   time.Duration
		want   string
	}{
		{"hour", 72 * time.Hour, "hour"},
		{"hour", 1000 * time.Hour, "hour"},
		{"hour", 1001 * time.Hour, "day"},
		{"", 30 * 24 * time.Hour, "day"},
		{"day", 1001 * 24 * time.Hour, "month"},
		{"hour", 5 * 365 * 24 * time.Hour, "month"},
		{"month", 24 * time.Hour, "month"},
	} {
		if got := newUsersWindow(&Query{Period: c.period}, c.span); got != c.want {
			t.Errorf("period %q over %s: %s, want %s", c.period, c.span, got, c.want)
		}
	}
}

// TestPerUserQueriesNeedUserRead: every query type that can group or filter by user needs
// usage.read_users, like top_users: an sre (aggregates only) and a request without a Grafana user
// (alerting, background) are refused per-user series, a tenant's admin gets them.
func TestPerUserQueriesNeedUserRead(t *testing.T) {
	fs := newFixtureServer(t)
	d := newTestDatasource(t, fs.URL, settingsJSON(fs.URL))
	acmeAdmin := &backend.User{Login: "ann", Email: "ann@acme.example", Role: "Viewer"}
	sre := &backend.User{Login: "viewer", Role: "Viewer"}
	cases := []struct {
		name    string
		user    *backend.User
		groupBy string
		allow   bool
	}{
		{"sre: series per user", sre, "user", false},
		{"no user: series per user", nil, "user", false},
		{"sre: series per tenant", sre, "", true},
		{"sre: series per model", sre, "model", true},
		{"no user: series per model", nil, "model", true},
		{"tenant admin: series per user", acmeAdmin, "user", true},
		{"platform admin: series per user", admin, "user", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(fs.requests)
			dr := query(d, c.user, QueryUsageTimeseries, map[string]string{"tenant": "acme", "meter": "ai_tokens", "groupBy": c.groupBy})
			if c.allow {
				if dr.Status == backend.StatusForbidden {
					t.Fatalf("denied: %v", dr.Error)
				}
				return
			}
			if dr.Error == nil || dr.Status != backend.StatusForbidden || !strings.Contains(dr.Error.Error(), route.ActionUsageUserRead) {
				t.Fatalf("want forbidden on %s, got status %d err %v", route.ActionUsageUserRead, dr.Status, dr.Error)
			}
			if len(fs.requests) != before {
				t.Fatalf("a denied query reached upstream: %v", fs.requests[before:])
			}
		})
	}
}

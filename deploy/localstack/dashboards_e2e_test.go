package localstack_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/usagemeter/usagemeter/deploy/localstack"
	"github.com/usagemeter/usagemeter/plugin/pkg/pluginhost"
)

// TestDashboardPanelsReturnData runs the local stack with simulated traffic, gives
// VictoriaMetrics eight days of history (the scraped series, back-dated, and the recording rules
// replayed over them by vmalert), and checks that the query of every metric panel of every
// dashboard in dashboards/json returns data, and that the plugin, launched over go-plugin as
// Grafana does, answers every plugin panel's query with frames.
func TestDashboardPanelsReturnData(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"bin/usage-exporter", "bin/usagectl", "bin/tools/victoria-metrics", "bin/tools/vmalert", "bin/tools/alertmanager"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Skipf("end-to-end test needs %s: run `make build tools` (make test does both first)", p)
		}
	}
	dashboards, _ := filepath.Glob(filepath.Join(root, "dashboards", "json", "*.json"))
	if len(dashboards) == 0 {
		t.Skip("no dashboards in dashboards/json")
	}
	dir := t.TempDir()
	catalogue := filepath.Join(dir, "catalogue.yml")
	// Small limits for everyone: tenants cross their quotas within seconds, so quota alerts fire.
	os.WriteFile(catalogue, []byte(`default_plan: tiny
plans:
  - name: tiny
    enforcement: hard
    warning_ratio: 0.5
    limits: {ai_tokens: 20000, documents: 100000, storage_bytes: 100000000000, ingest_bytes: 100000000000, active_users: 1000}
`), 0o644)
	stack, err := localstack.Start(t.Context(), localstack.Config{
		StateDir: filepath.Join(dir, "state"), BinDir: filepath.Join(root, "bin"), ToolsDir: filepath.Join(root, "bin", "tools"),
		RulesDir: filepath.Join(root, "rules"), AlertmanagerConfig: filepath.Join(root, "deploy", "alertmanager", "alertmanager.yml"),
		Catalogue: catalogue, ScrapeInterval: time.Second, EvalInterval: time.Second,
		Simulate: []string{"--continuous", "--rate", "300", "--tenants", "8", "--retry-ratio", "0.1"},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("starting the stack: %v", err)
	}
	t.Cleanup(func() {
		_ = stack.Stop()
		if t.Failed() {
			for _, f := range []string{"vmalert.log", "usage-exporter.log"} {
				b, _ := os.ReadFile(filepath.Join(stack.Logs, f))
				t.Logf("%s (tail):\n%s", f, tail(string(b), 3000))
			}
		}
	})
	vm := stack.URLs.VictoriaMetrics
	// Three days of history in the ledger (hourly rollups for forecasts, activity, insights).
	backfillEvents := exec.Command(filepath.Join(root, "bin", "usagectl"), "simulate", "--url", stack.URLs.Exporter,
		"--events", "20000", "--tenants", "8", "--backfill", "72h", "--seed", "9")
	if out, err := backfillEvents.CombinedOutput(); err != nil {
		t.Fatalf("backfilling events: %v\n%s", err, tail(string(out), 2000))
	}
	// A rejected event, so that rejection panels have a reason to show.
	http.Post(stack.URLs.Exporter+"/v1/events", "application/json", strings.NewReader(`{"specversion":"1.0","id":"x","source":"e2e","type":"ai.tokens","data":{"tenant":"bad tenant"}}`))
	// Let traffic flow long enough for rate windows and quota alerts.
	waitUntil(t, 90*time.Second, "quota alerts to fire", func() bool {
		return len(query(t, vm, `ALERTS{alertname="UsageQuotaExceeded",alertstate="firing"}`)) > 0
	})

	now := time.Now()
	from := now.Add(-8 * 24 * time.Hour)
	backfill(t, vm, from, now)
	replay := exec.Command(filepath.Join(root, "bin", "tools", "vmalert"),
		"-rule="+filepath.Join(root, "rules", "*.yml"), "-datasource.url="+vm, "-remoteWrite.url="+vm,
		"-replay.timeFrom="+from.UTC().Format(time.RFC3339), "-replay.timeTo="+now.Add(5*time.Minute).UTC().Format(time.RFC3339),
		"-evaluationInterval=15m", "-replay.disableProgressBar", "-loggerLevel=ERROR")
	if out, err := replay.CombinedOutput(); err != nil {
		t.Fatalf("vmalert replay: %v\n%s", err, tail(string(out), 3000))
	}
	http.Get(vm + "/internal/force_flush")
	http.Get(vm + "/internal/resetRollupResultCache")

	tenant := "tenant-0001"
	checked, failed := 0, 0
	for _, path := range dashboards {
		for _, p := range metricPanels(t, path) {
			expr := substitute(p.expr, tenant)
			checked++
			if len(query(t, vm, expr)) == 0 {
				failed++
				t.Errorf("%s: panel %q returns no data:\n  %s", filepath.Base(path), p.title, expr)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d metric panel queries found", checked)
	}
	t.Logf("%d metric panel queries checked against VictoriaMetrics, %d without data", checked, failed)

	checkPluginPanels(t, root, stack, dashboards, tenant)
}

// checkPluginPanels builds the plugin, launches it over go-plugin as Grafana does, and sends the
// query of every plugin panel through QueryData: each must answer with frames and no error.
func checkPluginPanels(t *testing.T, root string, stack *localstack.Stack, dashboards []string, tenant string) {
	bin := filepath.Join(t.TempDir(), "gpx_usagemeter")
	build := exec.Command("go", "build", "-o", bin, "./plugin/pkg")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugin: %v\n%s", err, out)
	}
	// Draft invoices of the month, so invoice and revenue panels have documents to show.
	resp, err := http.Post(stack.URLs.Exporter+"/v1/invoices/run?period="+time.Now().UTC().Format("2006-01"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c, _ := pluginhost.Launch(t, bin)
	settings, _ := json.Marshal(map[string]any{"exporterUrl": stack.URLs.Exporter, "victoriaMetricsUrl": stack.URLs.VictoriaMetrics,
		"roleMappings": []map[string]any{{"orgRole": "Admin", "roles": []string{"platform_admin"}}}})
	pc := backend.ToProto().PluginContext(backend.PluginContext{PluginID: localstack.PluginID,
		User:                       &backend.User{Login: "admin", Role: "Admin"},
		DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{ID: 1, UID: "usagemeter", Name: "usagemeter", JSONData: settings, Updated: time.Unix(1, 0)}})
	vars := strings.NewReplacer("$tenant", tenant, "${tenant}", tenant, "$meter", "ai_tokens", "${meter}", "ai_tokens", "$period", "day", "${period}", "day")
	end := time.Now().UTC()
	checked := 0
	for _, path := range dashboards {
		for _, p := range pluginPanels(t, path) {
			q := []byte(vars.Replace(string(p.target)))
			var model struct{ QueryType string }
			json.Unmarshal(q, &model)
			req := backend.ToProto().QueryDataRequest(&backend.QueryDataRequest{Queries: []backend.DataQuery{{
				RefID: "A", QueryType: model.QueryType, JSON: q, Interval: time.Hour, MaxDataPoints: 1000,
				TimeRange: backend.TimeRange{From: end.Add(-7 * 24 * time.Hour), To: end}}}})
			req.PluginContext = pc
			presp, err := c.Data.QueryData(t.Context(), req)
			if err != nil {
				t.Fatalf("QueryData: %v", err)
			}
			r, err := backend.FromProto().QueryDataResponse(presp)
			if err != nil {
				t.Fatal(err)
			}
			dr := r.Responses["A"]
			checked++
			if dr.Error != nil || len(dr.Frames) == 0 {
				t.Errorf("%s: plugin panel %q (%s) answered %d frames, error %v", filepath.Base(path), p.title, model.QueryType, len(dr.Frames), dr.Error)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d plugin panel queries found", checked)
	}
	t.Logf("%d plugin panel queries answered by the plugin over go-plugin", checked)
}

type pluginQuery struct {
	title  string
	target json.RawMessage
}

// pluginPanels are the targets of the usagemeter plugin (they carry a queryType).
func pluginPanels(t *testing.T, path string) []pluginQuery {
	var out []pluginQuery
	for _, p := range panelTargets(t, path) {
		var probe struct{ QueryType string }
		if json.Unmarshal(p.target, &probe) == nil && probe.QueryType != "" {
			out = append(out, p)
		}
	}
	return out
}

type panelQuery struct{ title, expr string }

// metricPanels are the PromQL/MetricsQL targets.
func metricPanels(t *testing.T, path string) []panelQuery {
	var out []panelQuery
	for _, p := range panelTargets(t, path) {
		var tg struct{ Expr string }
		if json.Unmarshal(p.target, &tg) == nil && tg.Expr != "" {
			out = append(out, panelQuery{p.title, tg.Expr})
		}
	}
	return out
}

// panelTargets returns every target of every panel (rows included) of a dashboard file.
func panelTargets(t *testing.T, path string) []pluginQuery {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Dashboard *json.RawMessage `json:"dashboard"`
		Panels    []json.RawMessage
	}
	json.Unmarshal(b, &d)
	if d.Dashboard != nil {
		json.Unmarshal(*d.Dashboard, &d)
	}
	var out []pluginQuery
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, raw := range ps {
			var p struct {
				Title   string
				Panels  []json.RawMessage
				Targets []json.RawMessage
			}
			json.Unmarshal(raw, &p)
			for _, tg := range p.Targets {
				out = append(out, pluginQuery{p.Title, tg})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

var eqTenant = regexp.MustCompile(`tenant="\$tenant"`)

// substitute replaces Grafana's variables the way a dashboard with one tenant selected (="…")
// or All selected (=~".*") would.
func substitute(expr, tenant string) string {
	expr = eqTenant.ReplaceAllString(expr, `tenant="`+tenant+`"`)
	r := strings.NewReplacer(`"$tenant"`, `".*"`, "$__rate_interval", "1m", "$__range", "1h", "$__interval", "1m")
	return r.Replace(expr)
}

func query(t *testing.T, vm, expr string) []json.RawMessage {
	t.Helper()
	resp, err := http.Get(vm + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Error  string
		Data   struct{ Result []json.RawMessage }
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Errorf("query %s: %v %s", expr, err, r.Error)
		return nil
	}
	return r.Data.Result
}

// backfill exports every series VictoriaMetrics scraped from the exporter and imports a
// back-dated history for it, every 10 minutes from `from`: counters grow with a daily cycle up
// to their first real value (so no reset appears), gauges wave around theirs.
func backfill(t *testing.T, vm string, from, now time.Time) {
	t.Helper()
	resp, err := http.Get(vm + "/api/v1/export?match[]=" + url.QueryEscape(`{job="usage-exporter"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	series := 0
	for sc.Scan() {
		var s struct {
			Metric     map[string]string `json:"metric"`
			Values     []float64         `json:"values"`
			Timestamps []int64           `json:"timestamps"`
		}
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil || len(s.Values) == 0 {
			continue
		}
		name := s.Metric["__name__"]
		counter := strings.HasSuffix(name, "_total") || strings.HasSuffix(name, "_bucket") || strings.HasSuffix(name, "_count") || strings.HasSuffix(name, "_sum")
		first, firstAt := s.Values[0], time.UnixMilli(s.Timestamps[0])
		var ts []int64
		var vs []float64
		steps := int(firstAt.Sub(from) / (10 * time.Minute))
		cum, weights := 0.0, make([]float64, steps)
		for i := range steps {
			at := from.Add(time.Duration(i) * 10 * time.Minute)
			weights[i] = 1 + 0.5*math.Sin(2*math.Pi*float64(at.Hour())/24)
			cum += weights[i]
		}
		acc := 0.0
		for i := range steps {
			at := from.Add(time.Duration(i) * 10 * time.Minute)
			v := first * (1 + 0.1*math.Sin(2*math.Pi*float64(at.Hour())/24))
			if counter {
				acc += weights[i]
				v = math.Floor(first * 0.999 * acc / cum)
			}
			ts = append(ts, at.UnixMilli())
			vs = append(vs, v)
		}
		line, _ := json.Marshal(map[string]any{"metric": s.Metric, "values": vs, "timestamps": ts})
		body.Write(line)
		body.WriteByte('\n')
		series++
	}
	if series == 0 {
		t.Fatal("no series to backfill")
	}
	r, err := http.Post(vm+"/api/v1/import", "application/json", &body)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode/100 != 2 {
		t.Fatalf("import: %s", r.Status)
	}
	http.Get(vm + "/internal/force_flush")
	t.Logf("backfilled %d series from %s", series, from.Format(time.RFC3339))
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Second)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

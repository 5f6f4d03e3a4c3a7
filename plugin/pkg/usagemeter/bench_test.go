package usagemeter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
)

// The benchmark's data: benchTenants tenants with benchDays of hourly AI usage (and coarser
// logins, feature uses, ingestion, documents) in the real exporter, and the same history
// imported into VictoriaMetrics with timestamps (a scrape only sees the present), which then
// keeps scraping the exporter. The plugin runs as its built binary over go-plugin, as in Grafana.
const (
	benchTenants = 1000
	benchDays    = 30
)

type benchEnv struct {
	stack    *stack
	clients  grafanaClients
	pid      int
	pc       func(*backend.User) *pluginv2.PluginContext
	now      time.Time
	events   int
	setup    time.Duration
	backfill time.Duration
}

func benchTenant(i int) string { return fmt.Sprintf("tenant-%04d", i) }

func setupBench(b *testing.B) *benchEnv {
	var bench *benchEnv
	{
		start := time.Now()
		tenants := make([]string, benchTenants)
		for i := range tenants {
			tenants[i] = benchTenant(i)
		}
		// A production scrape interval: the all-tenant panels read what VictoriaMetrics holds,
		// and scraping 1,000 tenants every second would be the load measured instead.
		s := startStack(b, tenants, 15*time.Second)
		now := time.Now().UTC().Truncate(time.Hour)
		env := &benchEnv{stack: s, now: now}
		env.events = seedBench(b, s, now)
		importHistory(b, s, now)
		// What vmalert would have recorded over those 30 days, had it run: the anomalies
		// panel reads the recorded z-score.
		env.backfill = s.backfillRules(b, now.Add(-benchDays*24*time.Hour), now, anomalyRecords...)
		s.do(b, "POST", "/v1/invoices/run?period="+now.Format("2006-01"), 200)
		waitFor(b, "VictoriaMetrics to scrape the quotas", 5*time.Minute, func() bool {
			return s.vmHas(context.Background(), `usage_quota_used{meter="ai_tokens"}`, benchTenants)
		})
		_, bin := binaries(b)
		env.clients, env.pid = launch(b, bin)
		settings, _ := json.Marshal(map[string]any{"exporterUrl": s.Exporter, "victoriaMetricsUrl": s.VM,
			"roleMappings": []map[string]any{{"orgRole": "Admin", "roles": []string{"platform_admin"}}}})
		env.pc = func(u *backend.User) *pluginv2.PluginContext {
			return backend.ToProto().PluginContext(backend.PluginContext{PluginID: PluginID, User: u,
				DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{ID: 1, UID: "usagemeter", JSONData: settings,
					DecryptedSecureJSONData: map[string]string{"apiToken": s.Token}, Updated: time.Unix(1, 0)}})
		}
		env.setup = time.Since(start)
		bench = env
	}
	return bench
}

// BenchmarkPlugin sets the data up once (the stack lives as long as this benchmark), then runs
// QueryData per query type and the CSV export.
func BenchmarkPlugin(b *testing.B) {
	env := setupBench(b)
	b.Logf("setup: %d tenants, %d days, %d events, %s (of which the vmalert replay of the anomaly rules: %s)",
		benchTenants, benchDays, env.events, env.setup.Round(time.Second), env.backfill.Round(time.Second))
	b.Run("QueryData", func(b *testing.B) { benchQueryData(b, env) })
	b.Run("ExportCSV", func(b *testing.B) { benchExportCSV(b, env) })
}

// seedBench posts the event history through the exporter's API, 8 requests in flight.
func seedBench(b *testing.B, s *stack, now time.Time) int {
	from := now.Add(-benchDays * 24 * time.Hour).Add(time.Hour)
	batches := make(chan []map[string]any, 16)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range batches {
				s.post(b, batch)
			}
		}()
	}
	total := 0
	var batch []map[string]any
	emit := func(e map[string]any) {
		batch = append(batch, e)
		total++
		if len(batch) == 5000 {
			batches <- batch
			batch = nil
		}
	}
	users := []string{"u1", "u2", "u3", "u4", "u5"}
	features := []string{"chat", "search", "summarize"}
	for ti := range benchTenants {
		tenant := benchTenant(ti)
		for h := 0; ; h++ {
			at := from.Add(time.Duration(h) * time.Hour)
			if at.After(now) {
				break
			}
			id := tenant + "-" + strconv.Itoa(h)
			u := users[(h+ti)%len(users)]
			emit(event("ai-"+id, "ai.tokens", at, map[string]any{"tenant": tenant, "user": u, "feature": features[h%3], "model": "gpt-large",
				"input_tokens": 100 + (h*7+ti)%400, "output_tokens": 20 + (h*3+ti)%80}))
			if h%6 == 0 {
				emit(event("fu-"+id, "feature.used", at, map[string]any{"tenant": tenant, "user": u, "feature": features[(h/6)%3]}))
			}
			if h%12 == 0 {
				emit(event("lg-"+id, "user.login", at, map[string]any{"tenant": tenant, "user": u, "session_seconds": 300 + h%600}))
			}
			if h%24 == 0 {
				emit(event("in-"+id, "ingest.completed", at, map[string]any{"tenant": tenant, "source": "s3", "bytes": 1_000_000, "records": 1000, "duration_ms": 800}))
				emit(event("dc-"+id, "document.created", at, map[string]any{"tenant": tenant, "user": u, "document_id": id, "doc_type": "invoice", "bytes": 40_000}))
			}
		}
		emit(event("st-"+tenant, "storage.measured", now.Add(-time.Hour), map[string]any{"tenant": tenant, "storage_class": "hot", "bytes": 1 << 30}))
	}
	if len(batch) > 0 {
		batches <- batch
	}
	close(batches)
	wg.Wait()
	return total
}

// importHistory writes benchDays of hourly samples per tenant into VictoriaMetrics (Prometheus
// text with timestamps), following the seeded events: what 30 days of scraping would have
// stored. It streams, so the text never sits in memory whole.
func importHistory(b *testing.B, s *stack, now time.Time) {
	pr, pw := io.Pipe()
	go func() {
		from := now.Add(-benchDays * 24 * time.Hour).Add(time.Hour)
		var sb strings.Builder
		for ti := range benchTenants {
			tenant := benchTenant(ti)
			var in, out, reqs, uses, logins, ingest int64
			for h := 0; ; h++ {
				at := from.Add(time.Duration(h) * time.Hour)
				if at.After(now) {
					break
				}
				in += int64(100 + (h*7+ti)%400)
				out += int64(20 + (h*3+ti)%80)
				reqs++
				if h%6 == 0 {
					uses++
				}
				if h%12 == 0 {
					logins++
				}
				if h%24 == 0 {
					ingest += 1_000_000
				}
				ms := at.UnixMilli()
				sb.Reset()
				fmt.Fprintf(&sb, "usage_ai_tokens_total{tenant=%q,feature=\"chat\",model=\"gpt-large\",direction=\"input\"} %d %d\n", tenant, in, ms)
				fmt.Fprintf(&sb, "usage_ai_tokens_total{tenant=%q,feature=\"chat\",model=\"gpt-large\",direction=\"output\"} %d %d\n", tenant, out, ms)
				fmt.Fprintf(&sb, "usage_ai_requests_total{tenant=%q,feature=\"chat\",model=\"gpt-large\"} %d %d\n", tenant, reqs, ms)
				fmt.Fprintf(&sb, "usage_feature_uses_total{tenant=%q,feature=\"chat\"} %d %d\n", tenant, uses, ms)
				fmt.Fprintf(&sb, "usage_user_logins_total{tenant=%q} %d %d\n", tenant, logins, ms)
				fmt.Fprintf(&sb, "usage_ingest_bytes_total{tenant=%q,source=\"s3\"} %d %d\n", tenant, ingest, ms)
				for _, w := range []string{"1d", "7d", "30d"} {
					fmt.Fprintf(&sb, "usage_active_users{tenant=%q,window=%q} 5 %d\n", tenant, w, ms)
				}
				if _, err := io.WriteString(pw, sb.String()); err != nil {
					return
				}
			}
		}
		pw.Close()
	}()
	s.importText(b, pr)
}

// benchQueries are the panels' queries: one tenant where the dashboards show one, all tenants
// where they show all.
var benchQueries = map[string]map[string]string{
	QueryUsageSummary:     {"tenant": "$__all"},
	QueryUsageTimeseries:  {"tenant": "$__all", "meter": "ai_tokens", "period": "day"},
	QueryTopUsers:         {"tenant": "tenant-0042", "meter": "ai_tokens"},
	QueryFeatureAdoption:  {"tenant": "tenant-0042", "period": "day"},
	QueryUserActivity:     {"tenant": "tenant-0042", "period": "day"},
	QueryStorageDocuments: {"tenant": "$__all"},
	QueryIngestion:        {"tenant": "tenant-0042"},
	QueryInvoices:         {"tenant": "$__all"},
	QueryBillingKPIs:      {"tenant": "$__all"},
	QueryForecast:         {"tenant": "tenant-0042", "meter": "ai_tokens"},
	QueryAnomalies:        {"tenant": "$__all", "meter": "ai_tokens"},
	QueryInsights:         {"tenant": "$__all"},
	QueryAudit:            {"tenant": "$__all"},
}

// benchQueryData measures each query type's QueryData round trip through the plugin binary
// over 30 days and 1,000 tenants, and reports p50 and p95. A query type whose upstream endpoint
// the exporter does not serve is reported as skipped, with the reason.
func benchQueryData(b *testing.B, env *benchEnv) {
	admin := &backend.User{Login: "admin", Role: "Admin"}
	for _, qt := range QueryTypes() {
		b.Run(qt, func(b *testing.B) {
			m := map[string]string{"queryType": qt}
			for k, v := range benchQueries[qt] {
				m[k] = v
			}
			body, _ := json.Marshal(m)
			req := backend.ToProto().QueryDataRequest(&backend.QueryDataRequest{Queries: []backend.DataQuery{{RefID: "A", QueryType: qt, JSON: body,
				TimeRange: backend.TimeRange{From: env.now.Add(-benchDays * 24 * time.Hour), To: time.Now()}, MaxDataPoints: 1000}}})
			req.PluginContext = env.pc(admin)
			lat := make([]time.Duration, 0, b.N)
			rows := 0
			for b.Loop() {
				t0 := time.Now()
				resp, err := env.clients.data.QueryData(context.Background(), req)
				lat = append(lat, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				r := resp.Responses["A"]
				if r.Error != "" {
					if strings.Contains(r.Error, "not served (404)") {
						b.Skipf("not served by this exporter: %s", r.Error)
					}
					b.Fatalf("%s: %s", qt, r.Error)
				}
				rows = 0
				dr, err := backend.FromProto().QueryDataResponse(resp)
				if err != nil {
					b.Fatal(err)
				}
				for _, f := range dr.Responses["A"].Frames {
					n, _ := f.RowLen()
					rows += n
				}
				// The anomalies figure is the recorded path's: the fallback would be measured
				// silently if the backfill were missing.
				if qt == QueryAnomalies {
					if src := dr.Responses["A"].Frames[0].Meta.Custom.(map[string]any)["zscore_source"]; src != zscoreRecorded {
						b.Fatalf("anomalies read the %v z-score, want the recorded one", src)
					}
				}
			}
			slices.Sort(lat)
			p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(p(0.50), "p50-ms")
			b.ReportMetric(p(0.95), "p95-ms")
			b.ReportMetric(float64(rows), "rows")
		})
	}
}

// benchExportCSV streams the usage report of every tenant, hourly, AI tokens and requests,
// over 30 days (1,000 × 720 × 2 ≈ 1.44 million rows) through CallResource (the plugin streams
// the analytics service's /v1/reports/usage in 1 MiB messages), and reports the time, the
// rows, the messages and the plugin process's peak resident memory (VmHWM).
func benchExportCSV(b *testing.B, env *benchEnv) {
	admin := &backend.User{Login: "admin", Role: "Admin"}
	path := "export?report=usage&format=csv&window=hour&meter=ai_tokens,ai_requests&from=" +
		url.QueryEscape(env.now.Add(-benchDays*24*time.Hour).Format(time.RFC3339)) + "&to=" + url.QueryEscape(env.now.Add(time.Hour).Format(time.RFC3339))
	// A plugin process of its own, so its peak RSS is the export's (plus start-up), not the
	// panel queries' before it.
	_, bin := binaries(b)
	clients, pid := launch(b, bin)
	before := vmHWM(pid)
	var rows, chunks, bytes int
	// A few exports are enough to time one that takes seconds; -benchtime is sized for the
	// panel queries, so the count is fixed here and the time per export reported as ns/op.
	runs := min(b.N, 3)
	start := time.Now()
	for range runs {
		stream, err := clients.resource.CallResource(context.Background(), &pluginv2.CallResourceRequest{PluginContext: env.pc(admin), Path: "export", Method: "GET", Url: path})
		if err != nil {
			b.Fatal(err)
		}
		rows, chunks, bytes = 0, 0, 0
		lineStart := true
		for {
			r, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if chunks == 0 && r.Code != 200 {
				b.Fatalf("export: %d %s", r.Code, r.Body)
			}
			chunks++
			bytes += len(r.Body)
			// Data lines: not the report's "#" notes.
			for _, c := range r.Body {
				if lineStart && c != '#' {
					rows++
				}
				lineStart = c == '\n'
			}
		}
		rows-- // the header
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(runs), "ns/op")
	b.ReportMetric(time.Since(start).Seconds()/float64(runs), "s/export")
	b.ReportMetric(float64(rows), "rows")
	b.ReportMetric(float64(chunks), "messages")
	b.ReportMetric(float64(bytes)/(1<<20), "MiB")
	b.ReportMetric(float64(vmHWM(pid))/1024, "peak-RSS-MiB")
	b.ReportMetric(float64(before)/1024, "RSS-before-MiB")
	if rows < 1_000_000 {
		b.Errorf("exported %d rows, want at least 1,000,000", rows)
	}
}

// vmHWM reads a process's peak resident set size in KiB (Linux).
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			n, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return n
		}
	}
	return 0
}

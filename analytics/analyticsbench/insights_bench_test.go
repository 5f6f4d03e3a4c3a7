package analyticsbench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/analytics/insights"
	"github.com/usagemeter/usagemeter/analytics/internal/ledgertest"
	"github.com/usagemeter/usagemeter/billing"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// The insights benchmark's data is the plugin benchmark's (make bench-plugin): 1,000 tenants,
// 30 days of hourly AI usage, logins, feature uses, a daily ingest job and document, a storage
// reading; about 961,000 events, through a store followed as the exporter follows it.
var (
	insOnce    sync.Once
	insStore   *ledger.Store
	insChanges *ledger.Changes
	insDir     string
	insErr     error
	insNow     = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
)

func insightsSetup(b *testing.B) (*ledger.Store, *ledger.Changes) {
	insOnce.Do(func() {
		if insDir, insErr = os.MkdirTemp("", "insightsbench-"); insErr != nil {
			return
		}
		insChanges = ledger.NewChanges(0, insights.RawTypes()...)
		insStore, insErr = ledger.Open(context.Background(), ledger.Options{Path: filepath.Join(insDir, "ledger")})
		if insErr != nil {
			return
		}
		insChanges.Attach(insStore)
		from := insNow.Add(-30 * 24 * time.Hour).Add(time.Hour)
		users := []string{"u1", "u2", "u3", "u4", "u5"}
		features := []string{"chat", "search", "summarize"}
		var chunk []ledgertest.Event
		for ti := range 1000 {
			tenant := fmt.Sprintf("tenant-%04d", ti)
			for h := 0; ; h++ {
				at := from.Add(time.Duration(h) * time.Hour)
				if at.After(insNow) {
					break
				}
				id := tenant + "-" + strconv.Itoa(h)
				u := users[(h+ti)%len(users)]
				chunk = append(chunk, ledgertest.E("ai.tokens", at, "tenant", tenant, "user", u, "feature", features[h%3], "model", "gpt-large",
					"input_tokens", 100+(h*7+ti)%400, "output_tokens", 20+(h*3+ti)%80))
				if h%6 == 0 {
					chunk = append(chunk, ledgertest.E("feature.used", at, "tenant", tenant, "user", u, "feature", features[(h/6)%3]))
				}
				if h%12 == 0 {
					chunk = append(chunk, ledgertest.E("user.login", at, "tenant", tenant, "user", u, "session_seconds", 300+h%600))
				}
				if h%24 == 0 {
					chunk = append(chunk, ledgertest.E("ingest.completed", at, "tenant", tenant, "source", "s3", "bytes", 1_000_000, "records", 1000, "duration_ms", 800),
						ledgertest.E("document.created", at, "tenant", tenant, "user", u, "document_id", id, "doc_type", "invoice", "bytes", 40_000))
				}
			}
			chunk = append(chunk, ledgertest.E("storage.measured", insNow.Add(-time.Hour), "tenant", tenant, "storage_class", "hot", "bytes", 1<<30))
			if len(chunk) > 50000 || ti == 999 {
				if insErr = ledgertest.LoadErr(insStore, chunk); insErr != nil {
					return
				}
				chunk = chunk[:0]
			}
		}
	})
	if insErr != nil {
		b.Fatal(insErr)
	}
	return insStore, insChanges
}

// insightsEngine is wired as the exporter wires it: the plan of the plugin benchmark's
// configuration, billing's catalogue and plan history.
func insightsEngine(b *testing.B, st *ledger.Store, tenants []string) *insights.Engine {
	var c strings.Builder
	c.WriteString("default_plan: basic\nplans:\n  - name: basic\n    enforcement: hard\n    warning_ratio: 0.8\n" +
		"    limits: {ai_tokens: 100000000, documents: 100000, storage_bytes: 107374182400, ingest_bytes: 1099511627776, active_users: 1000}\ntenants:\n")
	for _, t := range tenants {
		c.WriteString("  - {id: " + t + ", plan: basic}\n")
	}
	cfg, err := config.Parse([]byte(c.String()))
	if err != nil {
		b.Fatal(err)
	}
	bill, err := billing.NewFromConfig(cfg, st.DB(), st, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	return &insights.Engine{Store: st, Config: func() *config.Config { return cfg },
		Pricing: insights.Pricing{Catalogue: bill.Catalogue, Stock: billing.StockFunc(cfg.Meters), PlanAt: bill.PlanAt}}
}

// BenchmarkInsights1000Tenants30Days is the all-tenant insights request behind the Grafana
// panel (issue #7): scanning as before, from the index, and from the index after 100 new
// events (10 of them late) per request. Not part of make bench-analytics: loading the data takes
// a minute or two; run it with -bench Insights.
func BenchmarkInsights1000Tenants30Days(b *testing.B) {
	st, ch := insightsSetup(b)
	ctx := context.Background()
	tenants, err := st.Tenants(ctx, insNow.AddDate(0, -2, 0), insNow.Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	at := insNow
	detect := func(b *testing.B, e *insights.Engine) {
		ins, err := e.Detect(ctx, tenants, at)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(ins)), "insights")
	}
	b.Run("scan", func(b *testing.B) {
		e := insightsEngine(b, st, tenants)
		for b.Loop() {
			detect(b, e)
		}
	})
	index := &insights.Index{Store: st, Changes: ch}
	b.Run("index", func(b *testing.B) {
		e := insightsEngine(b, st, tenants)
		e.Index = index
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		detect(b, e) // builds the index
		took := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.Logf("index built in %s, heap %+d MiB", took.Round(time.Millisecond), (int64(after.HeapAlloc)-int64(before.HeapAlloc))>>20)
		for b.Loop() {
			detect(b, e)
		}
	})
	b.Run("index-after-100-events", func(b *testing.B) {
		e := insightsEngine(b, st, tenants)
		e.Index = index
		n := 0
		for b.Loop() {
			b.StopTimer()
			var evs []ledgertest.Event
			for i := range 100 {
				n++
				when := at.Add(time.Duration(i) * time.Second)
				if i%10 == 0 {
					when = at.Add(-time.Duration(1+n%700) * time.Hour) // late, inside the window
				}
				tenant := fmt.Sprintf("tenant-%04d", n%1000)
				if i%2 == 0 {
					evs = append(evs, ledgertest.E("document.created", when, "tenant", tenant, "user", "u1", "document_id", "new-"+strconv.Itoa(n),
						"doc_type", "invoice", "bytes", 10, "content_hash", "h"+strconv.Itoa(n%7)))
				} else {
					evs = append(evs, ledgertest.E("ai.tokens", when, "tenant", tenant, "user", "u1", "feature", "chat", "model", "gpt-small", "input_tokens", 10, "output_tokens", 1))
				}
			}
			if err := ledgertest.LoadErr(st, evs); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			detect(b, e)
		}
		if s := index.Stats(); s.Builds != 1 || s.Scans != 0 {
			b.Fatalf("index stats %+v: the index was rebuilt or bypassed", s)
		}
	})
}

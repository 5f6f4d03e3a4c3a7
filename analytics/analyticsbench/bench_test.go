// Package analyticsbench holds the analytics benchmarks (make bench-analytics): a full usage
// report over 1,000 tenants and a year of history, which must run in under 5 s.
package analyticsbench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/analytics/insights"
	"github.com/usagemeter/usagemeter/analytics/internal/ledgertest"
	"github.com/usagemeter/usagemeter/analytics/report"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/simulate"
)

var (
	once    sync.Once
	store   *ledger.Store
	dir     string
	loadErr error
	loaded  time.Duration
	events  = envInt("ANALYTICS_BENCH_EVENTS", 1_000_000)
	tenants = envInt("ANALYTICS_BENCH_TENANTS", 1000)
	// The year of history: 2025-11-01 to 2026-11-01.
	yearStart = time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	yearEnd   = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	code := m.Run()
	if store != nil {
		store.Close()
	}
	if dir != "" {
		os.RemoveAll(dir)
	}
	if insStore != nil {
		insStore.Close()
	}
	if insDir != "" {
		os.RemoveAll(insDir)
	}
	os.Exit(code)
}

// setup loads the simulator's workload, spread evenly over the year, through the ledger's own
// Commit path: events are decoded with a clock set to their time, in chunks of at most 30 days.
func setup(b *testing.B) *ledger.Store {
	once.Do(func() {
		start := time.Now()
		// ANALYTICS_BENCH_DIR keeps the loaded history between runs (profiling); by default it
		// lives in a temporary directory removed at the end.
		keep := os.Getenv("ANALYTICS_BENCH_DIR")
		marker := ""
		if keep != "" {
			marker = filepath.Join(keep, fmt.Sprintf("loaded-%d-%d", events, tenants))
			if _, err := os.Stat(marker); err == nil {
				store, loadErr = ledger.Open(context.Background(), ledger.Options{Path: filepath.Join(keep, "ledger")})
				return
			}
			os.RemoveAll(keep)
		} else if dir, loadErr = os.MkdirTemp("", "analyticsbench-"); loadErr != nil {
			return
		}
		path := filepath.Join(dir, "ledger")
		if keep != "" {
			path = filepath.Join(keep, "ledger")
		}
		store, loadErr = ledger.Open(context.Background(), ledger.Options{Path: path})
		if loadErr != nil {
			return
		}
		g := simulate.NewGenerator(tenants, 42)
		step := yearEnd.Sub(yearStart) / time.Duration(events)
		chunk := make([][]byte, 0, 30000)
		var first, last time.Time
		for i := range events {
			at := yearStart.Add(time.Duration(i) * step)
			if len(chunk) == cap(chunk) || (len(chunk) > 0 && at.Sub(first) > 30*24*time.Hour) {
				if loadErr = ledgertest.CommitRaw(store, last, chunk); loadErr != nil {
					return
				}
				chunk = chunk[:0]
			}
			if len(chunk) == 0 {
				first = at
			}
			chunk = append(chunk, g.Next(nil, at))
			last = at
		}
		if loadErr = ledgertest.CommitRaw(store, last, chunk); loadErr != nil {
			return
		}
		// A year-old store has been flushed and compacted many times over: measure that steady
		// state, not a store whose year arrived a second ago as memtables and L0 files.
		if loadErr = store.Flush(context.Background()); loadErr != nil {
			return
		}
		if loadErr = store.DB().Flush(); loadErr != nil {
			return
		}
		if loadErr = store.DB().Compact(context.Background(), []byte{0}, []byte{0xff}, true); loadErr != nil {
			return
		}
		loaded = time.Since(start)
		if marker != "" {
			loadErr = os.WriteFile(marker, nil, 0o644)
		}
	})
	if loadErr != nil {
		b.Fatal(loadErr)
	}
	return store
}

// BenchmarkUsageReportYear1000Tenants is the performance target: a full usage report
// (every meter, every tenant, by month, for the year) in CSV, in under 5 s per run.
func BenchmarkUsageReportYear1000Tenants(b *testing.B) {
	benchUsage(b, report.Definition{Format: report.CSV, Period: report.Period{From: yearStart, To: yearEnd}})
}

// BenchmarkUsageReportYearByDay is the same report by day (365 windows per tenant and meter).
func BenchmarkUsageReportYearByDay(b *testing.B) {
	benchUsage(b, report.Definition{Format: report.CSV, Window: "day", Period: report.Period{From: yearStart, To: yearEnd}})
}

func benchUsage(b *testing.B, d report.Definition) {
	st := setup(b)
	b.Logf("history: %d events, %d tenants, loaded in %s", events, tenants, loaded.Round(time.Millisecond))
	src := &report.Source{Store: st}
	b.ResetTimer()
	var stats report.UsageStats
	for range b.N {
		tb, err := report.NewTables(d.Format, io.Discard, "bench", yearEnd)
		if err != nil {
			b.Fatal(err)
		}
		stats, err = src.Usage(context.Background(), d, yearEnd, tb)
		if err != nil {
			b.Fatal(err)
		}
		if err := tb.Close(nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if stats.Tenants != tenants {
		b.Fatalf("report covered %d tenants, want %d", stats.Tenants, tenants)
	}
	b.ReportMetric(float64(stats.Rows), "rows")
	b.ReportMetric(float64(stats.Tenants), "tenants")
}

// BenchmarkExecutiveSummary builds the executive summary (KPIs, 12 weeks of daily totals, the
// forecast, movers and every insight, which reads every raw event) over the same history. It is
// not part of make bench-analytics; run it with -bench ExecutiveSummary.
func BenchmarkExecutiveSummary(b *testing.B) {
	st := setup(b)
	src := &report.Source{Store: st}
	eng := &insights.Engine{Store: st}
	b.ResetTimer()
	for range b.N {
		x, err := src.ExecutiveSummary(context.Background(), nil, yearEnd, eng)
		if err != nil {
			b.Fatal(err)
		}
		if err := x.WritePDF(io.Discard); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(x.InsightCount), "insights")
	}
}

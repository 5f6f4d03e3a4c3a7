package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"
)

// Size of the tenant of BenchmarkQuotaCheck: every user uses AI tokens every hour of the month
// so far, for one of the features by turn. The rollup cells of the month that a per-user or
// per-feature check reads are hours × benchUsers × 2 (input and output).
const (
	benchUsers    = 100
	benchFeatures = 3
)

// BenchmarkQuotaCheck measures POST /v1/quota/check (handler, JSON, policy, ledger reads; no
// TCP) for the tenant's limit alone, as before user and feature limits, and with the user's, the
// feature's or both: same store, same run. Without new usage the user and feature sums are kept
// (exporter/quota, sumsCache); the commit+ cases ingest one event of the tenant before each
// check, so that every user or feature check reads the month's rollups again. It reports p50
// and p99 latency next to ns/op. `make bench-quota` runs it.
func BenchmarkQuotaCheck(b *testing.B) {
	dir := b.TempDir()
	file := filepath.Join(dir, "config.yml")
	cfg := `
plans:
  - name: pro
    limits: {ai_tokens: 1000000000}
    user_limits: {ai_tokens: 100000000}
    feature_limits:
      f0: {ai_tokens: 500000000}
      f1: {ai_tokens: 500000000}
      f2: {ai_tokens: 500000000}
default_plan: pro
`
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	addrs := []string{"127.0.0.1:0"}
	srv, err := Build(context.Background(), Options{Web: &web.FlagConfig{WebListenAddresses: &addrs}, StoragePath: filepath.Join(dir, "data"),
		ConfigFile: file, Log: &promslog.Config{}}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)

	now := time.Now().UTC()
	monthStart := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	hours := 0
	for h := monthStart; !h.After(now); h = h.Add(time.Hour) {
		var body strings.Builder
		for u := range benchUsers {
			fmt.Fprintf(&body, `{"specversion":"1.0","id":"%d-%d","source":"bench","type":"ai.tokens","time":%q,"data":{"tenant":"acme","user":"user-%03d","feature":"f%d","model":"m","input_tokens":7,"output_tokens":3}}`+"\n",
				hours, u, h.Format(time.RFC3339), u, (u+hours)%benchFeatures)
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(body.String()))
		req.Header.Set("Content-Type", "application/x-ndjson")
		rec := httptest.NewRecorder()
		srv.Handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("ingest hour %s: %d %s", h, rec.Code, rec.Body)
		}
		hours++
	}
	b.Logf("tenant acme: %d users × %d hours of the month, %d rollup cells", benchUsers, hours, benchUsers*hours*2)

	check := func(body string) error {
		req := httptest.NewRequest(http.MethodPost, "/v1/quota/check", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.Handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"result":"allow"`) {
			return fmt.Errorf("%d %s", rec.Code, rec.Body)
		}
		return nil
	}
	var seq atomic.Int64
	ingest := func() error {
		ev := fmt.Sprintf(`{"specversion":"1.0","id":"b%d","source":"bench","type":"ai.tokens","time":%q,"data":{"tenant":"acme","user":"user-007","feature":"f0","model":"m","input_tokens":1,"output_tokens":0}}`+"\n",
			seq.Add(1), time.Now().UTC().Format(time.RFC3339))
		req := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(ev))
		req.Header.Set("Content-Type", "application/x-ndjson")
		rec := httptest.NewRecorder()
		srv.Handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			return fmt.Errorf("ingest: %d %s", rec.Code, rec.Body)
		}
		return nil
	}
	for _, c := range []struct {
		name, extra string
		commit      bool
	}{
		{"tenant", ``, false},
		{"user", `,"user":"user-042"`, false},
		{"feature", `,"feature":"f1"`, false},
		{"user+feature", `,"user":"user-042","feature":"f1"`, false},
		// Each check right after a commit of the tenant: the kept sums are stale, so the user
		// and feature usage is read again from the rollups. The tenant-only case pays the same
		// ingestion; the difference is the read.
		{"commit+tenant", ``, true},
		{"commit+user+feature", `,"user":"user-042","feature":"f1"`, true},
	} {
		body := `{"tenant":"acme","meter":"ai_tokens","amount":10` + c.extra + `}`
		b.Run(c.name, func(b *testing.B) {
			benchLatency(b, func() error {
				if c.commit {
					if err := ingest(); err != nil {
						return err
					}
				}
				return check(body)
			})
		})
	}
}

// benchLatency runs op from GOMAXPROCS goroutines and reports p50 and p99 of single calls.
func benchLatency(b *testing.B, op func() error) {
	var (
		mu  sync.Mutex
		all []time.Duration
	)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		lat := make([]time.Duration, 0, 1024)
		for pb.Next() {
			start := time.Now()
			if err := op(); err != nil {
				b.Error(err)
				return
			}
			lat = append(lat, time.Since(start))
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Nanoseconds()) }
	b.ReportMetric(pct(0.50), "p50-ns")
	b.ReportMetric(pct(0.99), "p99-ns")
}

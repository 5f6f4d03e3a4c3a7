package authz

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// benchParallel runs op from GOMAXPROCS*4 goroutines (requests arrive concurrently) and reports
// the latency percentiles of single calls next to the usual throughput figure.
func benchParallel(b *testing.B, op func(context.Context, int) error) {
	ctx := context.Background()
	var (
		mu  sync.Mutex
		all []time.Duration
	)
	b.SetParallelism(1)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		lat := make([]time.Duration, 0, 1024)
		i := 0
		for pb.Next() {
			start := time.Now()
			if err := op(ctx, i); err != nil {
				b.Error(err)
				return
			}
			lat = append(lat, time.Since(start))
			i++
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

func BenchmarkAdmit(b *testing.B) {
	e := newEmbedded(b)
	limit := int64(1_000_000)
	benchParallel(b, func(ctx context.Context, i int) error {
		d, err := e.Admit(ctx, QuotaInput{
			Tenant: "acme", Meter: "ai_tokens", Plan: "pro", Amount: 100, Used: int64(i % 1_100_000),
			Limit: &limit, WarningRatio: 0.8, Enforcement: "hard", Feature: "chat",
			PlanFeatures: []string{"search", "chat", "summaries"},
		})
		if err == nil && d.Result == "" {
			b.Fatal("empty result")
		}
		return err
	})
}

func BenchmarkDecide(b *testing.B) {
	e := newEmbedded(b)
	p := Principal{Subject: "ann", Kind: "jwt", Roles: []string{"saas_admin"}, Tenants: []string{"acme", "beta", "gamma"}}
	benchParallel(b, func(ctx context.Context, i int) error {
		_, err := e.Decide(ctx, Input{Principal: p, Action: "usage.read", Tenant: "beta", Method: "GET", Path: "/v1/usage"})
		return err
	})
}

// Package billingbench benchmarks a month's invoice run against the real ledger. It is a
// package of its own so that billing's unit tests do not depend on the ledger building.
package billingbench

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/billing"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// benchCatalogue charges every default meter, cycling through the charge models, on two plans.
func benchCatalogue(b *testing.B) pricing.Catalogue {
	b.Helper()
	models := []string{
		`{meter: %s, model: per_unit, unit_price: "0.0004", included: 10}`,
		`{meter: %s, model: package, package_size: 100, package_price: "1.50"}`,
		"meter: %s\n        model: graduated\n        tiers:\n          - {up_to: 50, unit_price: \"0.10\"}\n          - {up_to: inf, unit_price: \"0.01\", flat_fee: \"2.00\"}",
		"meter: %s\n        model: volume\n        included: 5\n        tiers:\n          - {up_to: 100, unit_price: \"0.05\"}\n          - {up_to: inf, unit_price: \"0.02\"}",
		`{meter: %s, model: flat, fee: "3.00"}`,
	}
	var sb strings.Builder
	sb.WriteString("currency: USD\nplans:\n")
	for pi, plan := range []string{"starter", "pro"} {
		fmt.Fprintf(&sb, "  - name: %s\n    base_fee: \"%d.00\"\n    minimum_commitment: \"%d.00\"\n    charges:\n", plan, 29+pi*170, 50*pi)
		for i, d := range meter.Defaults() {
			fmt.Fprintf(&sb, "      - "+models[(i+pi)%len(models)]+"\n", d.Name)
		}
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(sb.String()), &n); err != nil {
		b.Fatal(err)
	}
	c, err := pricing.ParseConfig(&n)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// seed writes a month of events feeding every default meter for n tenants into the real ledger.
func seed(b *testing.B, s *ledger.Store, n int, p rating.Period) {
	b.Helper()
	var batch []event.Event
	flush := func() {
		if _, err := s.Commit(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	id := 0
	add := func(typ, tenant string, at time.Time, fields []event.Field, qty ...event.Quantity) {
		id++
		batch = append(batch, event.Event{ID: fmt.Sprint(id), Source: "bench", Type: typ, Time: at, Tenant: tenant,
			Fields: fields, Quantities: qty, Raw: []byte(fmt.Sprintf(`{"id":"%d","type":%q}`, id, typ))})
		if len(batch) == 10000 {
			flush()
		}
	}
	for i := 0; i < n; i++ {
		t := fmt.Sprintf("tenant-%05d", i)
		user := []event.Field{{Name: "user", Value: fmt.Sprintf("u%d", i%7)}}
		for k := 0; k < 2; k++ {
			at := p.Start().Add(time.Duration(i%600+k*300) * time.Hour)
			add("document.created", t, at, append(user, event.Field{Name: "document_id", Value: fmt.Sprint(k)}, event.Field{Name: "doc_type", Value: "pdf"}),
				event.Quantity{Name: "bytes", Value: int64(1000 + i)})
			add("storage.measured", t, at, []event.Field{{Name: "storage_class", Value: "hot"}}, event.Quantity{Name: "bytes", Value: int64(5000 * (i + k))})
			add("ai.tokens", t, at, append(user, event.Field{Name: "feature", Value: "chat"}, event.Field{Name: "model", Value: "m1"}),
				event.Quantity{Name: "input_tokens", Value: int64(100 + i%1000)}, event.Quantity{Name: "output_tokens", Value: int64(50 + i%300)})
			add("ingest.completed", t, at, append(user, event.Field{Name: "source", Value: "s3"}),
				event.Quantity{Name: "bytes", Value: int64(10000 + i)}, event.Quantity{Name: "records", Value: int64(10 + i%50)}, event.Quantity{Name: "duration_ms", Value: 1200})
			add("user.login", t, at, user, event.Quantity{Name: "session_seconds", Value: 600})
			add("feature.used", t, at, append(user, event.Field{Name: "feature", Value: "search"}))
		}
	}
	flush()
}

// BenchmarkInvoiceRun10kTenants is one month's invoice run for 10,000 tenants with every
// default meter charged, reading usage from the real ledger (exporter/ledger) and writing
// invoices to its Pebble DB. Target: under 10 s per run.
func BenchmarkInvoiceRun10kTenants(b *testing.B) {
	const tenants = 10000
	ctx := context.Background()
	oct := rating.Period{Year: 2026, Month: time.October}
	st, err := ledger.Open(ctx, ledger.Options{Path: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	seed(b, st, tenants, oct)
	// Settle the LSM as a month-old ledger would be, so the run is not measured against the
	// compactions the seeding just triggered.
	if err := st.DB().Flush(); err != nil {
		b.Fatal(err)
	}
	if err := st.DB().Compact(ctx, []byte{0}, []byte{0xff}, true); err != nil {
		b.Fatal(err)
	}
	svc, err := billing.New(billing.Options{DB: st.DB(), Catalogue: benchCatalogue(b), Usage: st, Stock: billing.StockFunc(meter.Defaults()),
		DefaultPlan: func(t string) string {
			if t[len(t)-1]%2 == 0 {
				return "pro"
			}
			return "starter"
		},
		Now:    func() time.Time { return oct.End().Add(4 * 24 * time.Hour) },
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	// CPU seconds next to wall time: the box is shared, and the wall time of a run depends on
	// what else is running; the CPU time does not (much).
	var cpu time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		before := cpuTime()
		res, err := svc.Run(ctx, oct)
		cpu += cpuTime() - before
		if err != nil {
			b.Fatal(err)
		}
		if res.Finalized != tenants {
			b.Fatalf("finalized %d invoices, want %d", res.Finalized, tenants)
		}
		b.StopTimer()
		// Start the next iteration from an empty billing state; the ledger stays.
		if err := st.DB().DeleteRange([]byte("b/"), []byte("b0"), pebble.Sync); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(tenants), "invoices/op")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

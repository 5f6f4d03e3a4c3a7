package stripecollect_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/billing/internal/stripemock"
	"github.com/usagemeter/usagemeter/billing/internal/usagetest"
	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/stripecollect"
)

// BenchmarkCollect10kTenants: one month's invoices of 10,000 tenants, all collected through
// Stripe, sent to a real stripe-mock (make bench-collect). The invoice run is set up outside
// the timer; the timer covers Collect only: per invoice a customer, an invoice, its lines,
// finalize and send, and three synced records. Reported: calls/op (HTTP requests to Stripe)
// and calls/invoice.
func BenchmarkCollect10kTenants(b *testing.B) {
	for _, conc := range []int{4, 16} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) { benchCollect(b, 10_000, conc) })
	}
}

func benchCollect(b *testing.B, tenants, concurrency int) {
	mock := stripemock.Start(b)
	cat := parseCatalogue(b, pricing.StripeSendInvoice)
	cat.DefaultCollection = pricing.CollectStripe
	usage := usagetest.New()
	at := time.Date(2026, time.October, 5, 0, 0, 0, 0, time.UTC)
	for i := range tenants {
		usage.Add(fmt.Sprintf("t%05d", i), "calls", at, int64(100+i))
	}
	now := time.Date(2026, time.November, 10, 0, 0, 0, 0, time.UTC)
	var calls, sent int64
	for b.Loop() {
		b.StopTimer()
		db, err := pebble.Open(b.TempDir(), &pebble.Options{})
		if err != nil {
			b.Fatal(err)
		}
		svc, err := invoice.New(invoice.Options{DB: db, Catalogue: cat, Usage: usage, Now: func() time.Time { return now }})
		if err != nil {
			b.Fatal(err)
		}
		if res, err := svc.Run(context.Background(), oct); err != nil || res.Finalized != tenants {
			b.Fatalf("run: %d finalized, %v", res.Finalized, err)
		}
		settings := cat.Stripe
		settings.APIBase, settings.Concurrency = mock, concurrency
		col, err := stripecollect.New(stripecollect.Options{Store: svc, APIKey: "sk_test_123", Settings: settings})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := col.Collect(context.Background())
		if err != nil || res.Sent != tenants {
			b.Fatalf("collect: %+v %v", res, err)
		}
		b.StopTimer()
		calls += res.Calls
		sent += int64(res.Sent)
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
	b.ReportMetric(float64(calls)/float64(sent), "calls/invoice")
}

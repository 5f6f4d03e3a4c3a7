package notify

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/meter"
	"github.com/usagemeter/usagemeter/notify/notifytest"
)

// noUsage is a ledger with no meter: invoice rules read none.
type noUsage struct{}

func (noUsage) Current(string, string, time.Time) (int64, bool) { return 0, false }
func (noUsage) Meter(string) (*meter.Def, bool)                 { return nil, false }

// An invoice_finalized rule fires once per invoice finalized after the rule was created, on the
// full evaluations (start, interval) only, and its e-mail states the amount exactly.
func TestInvoiceFinalizedOncePerInvoice(t *testing.T) {
	ctx := ctxT(t)
	mp := notifytest.StartMailpit(t, "--smtp-auth-accept-any", "--smtp-auth-allow-insecure")
	ns := NewStore(openDB(t, t.TempDir()))
	created := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	r := Rule{Tenant: "acme", Condition: Condition{Kind: CondInvoiceFinalized}, Channels: []Channel{{Type: ChannelEmail, To: []string{"billing@acme.test"}}}}
	if err := r.Validate(func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	r, err := ns.PutRule(r, created)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	invoices := []InvoiceInfo{
		{Number: "INV-000041", Period: "2026-10", Currency: "USD", Exponent: 2, AmountDue: 999, FinalizedAt: created.Add(-time.Hour)},
	}
	ev := NewEvaluator(ns, noUsage{}, func(context.Context, string, string) (int64, bool) { return 0, false }, testLog(t))
	ev.Invoices = func(_ context.Context, tenant string) ([]InvoiceInfo, error) {
		mu.Lock()
		defer mu.Unlock()
		if tenant != "acme" {
			return nil, nil
		}
		return append([]InvoiceInfo(nil), invoices...), nil
	}
	count := func(full bool, want int) {
		t.Helper()
		n, err := ev.evaluate(ctx, full)
		if err != nil || n != want {
			t.Fatalf("evaluation (full %v) wrote %d events (%v), want %d", full, n, err, want)
		}
	}
	count(true, 0) // finalized before the rule existed
	mu.Lock()
	invoices = append(invoices, InvoiceInfo{Number: "INV-000042", Period: "2026-11", Currency: "USD", Exponent: 2, AmountDue: 123456,
		FinalizedAt: created.Add(72 * time.Hour), DueAt: created.Add(17 * 24 * time.Hour)})
	mu.Unlock()
	count(false, 0) // a commit's poke does not look at invoices
	count(true, 1)
	count(true, 0)
	s := &SMTP{Addr: mp.SMTP, From: "billing@platform.test"}
	if err := s.load(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDispatcher(ns, s, testLog(t)).Drain(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := mp.Messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if !strings.Contains(m.Subject, "invoice INV-000042 is ready") || !strings.Contains(m.Text, "1234.56 USD") || !strings.Contains(m.HTML, "2026-12-18") {
		t.Fatalf("message %q:\n%s\n%s", m.Subject, m.Text, m.HTML)
	}
}

func TestFormatMinor(t *testing.T) {
	for _, c := range []struct {
		v    int64
		exp  int
		want string
	}{{123456, 2, "1234.56"}, {5, 2, "0.05"}, {0, 2, "0.00"}, {-1050, 2, "-10.50"}, {1234, 0, "1234"}, {1, 3, "0.001"}} {
		if got := formatMinor(c.v, c.exp); got != c.want {
			t.Errorf("formatMinor(%d, %d) = %s, want %s", c.v, c.exp, got, c.want)
		}
	}
}

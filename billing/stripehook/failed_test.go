package stripehook

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/billing/internal/usagetest"
	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
)

// TestPaymentFailedIsRecordedOnce: invoice.payment_failed on an invoice collected through
// Stripe counts one failure on its collection record, and a replay counts nothing; on an
// invoice collected manually it is acknowledged and ignored.
func TestPaymentFailedIsRecordedOnce(t *testing.T) {
	u := usagetest.New()
	oct := rating.Period{Year: 2026, Month: time.October}
	u.Add("acme", "ai_tokens", oct.Start(), 1)
	u.Add("beta", "ai_tokens", oct.Start(), 1)
	cat := pricing.Default()
	cat.Collections = map[string]string{"acme": pricing.CollectStripe}
	now := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	svc, err := invoice.New(invoice.Options{DB: usagetest.OpenDB(t), Catalogue: cat, Usage: u,
		DefaultPlan: func(string) string { return "starter" }, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Run(context.Background(), oct); err != nil {
		t.Fatal(err)
	}
	h := &Handler{Secret: func() string { return secret }, Recorder: svc}
	failed := func(id, number string) Response {
		t.Helper()
		rec := post(h, event(id, "invoice.payment_failed", map[string]any{"id": "in_1", "object": "invoice", "attempt_count": 2,
			"currency": "usd", "metadata": map[string]string{MetadataInvoice: number}}), secret)
		var resp Response
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &resp) != nil {
			t.Fatalf("payment_failed %s: %d %s", id, rec.Code, rec.Body)
		}
		return resp
	}
	if r := failed("evt_f1", "INV-00000001"); r.Duplicate || r.Ignored != "" {
		t.Fatalf("first: %+v", r)
	}
	if r := failed("evt_f1", "INV-00000001"); !r.Duplicate {
		t.Fatalf("replay: %+v", r)
	}
	c, err := svc.Collection(context.Background(), "INV-00000001")
	if err != nil || c.PaymentFailures != 1 || c.LastError == "" {
		t.Fatalf("collection: %+v %v", c, err)
	}
	if r := failed("evt_f2", "INV-00000002"); r.Ignored == "" { // beta: manual collection
		t.Fatalf("manual invoice: %+v", r)
	}
}

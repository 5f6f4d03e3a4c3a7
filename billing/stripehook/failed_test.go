package stripehook

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/billing/internal/usagetest"
	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/money"
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

// TestRefundReopensTheInvoiceOnce: charge.refunded (cumulative amount_refunded) on a payment
// recorded from payment_intent.succeeded reopens the invoice by what is newly refunded; replays
// and repeated cumulative amounts record nothing more; the statement still ends at the balance.
func TestRefundReopensTheInvoiceOnce(t *testing.T) {
	svc, h := setup(t)
	ctx := context.Background()
	inv, _ := svc.Get(ctx, "INV-00000001")
	due := int64(inv.AmountDue)
	if rec := post(h, event("evt_p", "payment_intent.succeeded", map[string]any{"id": "pi_1", "object": "payment_intent",
		"amount_received": due, "currency": "usd", "metadata": map[string]string{MetadataInvoice: "INV-00000001"}}), secret); rec.Code != 200 {
		t.Fatalf("payment: %d %s", rec.Code, rec.Body)
	}
	refund := func(id string, cumulative int64) Response {
		t.Helper()
		rec := post(h, event(id, "charge.refunded", map[string]any{"id": "ch_1", "object": "charge", "payment_intent": "pi_1",
			"amount_refunded": cumulative, "currency": "usd"}), secret)
		var resp Response
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &resp) != nil {
			t.Fatalf("refund %s: %d %s", id, rec.Code, rec.Body)
		}
		return resp
	}
	remaining := func() (int64, invoice.Status) {
		inv, _ := svc.Get(ctx, "INV-00000001")
		return int64(inv.AmountRemaining), inv.Status
	}
	if rem, st := remaining(); rem != 0 || st != invoice.Paid {
		t.Fatalf("after paying: %d %s", rem, st)
	}
	refund("evt_r1", 400)
	if rem, st := remaining(); rem != 400 || st != invoice.Finalized {
		t.Fatalf("after refunding 400: %d %s", rem, st)
	}
	if r := refund("evt_r1", 400); !r.Duplicate {
		t.Errorf("replay: %+v", r)
	}
	if r := refund("evt_r2", 400); r.Ignored == "" { // same cumulative amount, new event
		t.Errorf("repeated cumulative amount: %+v", r)
	}
	refund("evt_r3", due)
	if rem, _ := remaining(); rem != due {
		t.Fatalf("after refunding everything: %d, want %d", rem, due)
	}
	st, err := svc.Statement(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.Entries); n == 0 || st.Entries[n-1].Balance != st.Balance.Balance || st.Balance.Outstanding != money.Amount(due) {
		t.Fatalf("statement %+v", st)
	}
	// A lower cumulative amount than recorded (reordered events) adds nothing.
	if r := refund("evt_r4", 10); r.Ignored == "" {
		t.Errorf("lower cumulative amount: %+v", r)
	}
	if rem, _ := remaining(); rem != due {
		t.Errorf("a reordered event changed the invoice: %d", rem)
	}
}

// TestStripeCreditNoteRefundsACollectedInvoice: a Stripe credit note with a refund on the
// Stripe invoice we sent becomes our credit note, once; the refunded money leaves the credit it
// creates, so the balance stays right.
func TestStripeCreditNoteRefundsACollectedInvoice(t *testing.T) {
	svc, h := setup(t)
	ctx := context.Background()
	inv, _ := svc.Get(ctx, "INV-00000001")
	if err := svc.PutCollection(ctx, inv.Number, &invoice.Collection{Provider: Provider, Status: invoice.CollectSent, Invoice: "in_sent"}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RecordPayment(ctx, invoice.PaymentInput{Invoice: inv.Number, Amount: inv.AmountDue, Method: "stripe"}); err != nil {
		t.Fatal(err)
	}
	body := event("evt_cn", "credit_note.created", map[string]any{"id": "cn_1", "object": "credit_note", "number": "ABC-CN-01",
		"invoice": "in_sent", "amount": 300, "currency": "usd", "reason": "duplicate", "refunds": []map[string]any{{"amount_refunded": 300, "refund": "re_1"}}})
	for i := 0; i < 2; i++ {
		rec := post(h, body, secret)
		var resp Response
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &resp) != nil || resp.Duplicate != (i == 1) {
			t.Fatalf("attempt %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	cns, _ := svc.CreditNotes(ctx, "acme")
	if len(cns) != 1 || cns[0].Amount != 300 || cns[0].Invoice != inv.Number {
		t.Fatalf("credit notes: %+v", cns)
	}
	b, _ := svc.Balance(ctx, "acme")
	if b.Credit != 0 || b.Outstanding != 0 {
		t.Fatalf("the refunded money stayed as credit: %+v", b)
	}
	st, err := svc.Statement(ctx, "acme")
	if err != nil || st.Entries[len(st.Entries)-1].Balance != st.Balance.Balance || st.Entries[len(st.Entries)-1].Kind != "refund" {
		t.Fatalf("statement: %+v %v", st, err)
	}
	// A credit note on a Stripe invoice we did not send is acknowledged and ignored.
	other := event("evt_cn2", "credit_note.created", map[string]any{"id": "cn_2", "object": "credit_note", "invoice": "in_other", "amount": 100, "currency": "usd"})
	var resp Response
	if rec := post(h, other, secret); rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &resp) != nil || resp.Ignored == "" {
		t.Fatalf("foreign credit note: %d %s", rec.Code, rec.Body)
	}
}

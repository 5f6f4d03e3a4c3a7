package billingbench

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/billing"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// TestInvoiceFromLedger rates a month read from the real ledger: a flow meter (ai_tokens, summed
// inside the month), stock meters (storage_bytes: latest reading at the month's end; documents:
// created minus deleted), and a mid-month plan change that makes rating read partial windows.
func TestInvoiceFromLedger(t *testing.T) {
	ctx := context.Background()
	st, err := ledger.Open(ctx, ledger.Options{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	at := func(d int) time.Time { return time.Date(2026, 10, d, 12, 0, 0, 0, time.UTC) }
	user := event.Field{Name: "user", Value: "u1"}
	doc := func(id string) []event.Field {
		return []event.Field{user, {Name: "document_id", Value: id}, {Name: "doc_type", Value: "pdf"}}
	}
	evs := []event.Event{
		{ID: "1", Type: "ai.tokens", Time: at(5), Fields: []event.Field{user, {Name: "feature", Value: "chat"}, {Name: "model", Value: "m"}},
			Quantities: []event.Quantity{{Name: "input_tokens", Value: 100}, {Name: "output_tokens", Value: 50}}},
		{ID: "2", Type: "ai.tokens", Time: at(20), Fields: []event.Field{user, {Name: "feature", Value: "chat"}, {Name: "model", Value: "m"}},
			Quantities: []event.Quantity{{Name: "input_tokens", Value: 7}, {Name: "output_tokens", Value: 3}}},
		{ID: "3", Type: "storage.measured", Time: at(2), Fields: []event.Field{{Name: "storage_class", Value: "hot"}}, Quantities: []event.Quantity{{Name: "bytes", Value: 1000}}},
		{ID: "4", Type: "storage.measured", Time: at(25), Fields: []event.Field{{Name: "storage_class", Value: "hot"}}, Quantities: []event.Quantity{{Name: "bytes", Value: 3000}}},
		{ID: "5", Type: "document.created", Time: at(3), Fields: doc("d1"), Quantities: []event.Quantity{{Name: "bytes", Value: 10}}},
		{ID: "6", Type: "document.created", Time: at(4), Fields: doc("d2"), Quantities: []event.Quantity{{Name: "bytes", Value: 10}}},
		{ID: "7", Type: "document.deleted", Time: at(6), Fields: doc("d1"), Quantities: []event.Quantity{{Name: "bytes", Value: 10}}},
	}
	for i := range evs {
		evs[i].Source, evs[i].Tenant, evs[i].Raw = "test", "acme", []byte(`{}`)
	}
	if _, err := st.Commit(ctx, evs); err != nil {
		t.Fatal(err)
	}
	src := `
currency: USD
plans:
  - name: a
    charges:
      - {meter: ai_tokens, model: per_unit, unit_price: "0.01"}
      - {meter: storage_bytes, model: per_unit, unit_price: "0.001"}
      - {meter: documents, model: per_unit, unit_price: "1.00"}
  - name: b
    charges:
      - {meter: ai_tokens, model: per_unit, unit_price: "0.02"}
      - {meter: storage_bytes, model: per_unit, unit_price: "0.001"}
      - {meter: documents, model: per_unit, unit_price: "1.00"}
`
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	cat, err := pricing.ParseConfig(&n)
	if err != nil {
		t.Fatal(err)
	}
	oct := rating.Period{Year: 2026, Month: time.October}
	now := time.Date(2026, 10, 16, 0, 0, 0, 0, time.UTC)
	svc, err := billing.New(billing.Options{DB: st.DB(), Catalogue: cat, Usage: st, Stock: billing.StockFunc(meter.Defaults()),
		DefaultPlan: func(string) string { return "a" }, Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ChangePlan(ctx, "acme", "b", now); err != nil { // October 1-15 on a, 16-31 on b
		t.Fatal(err)
	}
	now = time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	if _, err := svc.Run(ctx, oct); err != nil {
		t.Fatal(err)
	}
	inv, err := svc.Get(ctx, "INV-00000001")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int64{}
	for _, l := range inv.Lines {
		got[l.Key] = [2]int64{l.Quantity, int64(l.Amount)}
	}
	// Segment 0 = 15/31 of October on a, segment 1 = 16/31 on b.
	want := map[string][2]int64{
		"usage/0/a/ai_tokens":     {150, 150},  // flow: tokens inside Oct 1-15 × 1c
		"usage/1/b/ai_tokens":     {10, 20},    // flow: tokens inside Oct 16-31 × 2c
		"usage/0/a/storage_bytes": {1000, 48},  // stock: level 1000 at Oct 16 × 0.1c × 15/31 = 48.39
		"usage/1/b/storage_bytes": {3000, 155}, // stock: level 3000 at Nov 1 × 0.1c × 16/31 = 154.84
		"usage/0/a/documents":     {1, 48},     // stock: 2 created - 1 deleted; 100c × 15/31 = 48.39
		"usage/1/b/documents":     {1, 52},     // 100c × 16/31 = 51.61
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v", k, got[k], w)
		}
	}
	if inv.Subtotal != 150+20+48+155+48+52 {
		t.Errorf("subtotal %d (lines %v)", inv.Subtotal, got)
	}
}

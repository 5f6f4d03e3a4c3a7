package render

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ledongthuc/pdf"

	"github.com/usagemeter/usagemeter/billing/internal/usagetest"
	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
)

// sampleInvoice rates a pro-plan October with the default catalogue and wraps it as a
// finalized invoice, the way invoice.Service stores it.
func sampleInvoice(t *testing.T) *invoice.Invoice {
	t.Helper()
	cat := pricing.Default()
	cat.Customers = map[string]pricing.Party{"acme": {Name: "Acme Corp", Address: []string{"42 Harbour Road", "Bristol"}, TaxID: "GB123"}}
	u := usagetest.New("storage_bytes")
	oct := rating.Period{Year: 2026, Month: time.October}
	u.Add("acme", "ai_tokens", oct.Start().Add(time.Hour), 62_000_000)
	u.Add("acme", "active_users", oct.Start().Add(time.Hour), 180)
	r := &rating.Rater{Catalogue: &cat, Usage: u, Stock: u.IsStock}
	lines, err := r.Rate(context.Background(), "acme", oct, []rating.Segment{{Plan: "pro", From: oct.Start(), To: oct.End()}})
	if err != nil {
		t.Fatal(err)
	}
	fin := time.Date(2026, 11, 4, 9, 0, 0, 0, time.UTC)
	due := fin.Add(cat.PaymentTerms)
	sub := rating.Sum(lines)
	return &invoice.Invoice{ID: "INV-00000007", Number: "INV-00000007", Tenant: "acme", Period: oct,
		PeriodStart: oct.Start(), PeriodEnd: oct.End(), Status: invoice.Finalized, Currency: cat.Currency,
		Seller: cat.Seller, Buyer: cat.Buyer("acme"), Segments: []invoice.Segment{{Plan: "pro", From: oct.Start(), To: oct.End()}},
		Lines: lines, Subtotal: sub, CreditApplied: 1000, AmountDue: sub - 1000, AmountRemaining: sub - 1000,
		CreatedAt: fin, FinalizedAt: &fin, DueAt: &due}
}

func TestPDFParsesBack(t *testing.T) {
	inv := sampleInvoice(t)
	var buf bytes.Buffer
	if err := PDF(&buf, inv); err != nil {
		t.Fatal(err)
	}
	r, err := pdf.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatalf("not a readable PDF: %v", err)
	}
	if r.NumPage() != 1 {
		t.Errorf("%d pages", r.NumPage())
	}
	tr, err := r.GetPlainText()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(tr)
	text := string(raw)
	// ai_tokens: 57,000,000 billable, graduated: 50,000,000 × 0.0015c + 7,000,000 × 0.001c = 82,000c.
	// active_users: 155 billable at the 3.00 volume tier = 46,500c. Base 19,900c. Total 148,400c.
	if inv.Subtotal != 148400 {
		t.Fatalf("fixture subtotal %d", inv.Subtotal)
	}
	for _, want := range []string{
		"Invoice INV-00000007", "Usagemeter Inc.", "1 Meter Street", // seller
		"Acme Corp", "42 Harbour Road", "Tax ID: GB123", // buyer
		"Period: 2026-10 (2026-10-01 to 2026-10-31)", "Due: 2026-11-18",
		// lines: display names, quantities with units and thousands separators
		"Base fee, plan pro", "AI tokens", "62,000,000 tokens", "820.00", "Distinct active users", "180 users", "465.00",
		"57,000,000 tokens billable (5,000,000 included): tier 1 (1 to 50,000,000)", "0 bytes billable (107,374,182,400 included)",
		"Subtotal", "1,484.00 USD", "Prepaid credit applied", "-10.00 USD", "Amount due", "1,474.00 USD", // totals
	} {
		if !strings.Contains(text, want) {
			t.Errorf("PDF text lacks %q\n%s", want, text)
		}
	}
	for _, raw := range []string{"ai_tokens", "active_users", "62000000", "1484.00"} {
		if strings.Contains(text, raw) {
			t.Errorf("PDF text shows the raw %q", raw)
		}
	}
}

func TestCSVAndJSON(t *testing.T) {
	inv := sampleInvoice(t)
	var buf bytes.Buffer
	if err := CSV(&buf, inv); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rows[0], ",") != strings.Join(CSVHeader, ",") || len(rows) != 1+len(inv.Lines)+6 {
		t.Fatalf("rows: %v", rows)
	}
	amountCol := len(CSVHeader) - 2
	var sum float64 // only to cross-check the printed column in a test; money itself never uses floats
	for _, row := range rows[1 : 1+len(inv.Lines)] {
		var v float64
		if err := json.Unmarshal([]byte(row[amountCol]), &v); err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	if sub := rows[1+len(inv.Lines)]; sub[4] != "subtotal" || sub[amountCol] != "1484.00" || int64(sum*100+0.5) != 148400 {
		t.Fatalf("subtotal row %v, lines sum %v", sub, sum)
	}
	if !strings.Contains(strings.Join(rows[2], "|"), "tier 1 (1-50000000): 50000000 x 0.000015") {
		t.Errorf("tier breakdown missing: %v", rows[2])
	}
	buf.Reset()
	if err := JSON(&buf, inv); err != nil {
		t.Fatal(err)
	}
	var back invoice.Invoice
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.Subtotal != inv.Subtotal || len(back.Lines) != len(inv.Lines) ||
		back.Lines[1].Tiers[0].UnitPrice.Rat().Cmp(inv.Lines[1].Tiers[0].UnitPrice.Rat()) != 0 {
		t.Fatalf("JSON round trip: %v", err)
	}
}

package render

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/ledongthuc/pdf"

	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/tax"
)

// TestTaxesGrantsAndLegendsPrinted: tax lines (with a reverse-charge legend), the total and the
// credit grants drawn appear on the PDF and in the CSV, with both parties' tax ids.
func TestTaxesGrantsAndLegendsPrinted(t *testing.T) {
	inv := sampleInvoice(t)
	inv.Taxes = []tax.Line{
		{Name: "VAT", Jurisdiction: "GB", Rate: "20", Base: inv.Subtotal, Amount: 29680},
		{Name: "VAT", Jurisdiction: "DE", Rate: "19", Base: inv.Subtotal, Legend: tax.LegendReverseCharge},
	}
	inv.Tax, inv.Total = 29680, inv.Subtotal+29680
	inv.Grants = []invoice.GrantUse{{Grant: "GR-00000001", Invoice: inv.Number, Amount: 5000}}
	inv.GrantsApplied = 5000
	var buf bytes.Buffer
	if err := PDF(&buf, inv); err != nil {
		t.Fatal(err)
	}
	r, err := pdf.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := r.GetPlainText()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(tr)
	var csv bytes.Buffer
	if err := CSV(&csv, inv); err != nil {
		t.Fatal(err)
	}
	// The PDF groups thousands for readers; the CSV keeps plain numbers for spreadsheets.
	total := map[string]string{"PDF": "1,780.80", "CSV": "1780.80"}
	for name, text := range map[string]string{"PDF": string(raw), "CSV": csv.String()} {
		for _, want := range []string{"VAT 20% (GB)", "296.80", "VAT 19% (DE): " + tax.LegendReverseCharge, "Total", total[name],
			"Credit grants applied", "-50.00"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s lacks %q\n%s", name, want, text)
			}
		}
	}
	if !strings.Contains(string(raw), "Tax ID: GB123") || !strings.Contains(string(raw), "Tax ID:") {
		t.Errorf("PDF lacks the tax ids")
	}
}

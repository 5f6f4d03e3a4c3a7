package invoice

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/billing/tax"
)

const taxCatalogue = testCatalogue + `
taxes:
  rates:
    - {jurisdiction: GB, name: VAT, rate: "20"}
    - {jurisdiction: DE, name: USt, rate: "19"}
customers:
  acme: {name: Acme, tax_id: GB123456789, jurisdiction: GB}
  beta: {name: Beta GmbH, tax_id: DE123456789, jurisdiction: DE, reverse_charge: true}
`

// TestTaxesOnTheInvoice: an exclusive tax is added to the total and asked for (credit notes may
// go up to the total); a reverse-charge customer gets a zero tax line with its legend.
func TestTaxesOnTheInvoice(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, taxCatalogue, map[string]string{"acme": "pro", "beta": "pro"})
	f.usage.Add("acme", "calls", day(10, 5), 334) // 10.00 + 234 × 1c = 12.34
	f.usage.Add("beta", "calls", day(10, 5), 100)
	f.setNow(time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC))
	if _, err := f.svc.Run(ctx, oct); err != nil {
		t.Fatal(err)
	}
	acme, _ := f.svc.Get(ctx, "INV-00000001")
	if acme.Subtotal != 1234 || acme.Tax != 247 || acme.Total != 1481 || acme.AmountDue != 1481 || len(acme.Taxes) != 1 || acme.Taxes[0].Name != "VAT" {
		t.Fatalf("acme: subtotal %d tax %d total %d due %d taxes %+v", acme.Subtotal, acme.Tax, acme.Total, acme.AmountDue, acme.Taxes)
	}
	if _, err := f.svc.IssueCreditNote(ctx, acme.Number, 1482, "too much"); !errors.Is(err, ErrInvalid) {
		t.Errorf("a credit note above the total: %v", err)
	}
	if _, err := f.svc.IssueCreditNote(ctx, acme.Number, 1481, "all of it"); err != nil {
		t.Errorf("a credit note of the total: %v", err)
	}
	beta, _ := f.svc.Get(ctx, "INV-00000002")
	if beta.Tax != 0 || beta.Total != beta.Subtotal || len(beta.Taxes) != 1 || beta.Taxes[0].Legend != tax.LegendReverseCharge {
		t.Fatalf("beta (reverse charge): %+v", beta.Taxes)
	}
	st, err := f.svc.Statement(ctx, "acme")
	if err != nil || st.Entries[len(st.Entries)-1].Balance != st.Balance.Balance {
		t.Fatalf("statement: %+v %v", st, err)
	}
}

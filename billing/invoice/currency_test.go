package invoice

import (
	"context"
	"errors"
	"testing"
	"time"
)

const currencyCatalogue = `
currency: USD
grace_period: 72h
currencies: [JPY, KWD]
customers:
  tokyo: {name: Tokyo KK, currency: JPY}
  kuwait: {name: Kuwait Co, currency: KWD}
plans:
  - name: pro
    base_fee: {USD: "10.00", JPY: "1500", KWD: "3.050"}
    charges:
      - {meter: calls, model: per_unit, unit_price: {USD: "0.01", JPY: "1.5", KWD: "0.0031"}}
`

// TestCustomersBilledInTheirCurrency: each customer's invoice is in its currency, with that
// currency's prices and ISO 4217 minor units (yen 0, fils 3), rounded once; a payment in
// another currency is refused.
func TestCustomersBilledInTheirCurrency(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, currencyCatalogue, map[string]string{"tokyo": "pro", "kuwait": "pro", "acme": "pro"})
	for _, tn := range []string{"tokyo", "kuwait", "acme"} {
		f.usage.Add(tn, "calls", day(10, 5), 333)
	}
	f.setNow(time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC))
	if _, err := f.svc.Run(ctx, oct); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		code     string
		subtotal int64
	}{
		"acme":   {"USD", 1000 + 333},  // 333 × 1 cent
		"kuwait": {"KWD", 3050 + 1032}, // 333 × 3.1 fils = 1032.3
		"tokyo":  {"JPY", 1500 + 500},  // 333 × 1.5 yen = 499.5, halves away from zero
	}
	invs, err := f.svc.List(ctx, Filter{})
	if err != nil || len(invs) != 3 {
		t.Fatalf("invoices: %v %v", invs, err)
	}
	for _, inv := range invs {
		w := want[inv.Tenant]
		if inv.Currency.Code != w.code || int64(inv.Subtotal) != w.subtotal || inv.Prices[0].BaseFee == 0 {
			t.Errorf("%s: %s %d, want %s %d", inv.Tenant, inv.Currency.Code, inv.Subtotal, w.code, w.subtotal)
		}
		if inv.Tenant == "tokyo" {
			if _, err := f.svc.RecordPayment(ctx, PaymentInput{Invoice: inv.Number, Amount: inv.AmountDue, Currency: "USD"}); !errors.Is(err, ErrInvalid) {
				t.Errorf("a USD payment of a JPY invoice: %v", err)
			}
			if p, err := f.svc.RecordPayment(ctx, PaymentInput{Invoice: inv.Number, Amount: inv.AmountDue}); err != nil || p.Currency != "JPY" {
				t.Errorf("a JPY payment: %+v %v", p, err)
			}
		}
	}
	if b, _ := f.svc.Balance(ctx, "kuwait"); b.Currency != "KWD" || b.Outstanding != 4082 {
		t.Errorf("kuwait's balance: %+v", b)
	}
}

package tax

import (
	"context"
	"testing"

	"github.com/usagemeter/usagemeter/billing/money"
)

func TestTable(t *testing.T) {
	usd, _ := money.ParseCurrency("USD")
	excl := &Table{Rates: []Rate{{Jurisdiction: "GB", Name: "VAT", Percent: "20"}, {Jurisdiction: "US-NY", Name: "Sales tax", Percent: "8.875"}}}
	incl := &Table{Rates: excl.Rates, Inclusive: true}
	cases := []struct {
		name     string
		table    *Table
		customer Customer
		net      money.Amount
		amount   money.Amount
		base     money.Amount
		legend   string
		lines    int
	}{
		{"exclusive, rounded once", excl, Customer{Jurisdiction: "GB"}, 1234, 247, 1234, "", 1},          // 246.8
		{"exclusive, half away from zero", excl, Customer{Jurisdiction: "US-NY"}, 1000, 89, 1000, "", 1}, // 88.75
		{"exclusive, a net refund", excl, Customer{Jurisdiction: "GB"}, -1234, -247, -1234, "", 1},
		{"inclusive", incl, Customer{Jurisdiction: "GB"}, 1200, 200, 1000, "", 1},
		{"inclusive, rounded once", incl, Customer{Jurisdiction: "GB"}, 1001, 167, 834, "", 1}, // 166.83
		{"exempt", excl, Customer{Jurisdiction: "GB", Exempt: true}, 1000, 0, 1000, LegendExempt, 1},
		{"reverse charge", excl, Customer{Jurisdiction: "GB", ReverseCharge: true}, 1000, 0, 1000, LegendReverseCharge, 1},
		{"no jurisdiction: not taxed", excl, Customer{}, 1000, 0, 0, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lines, err := c.table.Taxes(context.Background(), Request{Tenant: "acme", Customer: c.customer, Currency: usd, Net: c.net})
			if err != nil {
				t.Fatal(err)
			}
			if len(lines) != c.lines {
				t.Fatalf("lines %+v", lines)
			}
			if c.lines == 0 {
				return
			}
			l := lines[0]
			if l.Amount != c.amount || l.Base != c.base || l.Legend != c.legend || l.Inclusive != c.table.Inclusive {
				t.Errorf("got %+v", l)
			}
			if want := map[bool]money.Amount{false: c.amount, true: 0}[c.table.Inclusive]; Added(lines) != want {
				t.Errorf("added %d, want %d", Added(lines), want)
			}
		})
	}
	if _, err := excl.Taxes(context.Background(), Request{Tenant: "acme", Customer: Customer{Jurisdiction: "FR"}, Net: 1}); err == nil {
		t.Error("a jurisdiction without a rate was taxed at nothing")
	}
}

// Package tax computes an invoice's taxes. Engine is the interface an external tax engine
// implements (a tax service's client); Table, the built-in engine and the default, applies the
// rates of `billing.taxes` by the customer's jurisdiction.
//
// Every tax is computed exactly on the invoice's net total and rounded once by the one
// rounding rule (money.Round). Exclusive taxes are added to the total; inclusive taxes are the
// part of the total that is tax (prices include it) and add nothing.
package tax

import (
	"context"
	"fmt"
	"math/big"

	"github.com/usagemeter/usagemeter/billing/money"
)

// Customer is the buyer's tax position.
type Customer struct {
	Jurisdiction  string `json:"jurisdiction,omitempty"` // ISO 3166 country or region code, e.g. GB, DE, US-CA
	Exempt        bool   `json:"tax_exempt,omitempty"`
	ReverseCharge bool   `json:"reverse_charge,omitempty"`
}

// Request is what an engine is asked: the net amount (the invoice's subtotal, in minor units)
// and the customer's position.
type Request struct {
	Tenant   string
	Customer Customer
	Currency money.Currency
	Net      money.Amount
}

// Line is one tax of an invoice.
type Line struct {
	Name         string       `json:"name"` // VAT, USt, sales tax
	Jurisdiction string       `json:"jurisdiction"`
	Rate         string       `json:"rate"` // percent, exact decimal
	Inclusive    bool         `json:"inclusive"`
	Base         money.Amount `json:"base"`   // the amount taxed (net of this tax)
	Amount       money.Amount `json:"amount"` // the tax, rounded once
	Exact        string       `json:"exact_amount"`
	// Legend is printed with the line: why no tax is charged (exempt, reverse charge).
	Legend string `json:"legend,omitempty"`
}

// Engine computes the taxes of an invoice. An external engine implements it; Table is the
// built-in one.
type Engine interface {
	Taxes(ctx context.Context, r Request) ([]Line, error)
}

// Rate is one jurisdiction's rate.
type Rate struct {
	Jurisdiction string `json:"jurisdiction"`
	Name         string `json:"name"`
	Percent      string `json:"rate"` // exact decimal, e.g. "20" or "8.875"
}

// Legends printed for zero-tax lines.
const (
	LegendExempt        = "Exempt from tax"
	LegendReverseCharge = "Reverse charge: tax to be accounted for by the recipient"
)

// Table is the built-in engine: one rate per jurisdiction, all exclusive or all inclusive.
type Table struct {
	Rates     []Rate `json:"rates"`
	Inclusive bool   `json:"inclusive"`
}

// Rate returns the jurisdiction's rate.
func (t *Table) Rate(jurisdiction string) (Rate, bool) {
	for _, r := range t.Rates {
		if r.Jurisdiction == jurisdiction {
			return r, true
		}
	}
	return Rate{}, false
}

// Taxes implements Engine. A customer without a jurisdiction is not taxed; a jurisdiction
// without a rate is an error (the configuration check refuses it earlier).
func (t *Table) Taxes(_ context.Context, r Request) ([]Line, error) {
	j := r.Customer.Jurisdiction
	if j == "" || t == nil || len(t.Rates) == 0 {
		return nil, nil
	}
	rate, ok := t.Rate(j)
	if !ok {
		return nil, fmt.Errorf("tax: no rate for jurisdiction %q of tenant %s", j, r.Tenant)
	}
	l := Line{Name: rate.Name, Jurisdiction: j, Rate: rate.Percent, Inclusive: t.Inclusive, Base: r.Net, Exact: "0"}
	switch {
	case r.Customer.Exempt:
		l.Legend = LegendExempt
		return []Line{l}, nil
	case r.Customer.ReverseCharge:
		l.Legend = LegendReverseCharge
		return []Line{l}, nil
	}
	p, ok := new(big.Rat).SetString(rate.Percent)
	if !ok {
		return nil, fmt.Errorf("tax: rate %q of %s is not a number", rate.Percent, j)
	}
	exact := new(big.Rat).SetInt64(int64(r.Net))
	if t.Inclusive {
		// net × p / (100 + p): the tax inside a price that includes it.
		exact.Mul(exact, p)
		exact.Quo(exact, new(big.Rat).Add(p, big.NewRat(100, 1)))
	} else {
		exact.Mul(exact, p)
		exact.Quo(exact, big.NewRat(100, 1))
	}
	l.Amount = money.Round(exact)
	l.Exact = money.FormatRat(exact, 0)
	if t.Inclusive {
		l.Base = r.Net - l.Amount
	}
	return []Line{l}, nil
}

// Added is what the lines add to an invoice's total: the exclusive taxes.
func Added(lines []Line) money.Amount {
	var s money.Amount
	for _, l := range lines {
		if !l.Inclusive {
			s += l.Amount
		}
	}
	return s
}

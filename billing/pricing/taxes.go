package pricing

import (
	"fmt"
	"math/big"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/billing/tax"
)

func parseTaxes(n *yaml.Node, f string) (tax.Table, error) {
	var t tax.Table
	err := eachKey(n, f, func(key string, k, v *yaml.Node) error {
		switch key {
		case "inclusive":
			if v.Value != "true" && v.Value != "false" {
				return fieldErr(v, f+".inclusive", "want true or false, got %q", v.Value)
			}
			t.Inclusive = v.Value == "true"
		case "rates":
			if v.Kind != yaml.SequenceNode {
				return fieldErr(v, f+".rates", "want a list of {jurisdiction, name, rate}")
			}
			for i, rn := range v.Content {
				rf := fmt.Sprintf("%s.rates[%d]", f, i)
				var r tax.Rate
				if err := eachKey(rn, rf, func(key string, k, v *yaml.Node) error {
					switch key {
					case "jurisdiction":
						r.Jurisdiction = v.Value
					case "name":
						r.Name = v.Value
					case "rate":
						p, ok := new(big.Rat).SetString(v.Value)
						if !ok || p.Sign() < 0 || p.Cmp(big.NewRat(100, 1)) > 0 {
							return fieldErr(v, rf+".rate", "want a percentage from 0 to 100, got %q", v.Value)
						}
						r.Percent = v.Value
					default:
						return fieldErr(k, rf+"."+key, "unknown field (want jurisdiction, name, rate)")
					}
					return nil
				}); err != nil {
					return err
				}
				if r.Jurisdiction == "" || r.Percent == "" {
					return fieldErr(rn, rf, "a rate needs a jurisdiction and a rate")
				}
				if _, dup := t.Rate(r.Jurisdiction); dup {
					return fieldErr(rn, rf+".jurisdiction", "jurisdiction %q has two rates", r.Jurisdiction)
				}
				if r.Name == "" {
					r.Name = "Tax"
				}
				t.Rates = append(t.Rates, r)
			}
		default:
			return fieldErr(k, f+"."+key, "unknown field (want inclusive, rates)")
		}
		return nil
	})
	return t, err
}

func parseTaxCustomer(c *Catalogue, tenant string, extra map[string]*yaml.Node) error {
	var tc tax.Customer
	set := false
	f := "billing.customers." + tenant
	if v := extra["jurisdiction"]; v != nil {
		tc.Jurisdiction, set = v.Value, true
	}
	for _, k := range []string{"tax_exempt", "reverse_charge"} {
		v := extra[k]
		if v == nil {
			continue
		}
		if v.Value != "true" && v.Value != "false" {
			return fieldErr(v, f+"."+k, "want true or false, got %q", v.Value)
		}
		if k == "tax_exempt" {
			tc.Exempt = v.Value == "true"
		} else {
			tc.ReverseCharge = v.Value == "true"
		}
		set = true
	}
	if tc.Exempt && tc.ReverseCharge {
		return fieldErr(extra["reverse_charge"], f+".reverse_charge", "a customer is either exempt or reverse charge, not both")
	}
	if set {
		if c.TaxCustomers == nil {
			c.TaxCustomers = map[string]tax.Customer{}
		}
		c.TaxCustomers[tenant] = tc
	}
	return nil
}

// checkTaxes refuses a customer whose jurisdiction has no rate: it would silently go untaxed.
func (c *Catalogue) checkTaxes() error {
	for tenant, tc := range c.TaxCustomers {
		if tc.Jurisdiction == "" {
			continue
		}
		if _, ok := c.Taxes.Rate(tc.Jurisdiction); !ok {
			return &FieldError{Field: "billing.customers." + tenant + ".jurisdiction",
				Msg: fmt.Sprintf("jurisdiction %q has no rate in billing.taxes.rates", tc.Jurisdiction)}
		}
	}
	return nil
}

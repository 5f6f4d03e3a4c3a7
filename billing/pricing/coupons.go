package pricing

import (
	"fmt"
	"math/big"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/billing/money"
)

// Coupon is a discount a tenant redeems (`billing.coupons:`). Exactly one of PercentOff and
// AmountOff is set. It discounts the whole invoice, or only the usage charges of the meters in
// AppliesTo, for Periods consecutive months from the month it is redeemed in (0: forever).
type Coupon struct {
	Code       string `json:"code"`
	PercentOff string `json:"percent_off,omitempty"` // exact decimal, "20" or "12.5"
	// AmountOff is a fixed discount per month, in minor units, never more than what it applies to.
	AmountOff      money.Amount `json:"amount_off,omitempty"`
	Periods        int          `json:"periods,omitempty"`
	AppliesTo      []string     `json:"applies_to,omitempty"`
	MaxRedemptions int          `json:"max_redemptions,omitempty"` // across tenants; 0: unlimited
}

// Percent is PercentOff as an exact fraction (20 → 1/5); nil for a fixed coupon.
func (c Coupon) Percent() *big.Rat {
	if c.PercentOff == "" {
		return nil
	}
	r, _ := new(big.Rat).SetString(c.PercentOff) // validated when parsed
	return r.Quo(r, big.NewRat(100, 1))
}

// Coupon returns the coupon with the code.
func (c *Catalogue) Coupon(code string) (Coupon, bool) {
	for _, cp := range c.Coupons {
		if cp.Code == code {
			return cp, true
		}
	}
	return Coupon{}, false
}

func parseCoupons(n *yaml.Node, cur priceCurrency) ([]Coupon, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, fieldErr(n, "billing.coupons", "want a list of coupons")
	}
	var out []Coupon
	seen := map[string]bool{}
	for i, cn := range n.Content {
		f := fmt.Sprintf("billing.coupons[%d]", i)
		var c Coupon
		err := eachKey(cn, f, func(key string, k, v *yaml.Node) error {
			switch key {
			case "code":
				c.Code = v.Value
			case "percent_off":
				r, ok := new(big.Rat).SetString(v.Value)
				if !ok || r.Sign() <= 0 || r.Cmp(big.NewRat(100, 1)) > 0 {
					return fieldErr(v, f+".percent_off", "want a number above 0 and at most 100, got %q", v.Value)
				}
				c.PercentOff = v.Value
			case "amount_off":
				a, err := amount(v, f+".amount_off", cur)
				if err != nil {
					return err
				}
				if a <= 0 {
					return fieldErr(v, f+".amount_off", "must be positive")
				}
				c.AmountOff = a
			case "duration":
				if v.Value == "forever" {
					return nil
				}
				p, err := strconv.Atoi(v.Value)
				if err != nil || p < 1 {
					return fieldErr(v, f+".duration", "want a number of months (1 or more) or forever, got %q", v.Value)
				}
				c.Periods = p
			case "applies_to":
				if v.Kind != yaml.SequenceNode {
					return fieldErr(v, f+".applies_to", "want a list of meters")
				}
				for _, m := range v.Content {
					c.AppliesTo = append(c.AppliesTo, m.Value)
				}
			case "max_redemptions":
				m, err := strconv.Atoi(v.Value)
				if err != nil || m < 1 {
					return fieldErr(v, f+".max_redemptions", "want a positive integer, got %q", v.Value)
				}
				c.MaxRedemptions = m
			default:
				return fieldErr(k, f+"."+key, "unknown field (want code, percent_off, amount_off, duration, applies_to, max_redemptions)")
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		switch {
		case c.Code == "":
			return nil, fieldErr(cn, f+".code", "a coupon needs a code")
		case seen[c.Code]:
			return nil, fieldErr(cn, f+".code", "coupon %q is defined twice", c.Code)
		case (c.PercentOff == "") == (c.AmountOff == 0):
			return nil, fieldErr(cn, f, "want exactly one of percent_off and amount_off")
		}
		seen[c.Code] = true
		out = append(out, c)
	}
	return out, nil
}

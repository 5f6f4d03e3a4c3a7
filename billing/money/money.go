// Package money holds exact amounts of money: integer minor units (cents) for everything that is
// charged, and exact decimal unit prices for prices below one minor unit (e.g. $0.0004 per
// token). There is exactly one rounding rule (Round): an exact amount is rounded to a whole minor
// unit, halves away from zero, once per invoice line. No float64 is ever involved.
package money

import (
	"fmt"
	"math/big"
	"strings"
)

// Currency is an ISO 4217 code with its number of minor-unit digits.
type Currency struct {
	Code     string `json:"code"`
	Exponent int    `json:"exponent"` // 2 for USD/EUR, 0 for JPY, 3 for KWD
}

// exponents lists the ISO 4217 currencies whose minor unit is not 1/100.
var exponents = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
	"RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

// ParseCurrency accepts a three-letter ISO 4217 code.
func ParseCurrency(code string) (Currency, error) {
	if len(code) != 3 || strings.ToUpper(code) != code || strings.Trim(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return Currency{}, fmt.Errorf("currency %q: want a three-letter upper-case ISO 4217 code", code)
	}
	exp, ok := exponents[code]
	if !ok {
		exp = 2
	}
	return Currency{Code: code, Exponent: exp}, nil
}

// Amount is a whole number of minor units of some currency (the currency is carried by the
// document that holds the amount: an invoice is in one currency).
type Amount int64

// Format renders a in major units with the currency's digits, e.g. 123456 → "1234.56".
func (a Amount) Format(c Currency) string {
	neg := a < 0
	v := int64(a)
	if neg {
		v = -v
	}
	s := fmt.Sprintf("%d", v)
	if c.Exponent > 0 {
		for len(s) <= c.Exponent {
			s = "0" + s
		}
		s = s[:len(s)-c.Exponent] + "." + s[len(s)-c.Exponent:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// ParseAmount parses a decimal string in major units ("12.50") into minor units. It refuses more
// digits than the currency has, so that a fixed fee can never need rounding.
func ParseAmount(s string, c Currency) (Amount, error) {
	p, err := ParsePrice(s, c)
	if err != nil {
		return 0, err
	}
	if !p.r.IsInt() {
		return 0, fmt.Errorf("amount %q has more than %d decimal digits", s, c.Exponent)
	}
	if !p.r.Num().IsInt64() {
		return 0, fmt.Errorf("amount %q out of range", s)
	}
	return Amount(p.r.Num().Int64()), nil
}

// Price is an exact, non-negative unit price in minor units, possibly fractional (0.04 cents).
// The zero value is a price of zero.
type Price struct {
	r *big.Rat // minor units; nil means zero
}

// maxPriceDigits bounds the decimal places a price may have in major units, so that every price
// is a finite decimal and every line amount is an exact rational with a power-of-ten denominator.
const maxPriceDigits = 12

// ParsePrice parses a non-negative decimal string in major units ("0.0004") exactly. Exponent
// notation and fractions are refused: prices are written as plain decimals.
func ParsePrice(s string, c Currency) (Price, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Price{}, fmt.Errorf("price %q: empty", s)
	}
	intPart, frac, _ := strings.Cut(t, ".")
	if intPart == "" || strings.Trim(intPart, "0123456789") != "" || strings.Trim(frac, "0123456789") != "" {
		return Price{}, fmt.Errorf("price %q: want a non-negative decimal such as 0.0004", s)
	}
	if len(frac) > maxPriceDigits {
		return Price{}, fmt.Errorf("price %q: at most %d decimal digits", s, maxPriceDigits)
	}
	if len(intPart) > 15 {
		return Price{}, fmt.Errorf("price %q: too large", s)
	}
	r, ok := new(big.Rat).SetString(intPart + "." + frac + "0")
	if !ok {
		return Price{}, fmt.Errorf("price %q: not a decimal", s)
	}
	r.Mul(r, new(big.Rat).SetInt(pow10(c.Exponent)))
	return Price{r: r}, nil
}

// PriceFromMinor is a price of a whole number of minor units.
func PriceFromMinor(minor int64) Price {
	return Price{r: new(big.Rat).SetInt64(minor)}
}

// IsZero reports whether p is zero.
func (p Price) IsZero() bool { return p.r == nil || p.r.Sign() == 0 }

// Rat returns p in minor units as a new big.Rat the caller may modify.
func (p Price) Rat() *big.Rat {
	if p.r == nil {
		return new(big.Rat)
	}
	return new(big.Rat).Set(p.r)
}

// Times returns the exact amount, in minor units, of qty units at price p.
func (p Price) Times(qty int64) *big.Rat {
	if p.r == nil || qty == 0 {
		return new(big.Rat)
	}
	return new(big.Rat).Mul(p.r, new(big.Rat).SetInt64(qty))
}

// Format renders p in major units with as many digits as it needs (at least the currency's).
func (p Price) Format(c Currency) string {
	major := p.Rat()
	major.Quo(major, new(big.Rat).SetInt(pow10(c.Exponent)))
	return FormatRat(major, c.Exponent)
}

// MarshalText keeps prices exact in JSON: a decimal string in minor units.
func (p Price) MarshalText() ([]byte, error) {
	return []byte(FormatRat(p.Rat(), 0)), nil
}

// UnmarshalText is the inverse of MarshalText.
func (p *Price) UnmarshalText(b []byte) error {
	r, ok := new(big.Rat).SetString(string(b))
	if !ok || r.Sign() < 0 {
		return fmt.Errorf("price %q: not a non-negative decimal", b)
	}
	p.r = r
	return nil
}

// FormatRat renders an exact decimal rational with at least minDigits decimal places and no
// trailing zeros beyond them. Rationals whose denominator is not a power of ten (which rating
// never produces) are shown with 12 decimals.
func FormatRat(r *big.Rat, minDigits int) string {
	if r.IsInt() && minDigits == 0 {
		return r.Num().String()
	}
	digits := 12 // a denominator with a prime factor other than 2 and 5
	if den := r.Denom(); den.IsUint64() {
		// The decimal expansion terminates after max(twos, fives) digits.
		d, twos, fives := den.Uint64(), 0, 0
		for ; d%2 == 0; d /= 2 {
			twos++
		}
		for ; d%5 == 0; d /= 5 {
			fives++
		}
		if d == 1 {
			digits = max(twos, fives)
		}
	} else {
		for d := 0; d <= 24; d++ {
			if new(big.Int).Mod(pow10(d), den).Sign() == 0 {
				digits = d
				break
			}
		}
	}
	return r.FloatString(max(digits, minDigits))
}

// Round is the one rounding rule of the billing: an exact amount in minor units becomes a whole
// number of minor units, rounding to the nearest and halves away from zero. Rating applies it
// once per invoice line, to the exact sum of that line's parts, never to the parts.
func Round(r *big.Rat) Amount {
	num := new(big.Int).Set(r.Num())
	den := r.Denom()
	neg := num.Sign() < 0
	num.Abs(num)
	q, m := new(big.Int).QuoRem(num, den, new(big.Int))
	if m.Lsh(m, 1).Cmp(den) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if neg {
		q.Neg(q)
	}
	return Amount(q.Int64())
}

var pow10s = func() []*big.Int {
	p := make([]*big.Int, 40)
	p[0] = big.NewInt(1)
	for i := 1; i < len(p); i++ {
		p[i] = new(big.Int).Mul(p[i-1], big.NewInt(10))
	}
	return p
}()

func pow10(n int) *big.Int { return pow10s[n] }

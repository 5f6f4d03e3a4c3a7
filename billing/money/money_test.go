package money

import (
	"math/big"
	"testing"
)

func TestRound(t *testing.T) {
	for _, tc := range []struct {
		num, den int64
		want     Amount
	}{
		{0, 1, 0}, {5, 1, 5}, {1, 2, 1}, {-1, 2, -1}, {3, 2, 2}, {5, 2, 3}, {49, 100, 0}, {51, 100, 1},
		{-49, 100, 0}, {-51, 100, -1}, {-3, 2, -2}, {1, 3, 0}, {2, 3, 1}, {12345, 10000, 1},
	} {
		if got := Round(big.NewRat(tc.num, tc.den)); got != tc.want {
			t.Errorf("Round(%d/%d) = %d, want %d", tc.num, tc.den, got, tc.want)
		}
	}
}

func TestParsePriceExact(t *testing.T) {
	usd, _ := ParseCurrency("USD")
	jpy, _ := ParseCurrency("JPY")
	for _, tc := range []struct {
		in   string
		cur  Currency
		want string // minor units as a rational
	}{
		{"0.0004", usd, "1/25"}, {"12.50", usd, "1250"}, {"0", usd, "0"}, {"7", jpy, "7"}, {"0.5", jpy, "1/2"},
		{"0.000000000001", usd, "1/10000000000"},
	} {
		p, err := ParsePrice(tc.in, tc.cur)
		if err != nil {
			t.Fatalf("ParsePrice(%q): %v", tc.in, err)
		}
		if got := p.Rat().RatString(); got != tc.want {
			t.Errorf("ParsePrice(%q) = %s minor units, want %s", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "-1", "1e3", "0.0000000000001", "abc", "1.2.3", ".5", "1/2"} {
		if _, err := ParsePrice(bad, usd); err == nil {
			t.Errorf("ParsePrice(%q) accepted", bad)
		}
	}
}

func TestParseAmount(t *testing.T) {
	usd, _ := ParseCurrency("USD")
	a, err := ParseAmount("1234.56", usd)
	if err != nil || a != 123456 {
		t.Fatalf("ParseAmount = %d, %v", a, err)
	}
	if _, err := ParseAmount("0.001", usd); err == nil {
		t.Error("ParseAmount accepted a sub-cent amount")
	}
	if got := Amount(-5).Format(usd); got != "-0.05" {
		t.Errorf("Format(-5) = %q", got)
	}
	kwd, _ := ParseCurrency("KWD")
	if got := Amount(1234).Format(kwd); got != "1.234" {
		t.Errorf("Format KWD = %q", got)
	}
	if _, err := ParseCurrency("usd"); err == nil {
		t.Error("lower-case currency accepted")
	}
}

func TestPriceTextRoundTrip(t *testing.T) {
	usd, _ := ParseCurrency("USD")
	p, _ := ParsePrice("0.0004", usd)
	b, _ := p.MarshalText()
	var q Price
	if err := q.UnmarshalText(b); err != nil || q.Rat().Cmp(p.Rat()) != 0 {
		t.Fatalf("round trip %s: %v %v", b, q.Rat(), err)
	}
	if got := p.Format(usd); got != "0.0004" {
		t.Errorf("Format = %q", got)
	}
	if got := p.Times(12345).RatString(); got != "2469/5" { // 12345 × 0.04 = 493.8 cents
		t.Errorf("Times = %s", got)
	}
}

func TestFormatRat(t *testing.T) {
	for _, tc := range []struct {
		num, den int64
		min      int
		want     string
	}{
		{5, 1, 0, "5"}, {5, 1, 2, "5.00"}, {1, 25, 0, "0.04"}, {1, 8, 0, "0.125"}, {1, 3, 0, "0.333333333333"},
		{-7, 4, 0, "-1.75"}, {1, 2, 3, "0.500"}, {3, 1000000, 2, "0.000003"},
	} {
		if got := FormatRat(big.NewRat(tc.num, tc.den), tc.min); got != tc.want {
			t.Errorf("FormatRat(%d/%d, %d) = %s, want %s", tc.num, tc.den, tc.min, got, tc.want)
		}
	}
}

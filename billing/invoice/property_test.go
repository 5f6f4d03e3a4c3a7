package invoice

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// Independent model of a catalogue, priced in integer micro-units (1e-6 dollars) with plain
// loops: graduated tiers are walked unit by unit. It shares no code with package pricing.
type propTier struct {
	upTo       int64 // -1: unbounded
	priceMicro int64
	flatCents  int64
}

type propCharge struct {
	meter, model      string
	included          int64
	feeCents          int64
	priceMicro        int64
	pkgSize, pkgCents int64
	tiers             []propTier
}

type propPlan struct {
	name                string
	baseCents, minCents int64
	charges             []propCharge
}

// propCurrencies are the currencies every plan is priced in, with their ISO 4217 digits. Each
// price is the same number of minor units in each (12.34 USD, 1234 JPY, 1.234 KWD), so a
// tenant's invoice comes to the same number of minor units whatever its currency: the
// independent total applies to all, and any slip in minor units shows.
var propCurrencies = []struct {
	code   string
	digits int
}{{"USD", 2}, {"JPY", 0}, {"KWD", 3}}

// decimal writes n / 10^digits exactly.
func decimal(n int64, digits int) string {
	if digits == 0 {
		return fmt.Sprint(n)
	}
	p := int64(1)
	for range digits {
		p *= 10
	}
	return fmt.Sprintf("%d.%0*d", n/p, digits, n%p)
}

// amounts is a money field in every currency: minor units.
func amounts(minor int64) string {
	var parts []string
	for _, c := range propCurrencies {
		parts = append(parts, fmt.Sprintf("%s: %q", c.code, decimal(minor, c.digits)))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// prices is a unit price in every currency: m millionths of a USD are m/10^4 minor units.
func prices(m int64) string {
	var parts []string
	for _, c := range propCurrencies {
		parts = append(parts, fmt.Sprintf("%s: %q", c.code, decimal(m, 4+c.digits)))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func (c propCharge) microAmount(qty int64) int64 {
	b := max(0, qty-c.included)
	tierOf := func(unit int64) int {
		for i, t := range c.tiers {
			if t.upTo < 0 || unit <= t.upTo {
				return i
			}
		}
		panic("no tier")
	}
	switch c.model {
	case "flat":
		if b > 0 {
			return c.feeCents * 1e4
		}
	case "per_unit":
		return b * c.priceMicro
	case "package":
		return (b + c.pkgSize - 1) / c.pkgSize * c.pkgCents * 1e4
	case "graduated":
		var sum int64
		touched := map[int]bool{}
		for u := int64(1); u <= b; u++ {
			i := tierOf(u)
			sum += c.tiers[i].priceMicro
			touched[i] = true
		}
		for i := range touched {
			sum += c.tiers[i].flatCents * 1e4
		}
		return sum
	case "volume":
		if b > 0 {
			t := c.tiers[tierOf(b)]
			return b*t.priceMicro + t.flatCents*1e4
		}
	}
	return 0
}

func randomPlan(r *rand.Rand, name string, meters []string) propPlan {
	p := propPlan{name: name, baseCents: r.Int64N(5000)}
	if r.IntN(3) == 0 {
		p.minCents = r.Int64N(300000)
	}
	for _, m := range meters {
		if r.IntN(4) == 0 {
			continue
		}
		c := propCharge{meter: m, model: []string{"flat", "per_unit", "package", "graduated", "volume"}[r.IntN(5)]}
		if r.IntN(2) == 0 {
			c.included = r.Int64N(500)
		}
		switch c.model {
		case "flat":
			c.feeCents = r.Int64N(10000)
		case "per_unit":
			c.priceMicro = randomPrice(r)
		case "package":
			c.pkgSize, c.pkgCents = 1+r.Int64N(300), r.Int64N(5000)
		default:
			var bound int64
			n := 1 + r.IntN(4)
			for i := 0; i < n; i++ {
				t := propTier{upTo: -1, priceMicro: randomPrice(r)}
				if r.IntN(3) == 0 {
					t.flatCents = r.Int64N(2000)
				}
				if i < n-1 {
					bound += 1 + r.Int64N(800)
					t.upTo = bound
				}
				c.tiers = append(c.tiers, t)
			}
		}
		p.charges = append(p.charges, c)
	}
	return p
}

// randomPrice is often a multiple of half a cent, so that exact halves (the case the rounding
// rule decides) are common.
func randomPrice(r *rand.Rand) int64 {
	if r.IntN(2) == 0 {
		return r.Int64N(400) * 5000
	}
	return r.Int64N(2_000_000)
}

func (p propPlan) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  - name: %s\n    base_fee: %s\n    minimum_commitment: %s\n    charges:\n", p.name, amounts(p.baseCents), amounts(p.minCents))
	if len(p.charges) == 0 {
		b.WriteString("      []\n")
	}
	for _, c := range p.charges {
		fmt.Fprintf(&b, "      - meter: %s\n        model: %s\n        included: %d\n", c.meter, c.model, c.included)
		switch c.model {
		case "flat":
			fmt.Fprintf(&b, "        fee: %s\n", amounts(c.feeCents))
		case "per_unit":
			fmt.Fprintf(&b, "        unit_price: %s\n", prices(c.priceMicro))
		case "package":
			fmt.Fprintf(&b, "        package_size: %d\n        package_price: %s\n", c.pkgSize, amounts(c.pkgCents))
		default:
			b.WriteString("        tiers:\n")
			for _, t := range c.tiers {
				up := "inf"
				if t.upTo >= 0 {
					up = fmt.Sprint(t.upTo)
				}
				fmt.Fprintf(&b, "          - {up_to: %s, unit_price: %s, flat_fee: %s}\n", up, prices(t.priceMicro), amounts(t.flatCents))
			}
		}
	}
	return b.String()
}

// expected is the independent invoice total in cents: each line rounded half up once.
func (p propPlan) expected(qty map[string]int64) int64 {
	sum := p.baseCents
	for _, c := range p.charges {
		sum += (c.microAmount(qty[c.meter]) + 5000) / 10000
	}
	return max(sum, p.minCents)
}

// TestPropertyInvoiceTotal: for random catalogues and random usage, every invoice's subtotal
// equals the independent recomputation above (less a random percentage coupon for about half
// the tenants), and with random credit grants and prepaid credit
// what is drawn from each grant, the credit applied and the amount due equal an independent draw;
// about half the tenants pay a random exclusive tax, checked against an independent rounding;
// each tenant is billed in a random currency (USD, JPY, KWD: 2, 0 and 3 digits), in which every
// price is the same number of minor units.
func TestPropertyInvoiceTotal(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 7))
	meters := []string{"m0", "m1", "m2", "m3", "m4"}
	for round := 0; round < 25; round++ {
		plans := []propPlan{randomPlan(r, "p0", meters), randomPlan(r, "p1", meters), randomPlan(r, "p2", meters)}
		src := "currency: USD\ncurrencies: [JPY, KWD]\nplans:\n"
		for _, p := range plans {
			src += p.yaml()
		}
		pct := 1 + r.Int64N(100) // a whole-invoice coupon of pct %, redeemed by about half the tenants
		src += fmt.Sprintf("coupons:\n  - {code: PCT, percent_off: \"%d\", duration: forever}\n", pct)
		rate := r.Int64N(31) // an exclusive tax of rate % for the tenants in XX (about half)
		src += fmt.Sprintf("taxes: {rates: [{jurisdiction: XX, name: VAT, rate: \"%d\"}]}\n", rate)
		assign := map[string]string{}
		qty := map[string]map[string]int64{}
		tenants := 1 + r.IntN(8)
		taxed := map[string]bool{}
		currencyOf := map[string]string{}
		src += "customers:\n"
		for i := 0; i < tenants; i++ {
			tn := fmt.Sprintf("t%d", i)
			currencyOf[tn] = propCurrencies[r.IntN(len(propCurrencies))].code
			taxed[tn] = r.IntN(2) == 0
			juris := ""
			if taxed[tn] {
				juris = ", jurisdiction: XX"
			}
			src += fmt.Sprintf("  %s: {name: %s, currency: %s%s}\n", tn, tn, currencyOf[tn], juris)
			assign[tn] = plans[r.IntN(len(plans))].name
			qty[tn] = map[string]int64{}
		}
		f := newFixture(t, src, assign)
		f.setNow(day(10, 1))
		grants, credits := map[string][]*propGrant{}, map[string]int64{}
		coupon := map[string]bool{}
		for tn := range qty {
			grants[tn], credits[tn] = randomGrants(t, r, f, tn, day(11, 10))
			if coupon[tn] = r.IntN(2) == 0; coupon[tn] {
				if _, err := f.svc.RedeemCoupon(context.Background(), tn, "PCT"); err != nil {
					t.Fatal(err)
				}
			}
		}
		for tn := range qty {
			for _, m := range meters {
				for k := r.IntN(4); k > 0; k-- {
					v := r.Int64N(1500)
					f.usage.Add(tn, m, oct.Start().Add(time.Duration(r.Int64N(int64(31*24*time.Hour)))), v)
					qty[tn][m] += v
				}
			}
			f.usage.Add(tn, "m0", oct.Start(), 0) // every tenant has usage, so every tenant is invoiced
		}
		f.setNow(day(11, 10))
		res, err := f.svc.Run(context.Background(), oct)
		if err != nil {
			t.Fatalf("round %d: %v\n%s", round, err, src)
		}
		if res.Finalized != tenants {
			t.Fatalf("round %d: %d invoices for %d tenants", round, res.Finalized, tenants)
		}
		invs, err := f.svc.List(context.Background(), Filter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, inv := range invs {
			var plan propPlan
			for _, p := range plans {
				if p.name == assign[inv.Tenant] {
					plan = p
				}
			}
			want := plan.expected(qty[inv.Tenant])
			if coupon[inv.Tenant] && want > 0 {
				want -= (2*pct*want + 100) / 200 // pct % of it, to the nearest cent, halves up
			}
			wantTax := int64(0)
			if taxed[inv.Tenant] {
				wantTax = (2*rate*want + 100) / 200 // rate % of the subtotal, halves up (want >= 0)
			}
			if int64(inv.Tax) != wantTax {
				t.Fatalf("round %d tenant %s: tax %d on %d at %d%%, independent %d", round, inv.Tenant, inv.Tax, want, rate, wantTax)
			}
			if inv.Currency.Code != currencyOf[inv.Tenant] {
				t.Fatalf("round %d tenant %s: billed in %s, its currency is %s", round, inv.Tenant, inv.Currency.Code, currencyOf[inv.Tenant])
			}
			if int64(inv.Subtotal) != want {
				t.Fatalf("round %d tenant %s plan %s: subtotal %d, independent total %d\nusage %v\n%s\nlines %+v",
					round, inv.Tenant, plan.name, inv.Subtotal, want, qty[inv.Tenant], src, inv.Lines)
			}
			checkDraw(t, f, inv, want+wantTax, grants[inv.Tenant], credits[inv.Tenant])
		}
	}
}

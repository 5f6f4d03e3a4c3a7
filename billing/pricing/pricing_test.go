package pricing

import (
	"errors"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/billing/money"
)

func parse(t *testing.T, src string) (Catalogue, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	return ParseConfig(&n)
}

const sample = `
currency: USD
grace_period: 3d
seller: {name: Seller Ltd, address: "1 Road"}
customers:
  acme: {name: Acme Corp, email: ap@acme.example}
plans:
  - name: metered
    base_fee: "10.00"
    minimum_commitment: "50.00"
    charges:
      - {meter: flat_m, model: flat, fee: "20.00", included: 5}
      - {meter: unit_m, model: per_unit, unit_price: "0.0004", included: 1000}
      - {meter: pkg_m, model: package, package_size: 100, package_price: "2.50", included: 50}
      - meter: grad_m
        model: graduated
        tiers:
          - {up_to: 100, unit_price: "1.00", flat_fee: "5.00"}
          - {up_to: 1000, unit_price: "0.50"}
          - {up_to: inf, unit_price: "0.10", flat_fee: "1.00"}
      - meter: vol_m
        model: volume
        included: 10
        tiers:
          - {up_to: 100, unit_price: "1.00"}
          - {up_to: 1000, unit_price: "0.50", flat_fee: "7.00"}
          - {up_to: inf, unit_price: "0.10"}
`

// TestChargeModels checks every charge model against amounts computed by hand (in cents).
func TestChargeModels(t *testing.T) {
	c, err := parse(t, sample)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := c.Plan("metered")
	if !ok || p.BaseFee != 1000 || p.Minimum != 5000 || c.GracePeriod.Hours() != 72 {
		t.Fatalf("plan = %+v, grace %v", p, c.GracePeriod)
	}
	charge := map[string]*Charge{}
	for i := range p.Charges {
		charge[p.Charges[i].Meter] = &p.Charges[i]
	}
	for _, tc := range []struct {
		meter    string
		qty      int64
		billable int64
		cents    string // exact minor units
	}{
		// flat: 20.00 once anything above the 5 included units is used.
		{"flat_m", 0, 0, "0"}, {"flat_m", 5, 0, "0"}, {"flat_m", 6, 1, "2000"}, {"flat_m", 1e9, 1e9 - 5, "2000"},
		// per unit: 0.04 cents per unit above 1000.
		{"unit_m", 999, 0, "0"}, {"unit_m", 1001, 1, "1/25"}, {"unit_m", 1013, 13, "13/25"}, {"unit_m", 26000, 25000, "1000"},
		// package: 250 cents per started block of 100, after 50 included.
		{"pkg_m", 50, 0, "0"}, {"pkg_m", 51, 1, "250"}, {"pkg_m", 150, 100, "250"}, {"pkg_m", 151, 101, "500"}, {"pkg_m", 1050, 1000, "2500"},
		// graduated: 100×100+500 for tier 1, then 50c each to 1000, then 10c + 100 flat.
		{"grad_m", 0, 0, "0"}, {"grad_m", 1, 1, "600"}, {"grad_m", 100, 100, "10500"},
		{"grad_m", 101, 101, "10550"},   // 10500 + 50
		{"grad_m", 1000, 1000, "55500"}, // 10500 + 900×50
		{"grad_m", 1001, 1001, "55610"}, // 55500 + 10 + 100
		{"grad_m", 2500, 2500, "70600"}, // 55500 + 1500×10 + 100
		// volume, 10 included: the tier of the billable total prices all of it.
		{"vol_m", 10, 0, "0"}, {"vol_m", 110, 100, "10000"}, {"vol_m", 111, 101, "5750"}, // 101×50 + 700
		{"vol_m", 1010, 1000, "50700"}, {"vol_m", 1011, 1001, "10010"},
	} {
		ch := charge[tc.meter]
		res := ch.Apply(tc.qty, ch.Included)
		if res.Billable != tc.billable || res.Exact.RatString() != tc.cents {
			t.Errorf("%s(%d) = billable %d, %s cents; want %d, %s", tc.meter, tc.qty, res.Billable, res.Exact.RatString(), tc.billable, tc.cents)
		}
	}
	// The breakdown of a graduated charge adds up to its amount.
	res := charge["grad_m"].Apply(2500, 0)
	if len(res.Tiers) != 3 || res.Tiers[1].Quantity != 900 || res.Tiers[2].From != 1001 || res.Tiers[2].Quantity != 1500 {
		t.Errorf("tiers = %+v", res.Tiers)
	}
	if b := c.Buyer("acme"); b.Name != "Acme Corp" || c.Buyer("zeta").Name != "zeta" {
		t.Errorf("buyers: %+v", b)
	}
}

func TestParseErrorsPointAtTheField(t *testing.T) {
	for _, tc := range []struct {
		src, field string
		line       int
	}{
		{"currency: usd\n", "billing.currency", 1},
		{"grace_period: soon\n", "billing.grace_period", 1},
		{"bogus: 1\n", "billing.bogus", 1},
		{"plans:\n  - name: a\n    base_fee: \"1.001\"\n", "billing.plans[0].base_fee", 3},
		{"plans:\n  - name: a\n    charges:\n      - {meter: m, model: cubic}\n", "billing.plans[0].charges[0].model", 4},
		{"plans:\n  - name: a\n    charges:\n      - meter: m\n        model: graduated\n        tiers:\n          - {up_to: 10, unit_price: \"1\"}\n", "billing.plans[0].charges[0].tiers[0].up_to", 4},
		{"plans:\n  - name: a\n    charges:\n      - meter: m\n        model: volume\n        tiers:\n          - {up_to: 10, unit_price: \"1\"}\n          - {up_to: 5, unit_price: \"1\"}\n          - {up_to: inf, unit_price: \"1\"}\n", "billing.plans[0].charges[0].tiers[1].up_to", 4},
		{"plans:\n  - name: a\n    charges:\n      - {meter: m, model: package, package_size: 0, package_price: \"1\"}\n", "billing.plans[0].charges[0].package_size", 4},
		{"plans:\n  - name: a\n    charges:\n      - {meter: m, model: per_unit, unit_price: \"-1\"}\n", "billing.plans[0].charges[0].unit_price", 4},
		{"plans:\n  - name: a\n  - name: a\n", "billing.plans[1].name", 3},
		{"plans:\n  - name: a\n    charges:\n      - {meter: m, model: flat}\n      - {meter: m, model: flat}\n", "billing.plans[0].charges[1].meter", 5},
	} {
		_, err := parse(t, tc.src)
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%q: error %v is not a *FieldError", tc.src, err)
			continue
		}
		if fe.Field != tc.field || fe.Line != tc.line {
			t.Errorf("%q: got %d %s (%s), want %d %s", tc.src, fe.Line, fe.Field, fe.Msg, tc.line, tc.field)
		}
	}
}

func TestDefaultCatalogue(t *testing.T) {
	c, err := ParseConfig(&yaml.Node{}) // absent section
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckPlans([]string{"free", "starter", "pro", "enterprise"}); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckPlans([]string{"free", "starter", "pro"}); err == nil || !strings.Contains(err.Error(), "enterprise") {
		t.Fatalf("CheckPlans did not report the undeclared plan: %v", err)
	}
	if c.Currency.Code != "USD" || c.GracePeriod != DefaultGracePeriod {
		t.Fatalf("default catalogue: %+v", c)
	}
	if got := strings.Join(c.Meters(), ","); got != "ai_tokens,storage_bytes,active_users,ingest_bytes,ingest_jobs" {
		t.Errorf("Meters() = %s", got)
	}
	// Prices keep their exactness through the catalogue.
	p, _ := c.Plan("starter")
	if got := p.Charges[0].UnitPrice.Format(money.Currency{Code: "USD", Exponent: 2}); got != "0.00002" {
		t.Errorf("starter ai_tokens price = %s", got)
	}
}

// TestDocExample keeps the example in docs/billing.md valid.
func TestDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/billing.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml block in docs/billing.md")
	}
	var root struct {
		Billing yaml.Node `yaml:"billing"`
	}
	if err := yaml.Unmarshal([]byte(block), &root); err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(&root.Billing)
	if err != nil {
		t.Fatalf("docs/billing.md example: %v", err)
	}
	p, ok := c.Plan("pro")
	if !ok || len(p.Charges) != 5 || c.Buyer("acme").Name != "Acme Corp" || c.PaymentTerms.Hours() != 14*24 {
		t.Fatalf("example parsed as %+v", c)
	}
}

package pricing

import (
	"strings"
	"testing"
	"time"
)

func TestCollectionStripeAndDunningSettings(t *testing.T) {
	c, err := parse(t, `
currency: EUR
collection: manual
stripe: {api_key_env: MY_KEY, collection_method: charge_automatically, concurrency: 8, api_base: "http://127.0.0.1:12111"}
customers:
  acme: {name: Acme, collection: stripe}
  beta: {name: Beta}
plans:
  - name: pro
    dunning: {retry_days: [1, 3, 7], consequence: hard_deny}
  - name: free
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.CollectionOf("acme") != CollectStripe || c.CollectionOf("beta") != CollectManual || c.CollectionOf("zed") != CollectManual {
		t.Errorf("collection: %v %q", c.Collections, c.DefaultCollection)
	}
	if c.Customers["acme"].Name != "Acme" {
		t.Errorf("the collection field swallowed the customer: %+v", c.Customers["acme"])
	}
	if s := c.Stripe; s.APIKeyEnv != "MY_KEY" || s.CollectionMethod != StripeChargeAutomatically || s.Concurrency != 8 || s.APIBase != "http://127.0.0.1:12111" {
		t.Errorf("stripe: %+v", s)
	}
	d := c.DunningOf("pro")
	if len(d.RetryDays) != 3 || d.Consequence != ConsequenceHardDeny {
		t.Errorf("pro's dunning: %+v", d)
	}
	if f := c.DunningOf("free"); len(f.RetryDays) != 3 || f.Consequence != "" {
		t.Errorf("free's dunning is not the default: %+v", f)
	}
	due := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	for at, want := range map[time.Time]int{due: 0, due.Add(24*time.Hour - 1): 0, due.Add(24 * time.Hour): 1, due.Add(72 * time.Hour): 2, due.Add(30 * 24 * time.Hour): 3} {
		if got := d.StepAt(due, at); got != want {
			t.Errorf("step at %s: %d, want %d", at, got, want)
		}
	}
}

func TestCollectionSettingsErrorsNameTheField(t *testing.T) {
	for src, want := range map[string]string{
		"collection: paypal":                                "billing.collection: want manual or stripe",
		"customers: {acme: {collection: cash}}":             "billing.customers.acme.collection: want manual or stripe",
		"stripe: {collection_method: invoice}":              "billing.stripe.collection_method",
		"stripe: {concurrency: 0}":                          "billing.stripe.concurrency",
		"stripe: {api_base: localhost}":                     "billing.stripe.api_base",
		"stripe: {api_key: sk_live_x}":                      "billing.stripe.api_key: unknown field",
		"plans: [{name: p, dunning: {retry_days: [3, 1]}}]": "billing.plans[0].dunning.retry_days[1]",
		"plans: [{name: p, dunning: {consequence: jail}}]":  "billing.plans[0].dunning.consequence",
		"plans: [{name: p, dunning: {consequence: none}}]":  "billing.plans[0].dunning.retry_days: a dunning schedule needs retry_days",
	} {
		_, err := parse(t, src)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", src, err, want)
		}
	}
}

func TestCouponsParse(t *testing.T) {
	c, err := parse(t, `
coupons:
  - {code: HALF, percent_off: "12.5", duration: 3, max_redemptions: 100}
  - {code: FIVE, amount_off: "5.00", applies_to: [ai_tokens], duration: forever}
`)
	if err != nil {
		t.Fatal(err)
	}
	half, ok := c.Coupon("HALF")
	if !ok || half.Percent().RatString() != "1/8" || half.Periods != 3 || half.MaxRedemptions != 100 {
		t.Errorf("HALF: %+v", half)
	}
	five, _ := c.Coupon("FIVE")
	if five.AmountOff != 500 || five.Periods != 0 || five.Percent() != nil || len(five.AppliesTo) != 1 {
		t.Errorf("FIVE: %+v", five)
	}
	for src, want := range map[string]string{
		`coupons: [{code: A}]`: "billing.coupons[0]: want exactly one of percent_off and amount_off",
		`coupons: [{code: A, percent_off: "10", amount_off: "1.00"}]`:           "want exactly one",
		`coupons: [{code: A, percent_off: "101"}]`:                              "billing.coupons[0].percent_off",
		`coupons: [{code: A, amount_off: "1.001"}]`:                             "billing.coupons[0].amount_off",
		`coupons: [{code: A, percent_off: "5", duration: 0}]`:                   "billing.coupons[0].duration",
		`coupons: [{percent_off: "5"}]`:                                         "billing.coupons[0].code",
		`coupons: [{code: A, percent_off: "5"}, {code: A, amount_off: "1.00"}]`: "defined twice",
	} {
		if _, err := parse(t, src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", src, err, want)
		}
	}
}

func TestTaxesParse(t *testing.T) {
	c, err := parse(t, `
taxes: {inclusive: true, rates: [{jurisdiction: GB, name: VAT, rate: "20"}, {jurisdiction: US-NY, rate: "8.875"}]}
customers:
  acme: {name: Acme, jurisdiction: GB, collection: stripe}
  beta: {name: Beta, jurisdiction: GB, reverse_charge: true}
  gov: {name: Gov, tax_exempt: true}
`)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Taxes.Inclusive || len(c.Taxes.Rates) != 2 || c.Taxes.Rates[1].Name != "Tax" {
		t.Errorf("table: %+v", c.Taxes)
	}
	if c.TaxCustomers["acme"].Jurisdiction != "GB" || !c.TaxCustomers["beta"].ReverseCharge || !c.TaxCustomers["gov"].Exempt ||
		c.Customers["acme"].Name != "Acme" || c.CollectionOf("acme") != CollectStripe {
		t.Errorf("customers: %+v %+v", c.TaxCustomers, c.Customers)
	}
	for src, want := range map[string]string{
		"customers: {acme: {jurisdiction: FR}}":                                           "billing.customers.acme.jurisdiction: jurisdiction \"FR\" has no rate",
		`taxes: {rates: [{jurisdiction: GB, rate: "120"}]}`:                               "billing.taxes.rates[0].rate",
		`taxes: {rates: [{jurisdiction: GB, rate: "20"}, {jurisdiction: GB, rate: "5"}]}`: "has two rates",
		"customers: {acme: {tax_exempt: yes}}":                                            "billing.customers.acme.tax_exempt",
		"customers: {acme: {tax_exempt: true, reverse_charge: true}}":                     "not both",
		"taxes: {engine: avalara}":                                                        "billing.taxes.engine: unknown field",
	} {
		if _, err := parse(t, src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", src, err, want)
		}
	}
}

func TestCurrenciesPerCustomer(t *testing.T) {
	src := `
currency: USD
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
	c, err := parse(t, src)
	if err != nil {
		t.Fatal(err)
	}
	jp := c.ForTenant("tokyo")
	if jp.Currency.Code != "JPY" || jp.Currency.Exponent != 0 || jp.Plans[0].BaseFee != 1500 {
		t.Errorf("tokyo: %+v %+v", jp.Currency, jp.Plans)
	}
	kw := c.ForTenant("kuwait")
	if kw.Currency.Exponent != 3 || kw.Plans[0].BaseFee != 3050 {
		t.Errorf("kuwait: %+v %+v", kw.Currency, kw.Plans)
	}
	if us := c.ForTenant("acme"); us.Currency.Code != "USD" || us.Plans[0].BaseFee != 1000 {
		t.Errorf("acme: %+v", us.Plans)
	}
	for bad, want := range map[string]string{
		strings.Replace(src, `unit_price: {USD: "0.01", JPY: "1.5", KWD: "0.0031"}`, `unit_price: {USD: "0.01", JPY: "1.5"}`, 1): "billing.plans[0].charges[0].unit_price: no price in KWD",
		strings.Replace(src, `base_fee: {USD: "10.00", JPY: "1500", KWD: "3.050"}`, `base_fee: "10.00"`, 1):                      "billing.plans[0].base_fee: no price in JPY",
		strings.Replace(src, `JPY: "1500"`, `JPY: "1500.5"`, 1):                                                                  "billing.plans[0].base_fee.JPY",
		strings.Replace(src, "currency: KWD}", "currency: EUR}", 1):                                                              "billing.customers.kuwait.currency: EUR is neither",
		strings.Replace(src, "[JPY, KWD]", "[JPY, USD]", 1):                                                                      "billing.currencies[1]",
	} {
		if _, err := parse(t, bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}

// Package pricing is the price catalogue: the currency, the seller, the grace period before
// invoices are finalized, and per plan a monthly base fee, a minimum commitment and one charge
// per billed meter. It is read from the `billing:` section of the configuration file.
package pricing

import (
	"fmt"
	"math/big"
	"time"

	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/tax"
)

// Model is a charge model (the names follow Lago's).
type Model string

const (
	// Flat charges a fixed fee per period when the billable quantity (usage above the included
	// allowance) is above zero: "20.00 a month if you use SSO at all".
	Flat Model = "flat"
	// PerUnit charges every billable unit at one unit price.
	PerUnit Model = "per_unit"
	// Graduated prices the units inside each tier at that tier's price, and adds the flat fee of
	// every tier that holds at least one unit.
	Graduated Model = "graduated"
	// Volume prices every billable unit at the price of the one tier the total falls into, plus
	// that tier's flat fee.
	Volume Model = "volume"
	// Package charges a price per started block of PackageSize units (partial blocks count whole).
	Package Model = "package"
)

// Unbounded is the UpTo of a last tier.
const Unbounded int64 = -1

// Tier is one price band. UpTo is inclusive: a tier {UpTo: 100} holds units 1..100 (after the
// previous tier's bound); the last tier has UpTo == Unbounded.
type Tier struct {
	UpTo      int64        `json:"up_to"`
	UnitPrice money.Price  `json:"unit_price"` // minor units, exact
	FlatFee   money.Amount `json:"flat_fee"`
}

// Charge prices one meter on one plan.
type Charge struct {
	Meter       string `json:"meter"`
	Model       Model  `json:"model"`
	Description string `json:"description,omitempty"`
	// Included units are free: the model applies to max(0, usage - Included).
	Included     int64        `json:"included,omitempty"`
	Fee          money.Amount `json:"fee,omitempty"`        // Flat
	UnitPrice    money.Price  `json:"unit_price,omitempty"` // PerUnit
	PackageSize  int64        `json:"package_size,omitempty"`
	PackagePrice money.Amount `json:"package_price,omitempty"`
	Tiers        []Tier       `json:"tiers,omitempty"` // Graduated, Volume
}

// Plan is the price of one plan of the configuration's `plans:`.
type Plan struct {
	Name        string       `json:"name"`
	Description string       `json:"description,omitempty"`
	BaseFee     money.Amount `json:"base_fee"`
	// Minimum is the minimum commitment: when the period's charges (base fee included) come to
	// less, a top-up line brings the invoice to this amount.
	Minimum money.Amount `json:"minimum_commitment"`
	Charges []Charge     `json:"charges"`
	// Dunning is the plan's schedule for unpaid collected invoices; nil means DefaultDunning.
	Dunning *Dunning `json:"dunning,omitempty"`
}

// Party is a seller or a buyer as printed on an invoice.
type Party struct {
	Name    string   `json:"name"`
	Address []string `json:"address,omitempty"`
	TaxID   string   `json:"tax_id,omitempty"`
	Email   string   `json:"email,omitempty"`
}

// Catalogue is the whole billing configuration.
type Catalogue struct {
	Currency money.Currency `json:"currency"`
	Seller   Party          `json:"seller"`
	// Customers holds buyer details by tenant id; a tenant without an entry is billed under its id.
	Customers map[string]Party `json:"customers,omitempty"`
	// GracePeriod is how long after a period ends its invoices stay drafts, so that late events
	// still count (default 72h).
	GracePeriod time.Duration `json:"grace_period"`
	// PaymentTerms is the time from finalization to the due date (default 14 days).
	PaymentTerms time.Duration `json:"payment_terms"`
	// StripeWebhookSecretEnv names the environment variable holding the Stripe endpoint secret
	// (whsec_...); secrets are never written in the configuration file.
	StripeWebhookSecretEnv string `json:"stripe_webhook_secret_env,omitempty"`
	// Stripe is the `billing.stripe:` section (collection through Stripe).
	Stripe StripeSettings `json:"stripe"`
	// DefaultCollection is `billing.collection` (manual or stripe; empty means manual), and
	// Collections the tenants' own `billing.customers.<tenant>.collection`.
	DefaultCollection string            `json:"collection,omitempty"`
	Collections       map[string]string `json:"collections,omitempty"`
	// Taxes is the built-in tax table (`billing.taxes:`), TaxCustomers the customers' tax
	// positions (jurisdiction, exempt, reverse charge) by tenant.
	Taxes        tax.Table               `json:"taxes"`
	TaxCustomers map[string]tax.Customer `json:"tax_customers,omitempty"`
	// Currencies are the other currencies plans are priced in (`billing.currencies`), PlansIn
	// the plans priced in each, and CustomerCurrency the customers billed in one of them.
	Currencies       []money.Currency  `json:"currencies,omitempty"`
	PlansIn          map[string][]Plan `json:"plans_in,omitempty"`
	CustomerCurrency map[string]string `json:"customer_currency,omitempty"`
	// Coupons are the discounts tenants may redeem (`billing.coupons:`).
	Coupons []Coupon `json:"coupons,omitempty"`
	Plans   []Plan   `json:"plans"`
}

// DefaultGracePeriod is the grace period when the catalogue names none.
const DefaultGracePeriod = 72 * time.Hour

// DefaultPaymentTerms is the payment term when the catalogue names none.
const DefaultPaymentTerms = 14 * 24 * time.Hour

// Plan returns the named plan.
func (c *Catalogue) Plan(name string) (*Plan, bool) {
	for i := range c.Plans {
		if c.Plans[i].Name == name {
			return &c.Plans[i], true
		}
	}
	return nil, false
}

// Buyer returns the invoice addressee for a tenant.
func (c *Catalogue) Buyer(tenant string) Party {
	if p, ok := c.Customers[tenant]; ok {
		if p.Name == "" {
			p.Name = tenant
		}
		return p
	}
	return Party{Name: tenant}
}

// Meters lists every meter some plan charges, in first-seen order.
func (c *Catalogue) Meters() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range c.Plans {
		for _, ch := range p.Charges {
			if !seen[ch.Meter] {
				seen[ch.Meter] = true
				out = append(out, ch.Meter)
			}
		}
	}
	return out
}

// Result is the exact outcome of one charge on one quantity, before rounding.
type Result struct {
	Billable int64       // quantity after the included allowance
	Exact    *big.Rat    // minor units, exact
	Tiers    []TierUsage // graduated and volume only
}

// TierUsage is one tier's share of a tiered charge.
type TierUsage struct {
	Tier      int          `json:"tier"` // 1-based
	From      int64        `json:"from"` // first unit, 1-based
	UpTo      int64        `json:"up_to"`
	Quantity  int64        `json:"quantity"`
	UnitPrice money.Price  `json:"unit_price"`
	FlatFee   money.Amount `json:"flat_fee"`
	Exact     string       `json:"exact_amount"` // minor units, exact decimal
}

// Apply prices qty units with included allowance `included` (the caller passes the prorated
// allowance; Charge.Included is the full-month one). The result is exact; rounding is the
// caller's, once per line.
func (ch *Charge) Apply(qty, included int64) Result { return ch.apply(qty, included, true) }

// Amount is Apply without the tier breakdown: the exact amount only (plan comparisons rate
// every plan and need no detail).
func (ch *Charge) Amount(qty, included int64) *big.Rat { return ch.apply(qty, included, false).Exact }

func (ch *Charge) apply(qty, included int64, detail bool) Result {
	billable := qty - included
	if billable < 0 {
		billable = 0
	}
	res := Result{Billable: billable, Exact: new(big.Rat)}
	switch ch.Model {
	case Flat:
		if billable > 0 {
			res.Exact.SetInt64(int64(ch.Fee))
		}
	case PerUnit:
		res.Exact = ch.UnitPrice.Times(billable)
	case Package:
		if billable > 0 {
			blocks := billable / ch.PackageSize
			if billable%ch.PackageSize != 0 {
				blocks++
			}
			res.Exact.Mul(big.NewRat(blocks, 1), big.NewRat(int64(ch.PackagePrice), 1))
		}
	case Graduated:
		var lower int64 // units already placed in earlier tiers
		for i, t := range ch.Tiers {
			if billable <= lower {
				break
			}
			n := billable - lower
			if t.UpTo != Unbounded && t.UpTo-lower < n {
				n = t.UpTo - lower
			}
			amt := t.UnitPrice.Times(n)
			amt.Add(amt, big.NewRat(int64(t.FlatFee), 1))
			res.Exact.Add(res.Exact, amt)
			if detail {
				res.Tiers = append(res.Tiers, TierUsage{Tier: i + 1, From: lower + 1, UpTo: t.UpTo, Quantity: n,
					UnitPrice: t.UnitPrice, FlatFee: t.FlatFee, Exact: money.FormatRat(amt, 0)})
			}
			lower = t.UpTo
			if t.UpTo == Unbounded {
				break
			}
		}
	case Volume:
		if billable > 0 {
			var lower int64
			for i, t := range ch.Tiers {
				if t.UpTo == Unbounded || billable <= t.UpTo {
					amt := t.UnitPrice.Times(billable)
					amt.Add(amt, big.NewRat(int64(t.FlatFee), 1))
					res.Exact = amt
					if detail {
						res.Tiers = []TierUsage{{Tier: i + 1, From: lower + 1, UpTo: t.UpTo, Quantity: billable,
							UnitPrice: t.UnitPrice, FlatFee: t.FlatFee, Exact: money.FormatRat(amt, 0)}}
					}
					break
				}
				lower = t.UpTo
			}
		}
	}
	return res
}

// validate checks a charge's shape; field is its path for messages.
func (ch *Charge) validate() (field, msg string) {
	if ch.Included < 0 {
		return "included", "must not be negative"
	}
	switch ch.Model {
	case Flat:
		if ch.Fee < 0 {
			return "fee", "must not be negative"
		}
	case PerUnit:
	case Package:
		if ch.PackageSize <= 0 {
			return "package_size", "must be a positive number of units"
		}
		if ch.PackagePrice < 0 {
			return "package_price", "must not be negative"
		}
	case Graduated, Volume:
		if len(ch.Tiers) == 0 {
			return "tiers", "a tiered charge needs at least one tier"
		}
		var prev int64
		for i, t := range ch.Tiers {
			last := i == len(ch.Tiers)-1
			switch {
			case t.UpTo == Unbounded && !last:
				return fmt.Sprintf("tiers[%d].up_to", i), "only the last tier may be unbounded"
			case t.UpTo != Unbounded && last:
				return fmt.Sprintf("tiers[%d].up_to", i), "the last tier must be unbounded (up_to: inf)"
			case t.UpTo != Unbounded && t.UpTo <= prev:
				return fmt.Sprintf("tiers[%d].up_to", i), "tier bounds must increase"
			case t.FlatFee < 0:
				return fmt.Sprintf("tiers[%d].flat_fee", i), "must not be negative"
			}
			prev = t.UpTo
		}
	default:
		return "model", fmt.Sprintf("unknown charge model %q (want flat, per_unit, graduated, volume or package)", ch.Model)
	}
	return "", ""
}

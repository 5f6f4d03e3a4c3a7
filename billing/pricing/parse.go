package pricing

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/config"
)

// FieldError points at one field of the configuration file; config.Load adds the file name.
type FieldError = config.FieldError

func fieldErr(n *yaml.Node, field, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &FieldError{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ParseConfig reads the `billing:` section. An absent section (Kind == 0) gives Default().
// Every error is a *FieldError naming the line and the field.
func ParseConfig(n *yaml.Node) (Catalogue, error) {
	if n == nil || n.Kind == 0 {
		return Default(), nil
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	c := Catalogue{GracePeriod: DefaultGracePeriod, PaymentTerms: DefaultPaymentTerms}
	cur := "USD"
	curNode := n
	var plansNode, customersNode, couponsNode, currenciesNode *yaml.Node
	currencyNodes := map[string]*yaml.Node{}
	err := eachKey(n, "billing", func(key string, k, v *yaml.Node) error {
		f := "billing." + key
		switch key {
		case "currency":
			cur, curNode = v.Value, v
			return nil
		case "grace_period", "payment_terms":
			d, err := parseDuration(v.Value)
			if err != nil || d < 0 {
				return fieldErr(v, f, "want a non-negative duration such as 72h or 3d")
			}
			if key == "grace_period" {
				c.GracePeriod = d
			} else {
				c.PaymentTerms = d
			}
			return nil
		case "seller":
			p, err := parseParty(v, f)
			c.Seller = p
			return err
		case "customers":
			customersNode = v
			return nil
		case "stripe":
			var err error
			c.Stripe, err = parseStripe(v, f)
			c.StripeWebhookSecretEnv = c.Stripe.WebhookSecretEnv
			return err
		case "collection":
			var err error
			c.DefaultCollection, err = parseCollection(v, f)
			return err
		case "plans":
			plansNode = v
			return nil
		case "coupons":
			couponsNode = v
			return nil
		case "currencies":
			currenciesNode = v
			return nil
		case "taxes":
			var err error
			c.Taxes, err = parseTaxes(v, f)
			return err
		}
		return fieldErr(k, f, "unknown field")
	})
	if err != nil {
		return Catalogue{}, err
	}
	if c.Currency, err = money.ParseCurrency(cur); err != nil {
		return Catalogue{}, fieldErr(curNode, "billing.currency", "%v", err)
	}
	if customersNode != nil {
		c.Customers = map[string]Party{}
		err := eachKey(customersNode, "billing.customers", func(key string, _, v *yaml.Node) error {
			pn, extra := splitCustomer(v)
			if err := parseTaxCustomer(&c, key, extra); err != nil {
				return err
			}
			if cn := extra["currency"]; cn != nil {
				if c.CustomerCurrency == nil {
					c.CustomerCurrency = map[string]string{}
				}
				c.CustomerCurrency[key], currencyNodes[key] = cn.Value, cn
			}
			if cn := extra["collection"]; cn != nil {
				m, err := parseCollection(cn, "billing.customers."+key+".collection")
				if err != nil {
					return err
				}
				if c.Collections == nil {
					c.Collections = map[string]string{}
				}
				c.Collections[key] = m
			}
			p, err := parseParty(pn, "billing.customers."+key)
			c.Customers[key] = p
			return err
		})
		if err != nil {
			return Catalogue{}, err
		}
	}
	if err := c.checkTaxes(); err != nil {
		return Catalogue{}, err
	}
	if couponsNode != nil {
		if c.Coupons, err = parseCoupons(couponsNode, priceCurrency{c.Currency, true}); err != nil {
			return Catalogue{}, err
		}
	}
	if plansNode != nil {
		if plansNode.Kind != yaml.SequenceNode {
			return Catalogue{}, fieldErr(plansNode, "billing.plans", "want a list of plans")
		}
		for i, pn := range plansNode.Content {
			p, err := parsePlan(pn, fmt.Sprintf("billing.plans[%d]", i), priceCurrency{c.Currency, true})
			if err != nil {
				return Catalogue{}, err
			}
			if _, dup := c.Plan(p.Name); dup {
				return Catalogue{}, fieldErr(pn, fmt.Sprintf("billing.plans[%d].name", i), "plan %q is priced twice", p.Name)
			}
			c.Plans = append(c.Plans, p)
		}
	}
	if currenciesNode != nil {
		if err := c.parseCurrencies(currenciesNode, plansNode); err != nil {
			return Catalogue{}, err
		}
	}
	if err := c.checkCustomerCurrencies(currencyNodes); err != nil {
		return Catalogue{}, err
	}
	if c.Seller.Name == "" {
		c.Seller.Name = "usagemeter"
	}
	return c, nil
}

// CheckPlans reports a plan priced in the catalogue that the configuration's `plans:` does not
// declare, and a declared plan that has no price: both are configuration mistakes that would
// otherwise surface only on an invoice.
func (c *Catalogue) CheckPlans(declared []string) error {
	known := map[string]bool{}
	for _, d := range declared {
		known[d] = true
		if _, ok := c.Plan(d); !ok {
			return &FieldError{Field: "billing.plans", Msg: fmt.Sprintf("plan %q (from plans:) has no price", d)}
		}
	}
	for i, p := range c.Plans {
		if !known[p.Name] {
			return &FieldError{Field: fmt.Sprintf("billing.plans[%d].name", i), Msg: fmt.Sprintf("plan %q is not declared in plans:", p.Name)}
		}
	}
	return nil
}

// WebhookSecret reads the Stripe endpoint secret from the environment variable the catalogue
// names (default STRIPE_WEBHOOK_SECRET).
func (c *Catalogue) WebhookSecret() string {
	name := c.StripeWebhookSecretEnv
	if name == "" {
		name = "STRIPE_WEBHOOK_SECRET"
	}
	return os.Getenv(name)
}

func parsePlan(n *yaml.Node, f string, cur priceCurrency) (Plan, error) {
	var p Plan
	var err error
	err = eachKey(n, f, func(key string, k, v *yaml.Node) error {
		switch key {
		case "name":
			p.Name = v.Value
		case "description":
			p.Description = v.Value
		case "base_fee":
			p.BaseFee, err = amount(v, f+".base_fee", cur)
			return err
		case "minimum_commitment":
			p.Minimum, err = amount(v, f+".minimum_commitment", cur)
			return err
		case "dunning":
			p.Dunning, err = parseDunning(v, f+".dunning")
			return err
		case "charges":
			if v.Kind != yaml.SequenceNode {
				return fieldErr(v, f+".charges", "want a list of charges")
			}
			seen := map[string]bool{}
			for i, cn := range v.Content {
				cf := fmt.Sprintf("%s.charges[%d]", f, i)
				ch, err := parseCharge(cn, cf, cur)
				if err != nil {
					return err
				}
				if seen[ch.Meter] {
					return fieldErr(cn, cf+".meter", "meter %q is charged twice on this plan", ch.Meter)
				}
				seen[ch.Meter] = true
				p.Charges = append(p.Charges, ch)
			}
		default:
			return fieldErr(k, f+"."+key, "unknown field")
		}
		return nil
	})
	if err != nil {
		return Plan{}, err
	}
	if p.Name == "" {
		return Plan{}, fieldErr(n, f+".name", "a plan needs a name")
	}
	return p, nil
}

func parseCharge(n *yaml.Node, f string, cur priceCurrency) (Charge, error) {
	var ch Charge
	var err error
	err = eachKey(n, f, func(key string, k, v *yaml.Node) error {
		kf := f + "." + key
		switch key {
		case "meter":
			ch.Meter = v.Value
		case "model":
			ch.Model = Model(v.Value)
		case "description":
			ch.Description = v.Value
		case "included":
			ch.Included, err = integer(v, kf)
		case "fee":
			ch.Fee, err = amount(v, kf, cur)
		case "unit_price":
			ch.UnitPrice, err = price(v, kf, cur)
		case "package_size":
			ch.PackageSize, err = integer(v, kf)
		case "package_price":
			ch.PackagePrice, err = amount(v, kf, cur)
		case "tiers":
			if v.Kind != yaml.SequenceNode {
				return fieldErr(v, kf, "want a list of tiers")
			}
			for i, tn := range v.Content {
				t, err := parseTier(tn, fmt.Sprintf("%s[%d]", kf, i), cur)
				if err != nil {
					return err
				}
				ch.Tiers = append(ch.Tiers, t)
			}
		default:
			return fieldErr(k, kf, "unknown field")
		}
		return err
	})
	if err != nil {
		return Charge{}, err
	}
	if ch.Meter == "" {
		return Charge{}, fieldErr(n, f+".meter", "a charge needs a meter")
	}
	if ch.Model == "" {
		return Charge{}, fieldErr(n, f+".model", "a charge needs a model")
	}
	if field, msg := ch.validate(); msg != "" {
		return Charge{}, fieldErr(n, f+"."+field, "%s", msg)
	}
	return ch, nil
}

func parseTier(n *yaml.Node, f string, cur priceCurrency) (Tier, error) {
	t := Tier{UpTo: Unbounded}
	var err error
	err = eachKey(n, f, func(key string, k, v *yaml.Node) error {
		switch key {
		case "up_to":
			if v.Value == "inf" || v.Value == "infinity" || v.Tag == "!!null" {
				t.UpTo = Unbounded
				return nil
			}
			t.UpTo, err = integer(v, f+".up_to")
			if err == nil && t.UpTo <= 0 {
				err = fieldErr(v, f+".up_to", "must be a positive number of units or inf")
			}
		case "unit_price":
			t.UnitPrice, err = price(v, f+".unit_price", cur)
		case "flat_fee":
			t.FlatFee, err = amount(v, f+".flat_fee", cur)
		default:
			return fieldErr(k, f+"."+key, "unknown field")
		}
		return err
	})
	return t, err
}

func parseParty(n *yaml.Node, f string) (Party, error) {
	var p Party
	err := eachKey(n, f, func(key string, k, v *yaml.Node) error {
		switch key {
		case "name":
			p.Name = v.Value
		case "tax_id":
			p.TaxID = v.Value
		case "email":
			p.Email = v.Value
		case "address":
			if v.Kind == yaml.ScalarNode {
				p.Address = []string{v.Value}
				return nil
			}
			if v.Kind != yaml.SequenceNode {
				return fieldErr(v, f+".address", "want a string or a list of lines")
			}
			for _, l := range v.Content {
				p.Address = append(p.Address, l.Value)
			}
		default:
			return fieldErr(k, f+"."+key, "unknown field")
		}
		return nil
	})
	return p, err
}

func eachKey(n *yaml.Node, f string, fn func(key string, k, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return fieldErr(n, f, "want a mapping")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if err := fn(n.Content[i].Value, n.Content[i], n.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func amount(v *yaml.Node, f string, cur priceCurrency) (money.Amount, error) {
	v, f, err := cur.pick(v, f)
	if err != nil {
		return 0, err
	}
	a, err := money.ParseAmount(v.Value, cur.Currency)
	if err != nil {
		return 0, fieldErr(v, f, "%v", err)
	}
	return a, nil
}

func price(v *yaml.Node, f string, cur priceCurrency) (money.Price, error) {
	v, f, err := cur.pick(v, f)
	if err != nil {
		return money.Price{}, err
	}
	p, err := money.ParsePrice(v.Value, cur.Currency)
	if err != nil {
		return money.Price{}, fieldErr(v, f, "%v", err)
	}
	return p, nil
}

func integer(v *yaml.Node, f string) (int64, error) {
	i, err := strconv.ParseInt(strings.ReplaceAll(v.Value, "_", ""), 10, 64)
	if err != nil || i < 0 {
		return 0, fieldErr(v, f, "want a non-negative integer, got %q", v.Value)
	}
	return i, nil
}

// parseDuration accepts Go durations and a whole number of days ("3d").
func parseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil {
			return 0, err
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

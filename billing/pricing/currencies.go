package pricing

import (
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/billing/money"
)

// priceCurrency is the currency a plan is being read in. A money field is either one value (in
// the catalogue's currency) or a mapping of currency codes to values; base says whether cur is
// the catalogue's currency, the only one a single value may stand for.
type priceCurrency struct {
	money.Currency
	base bool
}

// pick returns the node holding the field's value in cur: nothing converts silently, so a
// field without a value in cur is an error that names it.
func (cur priceCurrency) pick(v *yaml.Node, f string) (*yaml.Node, string, error) {
	if v.Kind != yaml.MappingNode {
		if cur.base {
			return v, f, nil
		}
		return nil, f, fieldErr(v, f, "no price in %s (write {%s: ..., %s: ...}); nothing is converted", cur.Code, "<catalogue currency>", cur.Code)
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		if v.Content[i].Value == cur.Code {
			return v.Content[i+1], f + "." + cur.Code, nil
		}
	}
	return nil, f, fieldErr(v, f, "no price in %s; nothing is converted", cur.Code)
}

// CurrencyOf is the currency the tenant is billed in.
func (c *Catalogue) CurrencyOf(tenant string) money.Currency {
	if code, ok := c.CustomerCurrency[tenant]; ok {
		for _, cur := range c.Currencies {
			if cur.Code == code {
				return cur
			}
		}
	}
	return c.Currency
}

// ForTenant is the catalogue as the tenant is billed: in its currency, with the plans' prices
// in that currency.
func (c Catalogue) ForTenant(tenant string) Catalogue {
	cur := c.CurrencyOf(tenant)
	if cur.Code == c.Currency.Code {
		return c
	}
	c.Currency = cur
	c.Plans = c.PlansIn[cur.Code]
	return c
}

// parseCurrencies reads `billing.currencies` (the other currencies plans are priced in) and
// prices every plan in each of them.
func (c *Catalogue) parseCurrencies(cn, plansNode *yaml.Node) error {
	if cn.Kind != yaml.SequenceNode {
		return fieldErr(cn, "billing.currencies", "want a list of ISO 4217 codes")
	}
	c.PlansIn = map[string][]Plan{}
	for i, n := range cn.Content {
		cur, err := money.ParseCurrency(n.Value)
		if err != nil {
			return fieldErr(n, fmt.Sprintf("billing.currencies[%d]", i), "%v", err)
		}
		if cur.Code == c.Currency.Code || c.PlansIn[cur.Code] != nil {
			return fieldErr(n, fmt.Sprintf("billing.currencies[%d]", i), "%s is listed twice (the catalogue's currency is %s)", cur.Code, c.Currency.Code)
		}
		c.Currencies = append(c.Currencies, cur)
		plans := []Plan{}
		if plansNode != nil {
			for j, pn := range plansNode.Content {
				p, err := parsePlan(pn, fmt.Sprintf("billing.plans[%d]", j), priceCurrency{cur, false})
				if err != nil {
					return err
				}
				plans = append(plans, p)
			}
		}
		c.PlansIn[cur.Code] = plans
	}
	return nil
}

// checkCustomerCurrencies refuses a customer billed in a currency no plan is priced in.
func (c *Catalogue) checkCustomerCurrencies(nodes map[string]*yaml.Node) error {
	for tenant, code := range c.CustomerCurrency {
		if code == c.Currency.Code {
			continue
		}
		if _, ok := c.PlansIn[code]; !ok {
			return fieldErr(nodes[tenant], "billing.customers."+tenant+".currency",
				"%s is neither the catalogue's currency (%s) nor in billing.currencies", code, c.Currency.Code)
		}
	}
	return nil
}

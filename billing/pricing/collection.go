package pricing

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// How a tenant's finalized invoices are collected.
const (
	// CollectManual leaves collection to people: payments are recorded over the API or arrive
	// through the webhooks. The default.
	CollectManual = "manual"
	// CollectStripe sends every finalized invoice with something to pay to Stripe.
	CollectStripe = "stripe"
)

// Stripe collection methods (Stripe's own names).
const (
	StripeSendInvoice         = "send_invoice"         // Stripe e-mails the invoice; the customer pays it
	StripeChargeAutomatically = "charge_automatically" // Stripe charges the customer's default payment method
)

// StripeSettings is the `billing.stripe:` section.
type StripeSettings struct {
	// WebhookSecretEnv names the environment variable holding the endpoint secret (whsec_...).
	WebhookSecretEnv string `json:"webhook_secret_env,omitempty"`
	// APIKeyEnv names the environment variable holding the secret API key (sk_...); default
	// STRIPE_API_KEY. Secrets are never written in the configuration file.
	APIKeyEnv string `json:"api_key_env,omitempty"`
	// APIBase overrides Stripe's API URL (a stripe-mock in tests); empty means api.stripe.com.
	APIBase string `json:"api_base,omitempty"`
	// CollectionMethod is send_invoice (default) or charge_automatically.
	CollectionMethod string `json:"collection_method,omitempty"`
	// Concurrency bounds the invoices sent at once (default 4; Stripe's live rate limit is 100
	// requests per second, and one invoice is 4 or 5 requests).
	Concurrency int `json:"concurrency,omitempty"`
}

// APIKey reads the Stripe secret key from the environment variable the catalogue names.
func (s StripeSettings) APIKey() string {
	name := s.APIKeyEnv
	if name == "" {
		name = "STRIPE_API_KEY"
	}
	return os.Getenv(name)
}

// Dunning is what happens when a collected invoice stays unpaid: payment is retried on the
// given days after the due date, each retry with a reminder, and after the last one the
// optional consequence applies until the tenant pays.
type Dunning struct {
	RetryDays []int `json:"retry_days"` // days after the due date, increasing, e.g. [1, 3, 7]
	// Consequence after the last retry: "" (none) or "hard_deny" (quota admission denies
	// every request of the tenant until it has no overdue invoice).
	Consequence string `json:"consequence,omitempty"`
}

// ConsequenceHardDeny turns the tenant's quota admission to deny.
const ConsequenceHardDeny = "hard_deny"

// DefaultDunning applies to plans that name no schedule: retry on days 1, 3 and 7, no consequence.
var DefaultDunning = Dunning{RetryDays: []int{1, 3, 7}}

// StepAt is the dunning step a due date and an instant reach: 0 before the first retry day,
// len(RetryDays) after the last.
func (d Dunning) StepAt(due, now time.Time) int {
	n := 0
	for _, day := range d.RetryDays {
		if !now.Before(due.Add(time.Duration(day) * 24 * time.Hour)) {
			n++
		}
	}
	return n
}

// CollectionOf is how the tenant's invoices are collected.
func (c *Catalogue) CollectionOf(tenant string) string {
	if m, ok := c.Collections[tenant]; ok {
		return m
	}
	if c.DefaultCollection != "" {
		return c.DefaultCollection
	}
	return CollectManual
}

// DunningOf is the plan's dunning schedule (DefaultDunning when the plan names none).
func (c *Catalogue) DunningOf(plan string) Dunning {
	if p, ok := c.Plan(plan); ok && p.Dunning != nil {
		return *p.Dunning
	}
	return DefaultDunning
}

func parseCollection(v *yaml.Node, f string) (string, error) {
	switch v.Value {
	case CollectManual, CollectStripe:
		return v.Value, nil
	}
	return "", fieldErr(v, f, "want manual or stripe, got %q", v.Value)
}

func parseStripe(n *yaml.Node, f string) (StripeSettings, error) {
	var s StripeSettings
	err := eachKey(n, f, func(key string, k, v *yaml.Node) error {
		switch key {
		case "webhook_secret_env":
			s.WebhookSecretEnv = v.Value
		case "api_key_env":
			s.APIKeyEnv = v.Value
		case "api_base":
			if !strings.HasPrefix(v.Value, "http://") && !strings.HasPrefix(v.Value, "https://") {
				return fieldErr(v, f+".api_base", "want an http(s) URL, got %q", v.Value)
			}
			s.APIBase = v.Value
		case "collection_method":
			if v.Value != StripeSendInvoice && v.Value != StripeChargeAutomatically {
				return fieldErr(v, f+".collection_method", "want send_invoice or charge_automatically, got %q", v.Value)
			}
			s.CollectionMethod = v.Value
		case "concurrency":
			n, err := strconv.Atoi(v.Value)
			if err != nil || n < 1 || n > 64 {
				return fieldErr(v, f+".concurrency", "want an integer from 1 to 64, got %q", v.Value)
			}
			s.Concurrency = n
		default:
			return fieldErr(k, f+"."+key, "unknown field (want webhook_secret_env, api_key_env, api_base, collection_method, concurrency)")
		}
		return nil
	})
	if s.CollectionMethod == "" {
		s.CollectionMethod = StripeSendInvoice
	}
	if s.Concurrency == 0 {
		s.Concurrency = 4
	}
	return s, err
}

func parseDunning(n *yaml.Node, f string) (*Dunning, error) {
	d := &Dunning{}
	err := eachKey(n, f, func(key string, k, v *yaml.Node) error {
		switch key {
		case "retry_days":
			if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
				return fieldErr(v, f+".retry_days", "want a non-empty list of days, e.g. [1, 3, 7]")
			}
			for i, dn := range v.Content {
				day, err := strconv.Atoi(dn.Value)
				if err != nil || day < 0 || (i > 0 && day <= d.RetryDays[i-1]) {
					return fieldErr(dn, fmt.Sprintf("%s.retry_days[%d]", f, i), "want increasing non-negative whole days, got %q", dn.Value)
				}
				d.RetryDays = append(d.RetryDays, day)
			}
		case "consequence":
			if v.Value != "" && v.Value != "none" && v.Value != ConsequenceHardDeny {
				return fieldErr(v, f+".consequence", "want none or hard_deny, got %q", v.Value)
			}
			if v.Value == ConsequenceHardDeny {
				d.Consequence = ConsequenceHardDeny
			}
		default:
			return fieldErr(k, f+"."+key, "unknown field (want retry_days, consequence)")
		}
		return nil
	})
	if err == nil && len(d.RetryDays) == 0 {
		err = fieldErr(n, f+".retry_days", "a dunning schedule needs retry_days")
	}
	return d, err
}

// splitCustomer takes the billing fields (collection, tax position) out of a customer's
// mapping, so that the rest parses as a Party.
func splitCustomer(n *yaml.Node) (party *yaml.Node, extra map[string]*yaml.Node) {
	extra = map[string]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		return n, extra
	}
	cp := *n
	cp.Content = nil
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch k := n.Content[i].Value; k {
		case "collection", "jurisdiction", "tax_exempt", "reverse_charge", "currency":
			extra[k] = n.Content[i+1]
			continue
		}
		cp.Content = append(cp.Content, n.Content[i], n.Content[i+1])
	}
	return &cp, extra
}

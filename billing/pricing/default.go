package pricing

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// DefaultYAML is the catalogue used when the configuration has no `billing:` section. It prices
// the default plans (free, starter, pro, enterprise) and doubles as the documented example.
const DefaultYAML = `
currency: USD
grace_period: 72h
payment_terms: 14d
seller:
  name: Usagemeter Inc.
  address: ["1 Meter Street", "Springfield, 12345"]
  tax_id: US-00-0000000
  email: billing@usagemeter.example
stripe: {webhook_secret_env: STRIPE_WEBHOOK_SECRET}
plans:
  - name: free
    base_fee: "0"
    charges: []
  - name: starter
    base_fee: "29.00"
    charges:
      - {meter: ai_tokens, model: per_unit, included: 1000000, unit_price: "0.00002"}
      - {meter: storage_bytes, model: package, included: 10737418240, package_size: 1073741824, package_price: "0.25"}
      - {meter: active_users, model: per_unit, included: 10, unit_price: "5.00"}
  - name: pro
    base_fee: "199.00"
    minimum_commitment: "250.00"
    charges:
      - meter: ai_tokens
        model: graduated
        included: 5000000
        tiers:
          - {up_to: 50000000, unit_price: "0.000015"}
          - {up_to: inf, unit_price: "0.00001"}
      - {meter: storage_bytes, model: package, included: 107374182400, package_size: 1073741824, package_price: "0.20"}
      - {meter: ingest_bytes, model: package, included: 53687091200, package_size: 1073741824, package_price: "0.05"}
      - meter: active_users
        model: volume
        included: 25
        tiers:
          - {up_to: 100, unit_price: "4.00"}
          - {up_to: 1000, unit_price: "3.00"}
          - {up_to: inf, unit_price: "2.00"}
  - name: enterprise
    base_fee: "1500.00"
    minimum_commitment: "2000.00"
    charges:
      - meter: ai_tokens
        model: graduated
        included: 50000000
        tiers:
          - {up_to: 500000000, unit_price: "0.00001"}
          - {up_to: inf, unit_price: "0.000008", flat_fee: "100.00"}
      - {meter: storage_bytes, model: package, included: 1099511627776, package_size: 1099511627776, package_price: "150.00"}
      - {meter: ingest_jobs, model: flat, fee: "100.00", description: "Managed ingest connectors, any use in the month"}
`

// Default is the catalogue parsed from DefaultYAML.
func Default() Catalogue {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(DefaultYAML), &n); err != nil {
		panic(fmt.Sprintf("pricing: default catalogue: %v", err)) // a bug in this file, caught by tests
	}
	c, err := ParseConfig(&n)
	if err != nil {
		panic(fmt.Sprintf("pricing: default catalogue: %v", err))
	}
	return c
}

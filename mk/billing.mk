# Billing (billing/). Its tests run with every Go test (`go-test`); this fragment adds the
# benchmark: one month's invoice run for 10,000 tenants with every default meter charged, usage
# read from the real ledger (exporter/ledger) and invoices written to its Pebble DB.
# Target: under 10 s per run (ns/op below 1e10). Results also go to bench-results/billing.txt.

BILLING_BENCHCOUNT ?= 3

.PHONY: bench-billing
bench: bench-billing

bench-billing: ## billing: invoice run for 10,000 tenants (target < 10 s/op)
	@mkdir -p bench-results
	set -o pipefail; $(GO) test -run '^$$' -bench 'BenchmarkInvoiceRun10kTenants' -benchtime 1x \
		-count $(BILLING_BENCHCOUNT) ./billing/billingbench/ | tee bench-results/billing.txt | grep -E '^(Benchmark|ok|FAIL)'

# bench-collect: collection through Stripe of 10,000 tenants' invoices against the pinned
# stripe-mock (HTTP calls per invoice and wall time; stripe-mock's own CPU is most of the time).
.PHONY: bench-collect
bench: bench-collect

bench-collect: tools ## billing: send 10,000 invoices to stripe-mock (calls per invoice, time)
	@mkdir -p bench-results
	set -o pipefail; STRIPE_MOCK=$(TOOLS)/stripe-mock $(GO) test -run '^$$' -bench 'BenchmarkCollect10kTenants' -benchtime 1x \
		./billing/stripecollect/ | tee bench-results/collect.txt | grep -E '^(Benchmark|ok|FAIL)'

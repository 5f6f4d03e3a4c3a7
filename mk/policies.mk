# Rego policies (policies/) and their Go engine (exporter/authz).
#
# test-policies: the policies are formatted, pass `opa check --strict`, pass their tests, and
# the tests cover every line of every policy (threshold 100 %: the total is covered lines over
# all lines, so 100 % overall means no line of any file is left uncovered).
# bench-policies: quota admission and request authorization under concurrent load, p99 included.

POLICY_DIR := policies
POLICY_BENCHTIME ?= 2s

.PHONY: test-policies bench-policies
test: test-policies
bench: bench-policies

test-policies: tools
	$(TOOLS)/opa fmt --list --fail $(POLICY_DIR)/
	$(TOOLS)/opa check --strict $(POLICY_DIR)/
	$(TOOLS)/opa test $(POLICY_DIR)/
	@$(TOOLS)/opa test $(POLICY_DIR)/ --coverage --threshold 100 > $(BIN)/.policy-coverage.json \
		|| { echo "opa test --coverage: below 100 % (details: $(BIN)/.policy-coverage.json)"; exit 1; }
	@echo "policies: coverage 100 %"

bench-policies:
	@mkdir -p bench-results
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchtime $(POLICY_BENCHTIME) ./exporter/authz/ | tee bench-results/policies.txt

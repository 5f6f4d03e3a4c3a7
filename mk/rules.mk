# Rules and alerting checks: the rule files load in vmalert, every vmalert-tool unit test passes,
# and the Alertmanager config is valid and routes each test case to the expected receivers. The
# same rules are held to Prometheus by rules/*_test.go in `go test` (Prometheus's rule-file and
# PromQL parsers, and every unit test of rules/tests under promtool).
RULE_FILES := $(sort $(wildcard rules/*.yml))
RULE_TESTS := $(sort $(wildcard rules/tests/*_test.yml))

.PHONY: test-rules
test: test-rules

test-rules: tools ## vmalert -dryRun, vmalert-tool unittest, amtool check-config + route tests
	$(TOOLS)/vmalert -dryRun -loggerLevel=WARN $(addprefix -rule=,$(RULE_FILES))
	$(TOOLS)/vmalert-tool unittest -loggerLevel=ERROR $(addprefix --files=,$(RULE_TESTS))
	deploy/alertmanager/routes_test.sh $(TOOLS)/amtool

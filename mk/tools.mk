# Pinned third-party servers and tools, installed by Go alone into $(TOOLS).
#
# Each tool is resolved on its own module graph (`go install MODULE/PATH@VERSION`), so it cannot
# clash with the project's dependencies. A stamp file per tool and version records that the
# install happened; a binary that already carries the pinned module version (checked with
# `go version -m`) is adopted without rebuilding, and a missing binary forces a reinstall.

VM_VERSION     := v1.151.0
AM_VERSION     := v0.31.1
OPA_VERSION    := v1.22.3
STATSD_VERSION := v0.31.0
STATICCHECK_VERSION := v0.8.2
# promtool checks that the rules also run on Prometheus (rules/promtool_test.go); it takes about
# 5 minutes to build.
PROMETHEUS_VERSION := v0.316.0
# oapi-codegen generates the Go client of the OpenAPI document (exporter/api/openapi/usageapi).
OAPI_CODEGEN_VERSION := v2.8.2
# NATS JetStream: the replicated log of cluster mode (docs/cluster.md).
NATS_VERSION   := v2.15.3
STRIPE_MOCK_VERSION := v0.203.0
# mailpit: an SMTP server with an HTTP API, for the notification tests and the local stack.
MAILPIT_VERSION := v1.33.1

TOOL_STAMPS_DIR := $(TOOLS)/.stamps
TOOL_STAMPS :=

# tool_template: $(1) binary name, $(2) module, $(3) package path, $(4) version.
define tool_template
TOOL_STAMPS += $(TOOL_STAMPS_DIR)/$(1)@$(4)
$(TOOL_STAMPS_DIR)/$(1)@$(4): $(if $(wildcard $(TOOLS)/$(1)),,tools-force)
	@mkdir -p $(TOOL_STAMPS_DIR)
	@if $(GO) version -m $(TOOLS)/$(1) 2>/dev/null | grep -qE '^[[:space:]]+mod[[:space:]]+$(2)[[:space:]]+$(4)([[:space:]]|$$$$)'; then \
		echo "tools: $(1) $(4) already installed"; \
	else \
		echo "tools: installing $(3)@$(4)"; \
		GOBIN=$(TOOLS) $(GO) install $(3)@$(4); \
	fi
	@rm -f $(TOOL_STAMPS_DIR)/$(1)@*
	@touch $$@
endef

$(eval $(call tool_template,victoria-metrics,github.com/VictoriaMetrics/VictoriaMetrics,github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics,$(VM_VERSION)))
$(eval $(call tool_template,vmalert,github.com/VictoriaMetrics/VictoriaMetrics,github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert,$(VM_VERSION)))
$(eval $(call tool_template,vmalert-tool,github.com/VictoriaMetrics/VictoriaMetrics,github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert-tool,$(VM_VERSION)))
$(eval $(call tool_template,alertmanager,github.com/prometheus/alertmanager,github.com/prometheus/alertmanager/cmd/alertmanager,$(AM_VERSION)))
$(eval $(call tool_template,amtool,github.com/prometheus/alertmanager,github.com/prometheus/alertmanager/cmd/amtool,$(AM_VERSION)))
$(eval $(call tool_template,opa,github.com/open-policy-agent/opa,github.com/open-policy-agent/opa,$(OPA_VERSION)))
$(eval $(call tool_template,statsd_exporter,github.com/prometheus/statsd_exporter,github.com/prometheus/statsd_exporter,$(STATSD_VERSION)))
$(eval $(call tool_template,promtool,github.com/prometheus/prometheus,github.com/prometheus/prometheus/cmd/promtool,$(PROMETHEUS_VERSION)))
$(eval $(call tool_template,oapi-codegen,github.com/oapi-codegen/oapi-codegen/v2,github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen,$(OAPI_CODEGEN_VERSION)))
$(eval $(call tool_template,nats-server,github.com/nats-io/nats-server/v2,github.com/nats-io/nats-server/v2,$(NATS_VERSION)))
$(eval $(call tool_template,stripe-mock,github.com/stripe/stripe-mock,github.com/stripe/stripe-mock,$(STRIPE_MOCK_VERSION)))
$(eval $(call tool_template,mailpit,github.com/axllent/mailpit,github.com/axllent/mailpit,$(MAILPIT_VERSION)))
$(eval $(call tool_template,staticcheck,honnef.co/go/tools,honnef.co/go/tools/cmd/staticcheck,$(STATICCHECK_VERSION)))

.PHONY: tools tools-force
tools: $(TOOL_STAMPS) ## the pinned third-party tools, into bin/tools

# Forces a stamp to rebuild when its binary is missing.
tools-force:

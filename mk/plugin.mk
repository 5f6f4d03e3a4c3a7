# Grafana datasource plugin (plugin/): Go backend, TypeScript frontend.
#
# plugin-build: plugin/dist/ as Grafana loads it: gpx_usagemeter_<os>_<arch> for linux and darwin,
#   amd64 and arm64 (static, CGO off), plugin.json (version and date filled in), module.js
#   (esbuild, @grafana/*, react and react-dom external), the logo.
# test-plugin-frontend: type check and the frontend unit tests (vitest). The Go tests, golden
#   frames, gRPC and the go-plugin end-to-end test, run with every Go test (`go-test`).
# bench-plugin: QueryData latency per query type over 1,000 tenants and 30 days, and a CSV export
#   of over a million rows (time and peak memory); results in bench-results/plugin.txt.

PLUGIN_DIR      := plugin
PLUGIN_DIST     := $(PLUGIN_DIR)/dist
PLUGIN_EXE      := gpx_usagemeter
PLUGIN_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
PLUGIN_VERSION  := $(shell sed -n 's/^  "version": "\(.*\)",/\1/p' $(PLUGIN_DIR)/package.json)
PLUGIN_BENCHTIME ?= 30x

.PHONY: plugin-build plugin-backend plugin-frontend plugin-node-modules test-plugin-frontend bench-plugin
build: plugin-build
test: test-plugin-frontend
bench: bench-plugin

plugin-build: plugin-backend plugin-frontend ## the Grafana plugin into plugin/dist
	sed -e 's/%VERSION%/$(PLUGIN_VERSION)/' -e "s/%TODAY%/$$(date -u +%Y-%m-%d)/" $(PLUGIN_DIR)/src/plugin.json > $(PLUGIN_DIST)/plugin.json

plugin-backend:
	@mkdir -p $(PLUGIN_DIST)
	@for p in $(PLUGIN_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		echo "plugin: $(PLUGIN_EXE)_$${os}_$${arch}"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w" \
			-o $(PLUGIN_DIST)/$(PLUGIN_EXE)_$${os}_$${arch} ./$(PLUGIN_DIR)/pkg || exit 1; \
	done

# npm ci only when node_modules is missing or older than the lock file.
$(PLUGIN_DIR)/node_modules/.package-lock.json: $(PLUGIN_DIR)/package-lock.json
	cd $(PLUGIN_DIR) && npm ci --no-audit --no-fund
	@touch $@

plugin-node-modules: $(PLUGIN_DIR)/node_modules/.package-lock.json

plugin-frontend: plugin-node-modules
	cd $(PLUGIN_DIR) && node esbuild.config.mjs

test-plugin-frontend: plugin-node-modules ## frontend type check and unit tests
	cd $(PLUGIN_DIR) && npx tsc --noEmit && npx vitest run

bench-plugin: tools
	@mkdir -p bench-results
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchtime $(PLUGIN_BENCHTIME) -timeout 60m ./$(PLUGIN_DIR)/pkg/usagemeter/ \
		| tee bench-results/plugin.txt | grep -E '^(Benchmark|ok|FAIL|---)'

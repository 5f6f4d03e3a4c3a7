# usagemeter: see README.md. `make run` starts the local stack, `make test` runs every test.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TOOLS := $(BIN)/tools
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown) \
	-X github.com/prometheus/common/version.Branch=main

.DEFAULT_GOAL := build
.PHONY: openapi build build-go test run bench bench-ingest bench-ingest-vs bench-ledger bench-engines bench-cloudevents bench-soak bench-notify lint go-test

build: build-go ## usage-exporter and usagectl into ./bin, the Grafana plugin into ./plugin/dist

build-go: ## usage-exporter and usagectl into ./bin
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/usage-exporter ./cmd/usagectl

openapi: tools ## regenerate the OpenAPI document (exporter/api/openapi/openapi.json) and its Go client
	$(GO) test ./exporter/api/openapi/spec -run TestCommittedDocumentIsCurrent -update
	cd exporter/api/openapi/usageapi && $(TOOLS)/oapi-codegen -config oapi-codegen.yaml ../openapi.json

# Area fragments: each adds its own prerequisites to test, bench and build.
include $(sort $(wildcard mk/*.mk))

bench: bench-ingest bench-ledger bench-engines bench-cloudevents ## the benchmarks, printing one summary table
	@echo
	@$(GO) run ./bench/summary

bench-ingest: build-go tools
	@mkdir -p bench-results
	$(GO) run ./bench/ingest -out bench-results/ingest.tsv

BASE ?= HEAD~1
bench-ingest-vs: build-go ## the ingest load on this exporter and on the one of git revision BASE at once: their CPU per event and its ratio
	@rm -rf $(BIN)/baseline && mkdir -p $(BIN)/baseline/src bench-results
	git archive $(BASE) | tar -x -C $(BIN)/baseline/src
	cd $(BIN)/baseline/src && $(GO) build -o ../usage-exporter ./cmd/usage-exporter
	$(GO) run ./bench/ingest -baseline $(BIN)/baseline/usage-exporter -out bench-results/ingest-vs.tsv

# Not in `make bench`: it runs for 30 minutes. SOAK=5m for a short trial.
SOAK ?= 30m
bench-soak: build-go ## half the measured peak ingest rate for $(SOAK); fails if RSS or ack latency p99 keep growing
	@mkdir -p bench-results
	$(GO) run ./bench/soak -duration $(SOAK) -out bench-results/soak.tsv

bench-ledger:
	@mkdir -p bench-results
	set -o pipefail; { $(GO) test -run '^$$' -bench . -benchtime 100x ./exporter/ledger/ && \
		$(GO) test -run '^$$' -bench . -benchtime 2s ./exporter/event/; } | tee bench-results/ledger.txt

bench-cloudevents: ## the official CloudEvents SDK against the exporter, binary mode vs structured mode in the same run
	@mkdir -p bench-results
	set -o pipefail; $(GO) test -run '^$$' -bench SDKIngest -benchtime 1000x ./exporter/server/ | tee bench-results/cloudevents.txt

bench-notify: ## notification dispatcher throughput: signed webhooks to a local verifying receiver, outcomes synced
	@mkdir -p bench-results
	set -o pipefail; $(GO) test -run '^$$' -bench Dispatch -benchtime 2000x ./notify/ | tee bench-results/notify.txt

bench-engines: ## the ledger's write path on Pebble and on SQLite, same batches, same run
	@mkdir -p bench-results
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchtime 50x ./bench/enginecmp/ | tee bench-results/engines.txt

# The Go tests need the binaries of the end-to-end tests, not the plugin's cross builds (its
# go-plugin test builds the binary it launches).
go-test: build-go tools
	PATH=$(TOOLS):$$PATH $(GO) test -count=1 ./...

test: lint go-test ## every test the project has

lint: tools
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files -o --exclude-standard '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(TOOLS)/staticcheck ./...

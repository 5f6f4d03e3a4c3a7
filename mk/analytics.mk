# Analytics and reports (analytics/). Their tests run with every Go test (`go-test`); this fragment
# adds the benchmark: a full usage report (every meter, every tenant, by month and by day) over
# 1,000 tenants and a year of history (1,000,000 simulator events loaded through the ledger's
# Commit path, then flushed and compacted). Target: the monthly report under 5 s (ns/op < 5e9).
# The history is loaded once per run (about a minute); ANALYTICS_BENCH_EVENTS and
# ANALYTICS_BENCH_TENANTS change its size. Results go to bench-results/analytics.txt.

ANALYTICS_BENCHTIME ?= 3x

.PHONY: bench-analytics
bench: bench-analytics

bench-analytics: ## analytics: usage report, 1,000 tenants × a year (target < 5 s/op)
	@mkdir -p bench-results
	set -o pipefail; $(GO) test -run '^$$' -bench 'BenchmarkUsageReport' -benchtime $(ANALYTICS_BENCHTIME) -timeout 60m \
		./analytics/analyticsbench/ | tee bench-results/analytics.txt | grep -E '^(Benchmark|ok|FAIL)'

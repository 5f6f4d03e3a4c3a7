# bench-quota: POST /v1/quota/check with the tenant's limit alone and with the limits of a user,
# a feature or both (read exactly from the month's rollups), same store, same run: p50 and p99
# next to ns/op (docs/quotas.md). Results go to bench-results/quota.txt.

QUOTA_BENCHTIME ?= 3s

.PHONY: bench-quota
bench: bench-quota

bench-quota:
	@mkdir -p bench-results
	set -o pipefail; $(GO) test -run '^$$' -bench 'BenchmarkQuotaCheck' -benchtime $(QUOTA_BENCHTIME) ./exporter/server/ \
		| tee bench-results/quota.txt | grep -E '^(Benchmark|ok|FAIL)'

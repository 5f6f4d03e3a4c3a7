#!/usr/bin/env bash
# Checks alertmanager.yml with amtool: the config is valid, and every case in routes_test.cases
# reaches exactly the receivers it names. Fails on the first invalid config or any mismatch.
# Usage: routes_test.sh [path/to/amtool]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
amtool=${1:-amtool}
config="$here/alertmanager.yml"

"$amtool" check-config "$config"

failed=0 n=0
while read -r want labels; do
	[[ -z "$want" || "$want" == \#* ]] && continue
	n=$((n + 1))
	# shellcheck disable=SC2086 # labels are separate arguments on purpose
	if ! got=$("$amtool" config routes test --config.file="$config" --verify.receivers="$want" $labels 2>&1); then
		echo "FAIL: {$labels}: want $want, got: $got" >&2
		failed=$((failed + 1))
	fi
done <"$here/routes_test.cases"

if ((n == 0)); then
	echo "no routing cases found in routes_test.cases" >&2
	exit 1
fi
echo "routes: $((n - failed))/$n cases pass"
((failed == 0))

// Package quotastate says what state a quota is in. It is the one definition the exporter's
// quota checks and /v1/quotas and the Grafana plugin's all-tenant summary share, and the one the
// alerting rules (rules/quota.yml: UsageQuotaExceeded at a ratio above 1, UsageQuotaWarning at
// the warning ratio of a positive limit) are written to match. It depends on nothing, so that
// every part can use it.
package quotastate

// States of a quota.
const (
	OK       = "ok"
	Warning  = "warning"
	Exceeded = "exceeded"
)

// ZeroLimitRatio is the ratio reported for usage against a zero limit: exceeded whatever the
// usage.
const ZeroLimitRatio = 1e9

// Of returns a quota's state and the share of its limit used. It is exceeded when usage is past
// the limit (any usage of a zero limit included), warning when a positive limit is used at or
// past warningRatio, and ok otherwise: usage exactly at the limit is a warning, not a breach.
func Of(used, limit int64, warningRatio float64) (state string, ratio float64) {
	switch {
	case limit > 0:
		ratio = float64(used) / float64(limit)
	case used > 0:
		ratio = ZeroLimitRatio
	}
	switch {
	case used > limit:
		return Exceeded, ratio
	case limit > 0 && ratio >= warningRatio:
		return Warning, ratio
	}
	return OK, ratio
}

package usagemeter

import (
	"fmt"
	"sort"
	"strings"
)

// meterMetric is how a default meter is exposed to VictoriaMetrics (exporter/meter/defaults.go).
type meterMetric struct {
	Metric   string
	Flow     bool   // a counter: plot increases; else a gauge: plot levels
	Unit     string // Grafana unit
	Selector string // extra label matchers
}

var meterMetrics = map[string]meterMetric{
	"documents":         {Metric: "usage_documents", Unit: "short"},
	"document_bytes":    {Metric: "usage_document_bytes", Unit: "bytes"},
	"documents_created": {Metric: "usage_documents_created_total", Flow: true, Unit: "short"},
	"storage_bytes":     {Metric: "usage_storage_bytes", Unit: "bytes"},
	"ai_tokens":         {Metric: "usage_ai_tokens_total", Flow: true, Unit: "short"},
	"ai_requests":       {Metric: "usage_ai_requests_total", Flow: true, Unit: "short"},
	"ingest_bytes":      {Metric: "usage_ingest_bytes_total", Flow: true, Unit: "bytes"},
	"ingest_records":    {Metric: "usage_ingest_records_total", Flow: true, Unit: "short"},
	"ingest_jobs":       {Metric: "usage_ingest_jobs_total", Flow: true, Unit: "short"},
	"logins":            {Metric: "usage_user_logins_total", Flow: true, Unit: "short"},
	"session_seconds":   {Metric: "usage_user_session_seconds_total", Flow: true, Unit: "s"},
	"feature_uses":      {Metric: "usage_feature_uses_total", Flow: true, Unit: "short"},
	"active_users":      {Metric: "usage_active_users", Unit: "short", Selector: `window="1d"`},
}

func lookupMeter(name string) (meterMetric, error) {
	if name == "" {
		name = "ai_tokens"
	}
	m, ok := meterMetrics[name]
	if !ok {
		names := make([]string, 0, len(meterMetrics))
		for k := range meterMetrics {
			names = append(names, k)
		}
		sort.Strings(names)
		return m, &QueryError{"meter", fmt.Sprintf("%q has no VictoriaMetrics series; want one of %s", name, strings.Join(names, ", "))}
	}
	return m, nil
}

// selector renders {tenant="t",extra} for a metric; tenant "" selects every tenant.
func (m meterMetric) selector(tenant string) string {
	var parts []string
	if tenant != "" {
		parts = append(parts, fmt.Sprintf("tenant=%q", tenant))
	}
	if m.Selector != "" {
		parts = append(parts, m.Selector)
	}
	return m.Metric + "{" + strings.Join(parts, ",") + "}"
}

// labelName accepts a Prometheus label name for group by (never interpolate anything else).
func labelName(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return "", &QueryError{"groupBy", fmt.Sprintf("%q is not a label name", s)}
		}
	}
	return s, nil
}

// perUserLabel reports whether grouping by the label yields a series per user: the exporter's
// per-user label (exporter/collector, metrics.per_user_labels). Such a query needs
// usage.read_users, whoever asks.
func perUserLabel(name string) bool {
	return name == "user"
}

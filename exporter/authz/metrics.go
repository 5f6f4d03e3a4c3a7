package authz

import "github.com/prometheus/client_golang/prometheus"

var (
	reloadOKDesc = prometheus.NewDesc("usage_exporter_policy_last_reload_successful",
		"Whether the last attempt to load the policies succeeded (1) or left the previous set in force (0).", nil, nil)
	reloadTimeDesc = prometheus.NewDesc("usage_exporter_policy_last_reload_success_timestamp_seconds",
		"When the policies in force were loaded.", nil, nil)
	reloadFailDesc = prometheus.NewDesc("usage_exporter_policy_reload_failures_total",
		"Policy loads that failed.", nil, nil)
)

// Describe implements prometheus.Collector: register the Engine to export its reload state.
func (e *Engine) Describe(ch chan<- *prometheus.Desc) {
	ch <- reloadOKDesc
	ch <- reloadTimeDesc
	ch <- reloadFailDesc
}

// Collect implements prometheus.Collector.
func (e *Engine) Collect(ch chan<- prometheus.Metric) {
	loadedAt, lastErr := e.Status()
	ok := 1.0
	if lastErr != nil {
		ok = 0
	}
	ch <- prometheus.MustNewConstMetric(reloadOKDesc, prometheus.GaugeValue, ok)
	ch <- prometheus.MustNewConstMetric(reloadTimeDesc, prometheus.GaugeValue, float64(loadedAt.UnixNano())/1e9)
	ch <- prometheus.MustNewConstMetric(reloadFailDesc, prometheus.CounterValue, float64(e.failures.Load()))
}

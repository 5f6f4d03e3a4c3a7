package api

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SelfMetrics are the exporter's own metrics (prefix usage_exporter_).
type SelfMetrics struct {
	Received, Accepted, Duplicates prometheus.Counter
	Rejected                       *prometheus.CounterVec
	CommitDuration                 prometheus.Histogram
	CommitEvents                   prometheus.Histogram
	ReloadSuccess, ReloadTime      prometheus.Gauge
}

// NewSelfMetrics registers the exporter's own metrics with reg.
func NewSelfMetrics(reg prometheus.Registerer, storeSize func() float64) *SelfMetrics {
	m := &SelfMetrics{
		Received: prometheus.NewCounter(prometheus.CounterOpts{Name: "usage_exporter_events_received_total",
			Help: "Events received in requests that could be decoded."}),
		Accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "usage_exporter_events_accepted_total",
			Help: "Events stored for the first time."}),
		Duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "usage_exporter_events_duplicates_total",
			Help: "Events acknowledged as duplicates of events stored before (same source and id)."}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "usage_exporter_events_rejected_total",
			Help: "Events refused, by reason; a request refused before its events could be counted counts once."}, []string{"reason"}),
		CommitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "usage_exporter_commit_duration_seconds",
			Help:    "Time to durably commit a group of requests (one fsync).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		CommitEvents: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "usage_exporter_commit_batch_events",
			Help:    "Events per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
		ReloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "usage_exporter_config_last_reload_successful",
			Help: "Whether the last configuration reload succeeded."}),
		ReloadTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "usage_exporter_config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful configuration reload."}),
	}
	for _, r := range []string{"malformed", "invalid", "too_old", "too_new", "body_too_large", "body_timeout", "batch_too_large", "unsupported_media_type", "store_error", "insufficient_storage", "store_failed"} {
		m.Rejected.WithLabelValues(r)
	}
	reg.MustRegister(m.Received, m.Accepted, m.Duplicates, m.Rejected, m.CommitDuration, m.CommitEvents, m.ReloadSuccess, m.ReloadTime,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "usage_exporter_store_size_bytes", Help: "Disk space used by the embedded store."}, storeSize))
	m.ReloadSuccess.Set(1)
	m.ReloadTime.SetToCurrentTime()
	return m
}

// ObserveCommit is the ledger's OnCommit hook.
func (m *SelfMetrics) ObserveCommit(d time.Duration, events int) {
	m.CommitDuration.Observe(d.Seconds())
	m.CommitEvents.Observe(float64(events))
}

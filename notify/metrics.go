package notify

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the notification pipeline's own metrics.
type Metrics struct {
	events   *prometheus.CounterVec
	attempts *prometheus.CounterVec
	terminal *prometheus.CounterVec
	pending  prometheus.Gauge
	latency  *prometheus.HistogramVec
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "usage_exporter_notification_events_total",
			Help: "Notification events written to the outbox (once per rule and period), by condition."}, []string{"condition"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "usage_exporter_notification_delivery_attempts_total",
			Help: "Delivery attempts, by channel and result (sent, failed)."}, []string{"channel", "result"}),
		terminal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "usage_exporter_notification_deliveries_total",
			Help: "Deliveries finished, by channel and state (delivered, dead, cancelled: an escalation tier acknowledged before it was due)."}, []string{"channel", "state"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "usage_exporter_notification_deliveries_pending",
			Help: "Deliveries waiting to be sent or retried."}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "usage_exporter_notification_delivery_latency_seconds",
			Help:    "From the condition being detected to the delivery succeeding, by channel.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400}}, []string{"channel"}),
	}
	reg.MustRegister(m.events, m.attempts, m.terminal, m.pending, m.latency)
	for _, ch := range []string{ChannelWebhook, ChannelEmail} {
		m.attempts.WithLabelValues(ch, "sent")
		m.attempts.WithLabelValues(ch, "failed")
		m.terminal.WithLabelValues(ch, StateDelivered)
		m.terminal.WithLabelValues(ch, StateDead)
		m.terminal.WithLabelValues(ch, StateCancelled)
	}
	return m
}

// Event counts an event written.
func (m *Metrics) Event(kind string) { m.events.WithLabelValues(kind).Inc() }

func (m *Metrics) observe(channel, state string, ok bool, sinceEvent time.Duration) {
	result := "failed"
	if ok {
		result = "sent"
		m.latency.WithLabelValues(channel).Observe(sinceEvent.Seconds())
	}
	m.attempts.WithLabelValues(channel, result).Inc()
	if state != StatePending {
		m.terminal.WithLabelValues(channel, state).Inc()
	}
}

func (m *Metrics) observeCancelled(channel string) {
	m.terminal.WithLabelValues(channel, StateCancelled).Inc()
}

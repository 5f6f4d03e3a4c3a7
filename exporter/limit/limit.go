// Package limit bounds what clients can make the exporter hold: open connections (with the
// oldest idle keep-alive connection reclaimed at the limit), requests served at once overall
// (503) and per credential (429). Rejections answer at once, as RFC 9457 problems with
// Retry-After; nothing waits in a queue, so an overload costs no memory.
package limit

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limit names, the values of the limit label of usage_exporter_http_limit_rejections_total.
const (
	Connections               = "connections"
	RequestsInFlight          = "requests_in_flight"
	RequestsInFlightPerCaller = "requests_in_flight_per_credential"
)

// Metrics are the limits' self-metrics; one set serves the connection and request limits.
type Metrics struct {
	rejections *prometheus.CounterVec
	limits     *prometheus.GaugeVec
	reclaimed  prometheus.Counter
	collectors []prometheus.Collector

	logger *slog.Logger
	warn   map[string]*throttle
}

// NewMetrics returns the limits' metrics; register them with Register. Warnings about limits
// being hit go to logger, at most one a minute per limit.
func NewMetrics(logger *slog.Logger) *Metrics {
	if logger == nil {
		logger = slog.Default()
	}
	m := &Metrics{
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usage_exporter_http_limit_rejections_total",
			Help: "Connections and requests refused because a limit was reached, by limit (connections: closed at accept; requests_in_flight: 503; requests_in_flight_per_credential: 429).",
		}, []string{"limit"}),
		limits: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "usage_exporter_http_limit",
			Help: "The configured value of each HTTP limit (http section of the config file).",
		}, []string{"limit"}),
		reclaimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usage_exporter_http_connections_reclaimed_total",
			Help: "Idle keep-alive connections closed to make room for a new connection at http.max_connections.",
		}),
		logger: logger,
		warn:   map[string]*throttle{},
	}
	for _, l := range []string{Connections, RequestsInFlight, RequestsInFlightPerCaller} {
		m.rejections.WithLabelValues(l)
		m.warn[l] = &throttle{every: time.Minute}
	}
	m.collectors = []prometheus.Collector{m.rejections, m.limits, m.reclaimed}
	return m
}

// Register registers every metric with reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Metrics) add(c prometheus.Collector) { m.collectors = append(m.collectors, c) }

// reject counts a refusal and tells the operator, without flooding the log.
func (m *Metrics) reject(limit string, max int, attrs ...any) {
	m.rejections.WithLabelValues(limit).Inc()
	if n, ok := m.warn[limit].tick(time.Now()); ok {
		m.logger.Warn("limit reached: refusing connections or requests; raise it in the config's http section if the load is legitimate",
			append([]any{"limit", limit, "max", max, "refused_since_last_warning", n}, attrs...)...)
	}
}

// throttle lets one event through per period and counts the others.
type throttle struct {
	every time.Duration

	mu      sync.Mutex
	last    time.Time
	skipped int
}

// tick reports whether to act now, and how many ticks (this one included) happened since the
// last time it said so.
func (t *throttle) tick(now time.Time) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.skipped++
	if !t.last.IsZero() && now.Sub(t.last) < t.every {
		return 0, false
	}
	n := t.skipped
	t.last, t.skipped = now, 0
	return n, true
}

// Package collector exposes the ledger's totals as Prometheus metrics. Values are read from the
// durable totals at scrape time (const metrics), so counters never reset when the exporter
// restarts, and a series cap folds label sets past it into one __overflow__ series.
package collector

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Overflow is the label value of series folded past the cap.
const Overflow = "__overflow__"

type metricDesc struct {
	desc      *prometheus.Desc
	valueType prometheus.ValueType
	def       *meter.Def
	windows   []time.Duration
}

// Usage collects the usage_* metrics of every meter that declares one.
type Usage struct {
	store    *ledger.Store
	metrics  map[string]*metricDesc // by meter name
	series   *prometheus.Desc
	overflow *prometheus.Desc
	now      func() time.Time
}

// NewUsage builds the collector for the store's meters.
func NewUsage(store *ledger.Store) *Usage {
	u := &Usage{
		store:   store,
		metrics: map[string]*metricDesc{},
		now:     time.Now,
		series: prometheus.NewDesc("usage_exporter_series", "Series of each usage metric, admitted under the series cap.",
			[]string{"metric"}, nil),
		overflow: prometheus.NewDesc("usage_exporter_series_overflow_total", "Label sets folded into the __overflow__ series of a metric because its series cap was reached.",
			[]string{"metric"}, nil),
	}
	for _, d := range store.Meters() {
		if d.Metric == nil {
			continue
		}
		def := d
		md := &metricDesc{def: &def, valueType: prometheus.GaugeValue}
		if d.Metric.Type == "counter" {
			md.valueType = prometheus.CounterValue
		}
		labels := append([]string{"tenant"}, d.Metric.Labels...)
		if d.Aggregation == meter.UniqueCount {
			labels = []string{"tenant", "window"}
			for _, w := range d.Metric.Windows {
				md.windows = append(md.windows, parseWindow(w))
			}
		}
		help := d.Metric.Help
		if help == "" {
			help = d.Description
		}
		md.desc = prometheus.NewDesc(d.Metric.Name, help, labels, nil)
		u.metrics[d.Name] = md
	}
	return u
}

func parseWindow(w string) time.Duration {
	n, _ := strconv.Atoi(w[:len(w)-1])
	if strings.HasSuffix(w, "d") {
		return time.Duration(n) * 24 * time.Hour
	}
	return time.Duration(n) * time.Hour
}

// Describe sends every metric's description.
func (u *Usage) Describe(ch chan<- *prometheus.Desc) {
	for _, md := range u.metrics {
		ch <- md.desc
	}
	ch <- u.series
	ch <- u.overflow
}

// Collect builds const metrics from the ledger's totals.
func (u *Usage) Collect(ch chan<- prometheus.Metric) {
	type fold struct {
		md  *metricDesc
		sum float64
	}
	folded := map[string]*fold{}
	admitted := map[string]int{}
	var values []string
	u.store.SeriesSnapshot(func(s *ledger.Series) {
		md := u.metrics[s.Meter.Name]
		if md == nil || md.windows != nil {
			return
		}
		if !s.Admitted {
			f := folded[s.Meter.Name]
			if f == nil {
				f = &fold{md: md}
				folded[s.Meter.Name] = f
			}
			f.sum += float64(s.State.Value)
			return
		}
		admitted[s.Meter.Metric.Name]++
		values = append(values[:0], s.Tenant)
		values = append(values, s.Labels...)
		ch <- prometheus.MustNewConstMetric(md.desc, md.valueType, float64(s.State.Value), values...)
	})
	for _, f := range folded {
		labels := make([]string, 1+len(f.md.def.Metric.Labels))
		for i := range labels {
			labels[i] = Overflow
		}
		ch <- prometheus.MustNewConstMetric(f.md.desc, f.md.valueType, f.sum, labels...)
	}
	now := u.now()
	for name, md := range u.metrics {
		if md.windows == nil {
			continue
		}
		cutoffs := make([]int64, len(md.windows))
		for i, w := range md.windows {
			cutoffs[i] = now.Add(-w).UnixNano()
		}
		for tenant, counts := range u.store.ActiveCounts(name, cutoffs) {
			for i, c := range counts {
				ch <- prometheus.MustNewConstMetric(md.desc, prometheus.GaugeValue, float64(c), tenant, md.def.Metric.Windows[i])
			}
			admitted[md.def.Metric.Name]++
		}
	}
	overflow := u.store.Folded()
	for _, md := range u.metrics {
		name := md.def.Metric.Name
		ch <- prometheus.MustNewConstMetric(u.series, prometheus.GaugeValue, float64(admitted[name]), name)
		ch <- prometheus.MustNewConstMetric(u.overflow, prometheus.CounterValue, float64(overflow[name]), name)
	}
}

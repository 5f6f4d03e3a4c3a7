package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// Storage exposes the free space of the store's filesystem and whether the store accepts
// writes, read from the store at each scrape, so that an alert can warn before the reserve is
// reached (rules/storage.yml).
type Storage struct {
	Space func() ledger.SpaceStatus
	// Corruptions is how many times damage was found in the store's files (a failed checksum).
	Corruptions func() int64
}

var (
	storageFreeDesc = prometheus.NewDesc("usage_exporter_storage_free_bytes",
		"Space available to the exporter on the filesystem of --storage.path.", nil, nil)
	storageSizeDesc = prometheus.NewDesc("usage_exporter_storage_filesystem_size_bytes",
		"Size of the filesystem of --storage.path.", nil, nil)
	storageMinFreeDesc = prometheus.NewDesc("usage_exporter_storage_min_free_bytes",
		"Free space kept in reserve: writes that would leave less are refused with 507 (--storage.min-free-bytes).", nil, nil)
	storageWritableDesc = prometheus.NewDesc("usage_exporter_storage_writable",
		"1 while the store accepts writes; 0 while it refuses them, for the reason labelled (insufficient_storage, write_failed).", []string{"reason"}, nil)
	storageCorruptionsDesc = prometheus.NewDesc("usage_exporter_storage_corruptions_total",
		"Times damage was found in the store's files (a failed checksum) since the exporter started: the reads that met it failed.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c Storage) Describe(ch chan<- *prometheus.Desc) {
	ch <- storageFreeDesc
	ch <- storageSizeDesc
	ch <- storageMinFreeDesc
	ch <- storageWritableDesc
	ch <- storageCorruptionsDesc
}

// Collect implements prometheus.Collector.
func (c Storage) Collect(ch chan<- prometheus.Metric) {
	st := c.Space()
	if st.FreeBytes >= 0 {
		ch <- prometheus.MustNewConstMetric(storageFreeDesc, prometheus.GaugeValue, float64(st.FreeBytes))
		ch <- prometheus.MustNewConstMetric(storageSizeDesc, prometheus.GaugeValue, float64(st.SizeBytes))
	}
	ch <- prometheus.MustNewConstMetric(storageMinFreeDesc, prometheus.GaugeValue, float64(max(st.MinFreeBytes, 0)))
	writable := 0.0
	if st.Writable {
		writable = 1
	}
	ch <- prometheus.MustNewConstMetric(storageWritableDesc, prometheus.GaugeValue, writable, st.Reason)
	if c.Corruptions != nil {
		ch <- prometheus.MustNewConstMetric(storageCorruptionsDesc, prometheus.CounterValue, float64(c.Corruptions()))
	}
}

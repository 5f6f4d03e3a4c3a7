package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// Take checkpoints the store and streams a backup of the checkpoint to w (the store keeps
// taking commits meanwhile; only the checkpoint itself holds them back).
func Take(ctx context.Context, s *ledger.Store, w io.Writer, key []byte, progress Progress) (Manifest, error) {
	dir, info, err := s.Checkpoint(ctx)
	if err != nil {
		return Manifest{}, err
	}
	defer ledger.RemoveCheckpoint(dir)
	return Write(ctx, w, dir, info, key, progress)
}

// ErrorTrailer is the HTTP trailer that carries the reason a backup stream failed after its
// status was sent. The stream then also lacks its manifest, so the partial file is refused.
const ErrorTrailer = "Usagemeter-Backup-Error"

// Handler serves POST /v1/admin/backup: the exporter's store as a backup stream.
type Handler struct {
	Store *ledger.Store
	// Key seals backups (the archive key); nil writes them unencrypted.
	Key []byte
	Log *slog.Logger

	backups     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	lastBytes   prometheus.Gauge
}

// NewHandler builds the handler and its metrics.
func NewHandler(s *ledger.Store, key []byte, log *slog.Logger) *Handler {
	return &Handler{Store: s, Key: key, Log: log,
		backups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "usage_exporter_backups_total",
			Help: "Backups streamed by POST /v1/admin/backup, by result (success, failure).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "usage_exporter_backup_last_success_timestamp_seconds",
			Help: "When the last successful backup finished (0: none since the exporter started).",
		}),
		lastBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "usage_exporter_backup_last_size_bytes",
			Help: "Store bytes in the last successful backup.",
		}),
	}
}

// Routes are the backup's endpoints (an admin action: authorised by the policies, audited).
func (h *Handler) Routes() []route.Route {
	return []route.Route{{Method: http.MethodPost, Pattern: "/v1/admin/backup", Action: route.ActionAdmin, Audit: true, Streams: true, Handler: h.serve}}
}

// Describe implements prometheus.Collector.
func (h *Handler) Describe(ch chan<- *prometheus.Desc) {
	h.backups.Describe(ch)
	h.lastSuccess.Describe(ch)
	h.lastBytes.Describe(ch)
}

// Collect implements prometheus.Collector.
func (h *Handler) Collect(ch chan<- prometheus.Metric) {
	h.backups.Collect(ch)
	h.lastSuccess.Collect(ch)
	h.lastBytes.Collect(ch)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	start := time.Now()
	dir, info, err := h.Store.Checkpoint(ctx)
	if err != nil {
		h.backups.WithLabelValues("failure").Inc()
		h.Log.Error("backup failed", "err", err)
		status := http.StatusInternalServerError
		if errors.Is(err, ledger.ErrClosed) {
			status = http.StatusServiceUnavailable
		}
		problem.Error(w, status, "backup failed: "+err.Error())
		return
	}
	defer ledger.RemoveCheckpoint(dir)
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "usagemeter-"+start.UTC().Format("20060102T150405Z")+Extension))
	w.Header().Set("Trailer", ErrorTrailer)
	w.WriteHeader(http.StatusOK)
	h.Log.Info("backup started", "events", info.Events, "last_group", info.LastGroup, "encrypted", h.Key != nil,
		"took", time.Since(start).Round(time.Millisecond))
	m, err := Write(ctx, w, dir, info, h.Key, func(n int64) { h.Log.Debug("backup progress", "bytes", n) })
	if err != nil {
		h.backups.WithLabelValues("failure").Inc()
		h.Log.Error("backup stream failed", "err", err)
		w.Header().Set(ErrorTrailer, err.Error())
		return
	}
	h.backups.WithLabelValues("success").Inc()
	h.lastSuccess.SetToCurrentTime()
	h.lastBytes.Set(float64(m.Bytes))
	h.Log.Info("backup done", "files", len(m.Files), "bytes", m.Bytes, "events", m.Events, "took", time.Since(start).Round(time.Millisecond))
}

// Package usagemeter is the Grafana backend datasource for usagemeter: panel queries (usage,
// quotas, adoption, activity, storage, ingestion, invoices, billing KPIs, forecasts, anomalies,
// insights, the audit trail) as data frames, and report exports as resource calls. Every query
// and export is decided by usagemeter's OPA policies for the Grafana user making it.
package usagemeter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/backend/resource/httpadapter"

	"github.com/usagemeter/usagemeter/exporter/authz"
	"github.com/usagemeter/usagemeter/plugin/pkg/upstream"
)

// PluginID is the plugin's id in plugin.json.
const PluginID = "usagemeter-usagemeter-datasource"

// The policies are compiled once per process and shared by every datasource instance:
// prepared queries are safe for concurrent use, and compiling costs far more than deciding.
var (
	engineOnce sync.Once
	engine     *authz.Engine
	engineErr  error
)

func sharedEngine(ctx context.Context) (*authz.Engine, error) {
	engineOnce.Do(func() {
		engine, engineErr = authz.New(ctx, authz.Options{Logger: slog.New(slog.DiscardHandler)})
	})
	return engine, engineErr
}

// Datasource is one configured datasource instance.
type Datasource struct {
	settings Settings
	exporter *upstream.Client
	vm       *upstream.Client
	engine   *authz.Engine
	queries  *datasource.QueryTypeMux
	resource backend.CallResourceHandler
	now      func() time.Time
}

var (
	_ backend.QueryDataHandler      = (*Datasource)(nil)
	_ backend.CheckHealthHandler    = (*Datasource)(nil)
	_ backend.CallResourceHandler   = (*Datasource)(nil)
	_ instancemgmt.InstanceDisposer = (*Datasource)(nil)
)

// NewDatasource is the instance factory given to datasource.Manage.
func NewDatasource(ctx context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	return New(ctx, s)
}

// New builds a datasource from its settings.
func New(ctx context.Context, s backend.DataSourceInstanceSettings) (*Datasource, error) {
	st, err := LoadSettings(s)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 90 * time.Second}}
	d := &Datasource{settings: st, now: time.Now}
	if d.exporter, err = upstream.New("exporter", st.ExporterURL, st.Token, hc); err != nil {
		return nil, err
	}
	if st.VictoriaMetricsURL != "" {
		// VictoriaMetrics is usually behind its own auth proxy; the exporter token is not sent.
		if d.vm, err = upstream.New("victoriametrics", st.VictoriaMetricsURL, "", hc); err != nil {
			return nil, err
		}
	}
	if d.engine, err = sharedEngine(ctx); err != nil {
		return nil, fmt.Errorf("loading the authorization policies: %w", err)
	}
	d.queries = datasource.NewQueryTypeMux()
	for name, h := range queryHandlers {
		d.queries.HandleFunc(name, d.handle(h))
	}
	d.queries.HandleFunc("", d.unknownQuery)
	d.resource = httpadapter.New(d.routes())
	return d, nil
}

// Dispose is called when the settings change and the instance is replaced.
func (d *Datasource) Dispose() {}

// QueryData answers panel and alert queries.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	return d.queries.QueryData(ctx, req)
}

// CallResource serves exports (see export.go).
func (d *Datasource) CallResource(ctx context.Context, req *backend.CallResourceRequest, sender backend.CallResourceResponseSender) error {
	return d.resource.CallResource(ctx, req, sender)
}

// CheckHealth proves the exporter answers with the configured token and VictoriaMetrics
// answers queries.
func (d *Datasource) CheckHealth(ctx context.Context, req *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	meters, err := d.exporter.MeterCount(ctx)
	if err != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: "usage exporter: " + err.Error()}, nil
	}
	msg := fmt.Sprintf("usage exporter OK (%d meters)", meters)
	if d.vm == nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusOk,
			Message: msg + "; VictoriaMetrics not configured: usage_timeseries and anomalies will fail"}, nil
	}
	if _, err := d.vm.Query(ctx, "vector(1)", d.now()); err != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: msg + "; VictoriaMetrics: " + err.Error()}, nil
	}
	return &backend.CheckHealthResult{Status: backend.HealthStatusOk, Message: msg + "; VictoriaMetrics OK"}, nil
}

// errorResponse turns an error into a per-query error response with its source: a denial or
// a bad query is the user's, an upstream failure is downstream.
func errorResponse(err error) backend.DataResponse {
	var fe *ErrForbidden
	var qe *QueryError
	switch {
	case errors.As(err, &fe):
		return backend.ErrDataResponseWithSource(backend.StatusForbidden, backend.ErrorSourceDownstream, err.Error())
	case errors.As(err, &qe):
		return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourceDownstream, err.Error())
	case errors.Is(err, context.Canceled):
		return backend.ErrDataResponseWithSource(backend.StatusTimeout, backend.ErrorSourceDownstream, err.Error())
	}
	if st := upstream.Status(err); st != 0 {
		return backend.ErrDataResponseWithSource(backend.Status(st), backend.ErrorSourceDownstream, err.Error())
	}
	return backend.ErrDataResponseWithSource(backend.StatusBadGateway, backend.ErrorSourceDownstream, err.Error())
}

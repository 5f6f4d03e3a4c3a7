package usagemeter

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Query is a panel's query model (the frontend's UsageQuery).
type Query struct {
	QueryType string `json:"queryType"`
	Tenant    string `json:"tenant"`
	Meter     string `json:"meter"`
	GroupBy   string `json:"groupBy"`
	// Period is the aggregation window: hour, day or month (the values of /v1/usage's window).
	Period string `json:"period"`

	// Filled from the request, not the JSON.
	RefID string                `json:"-"`
	Range backend.TimeRange     `json:"-"`
	User  *backend.User         `json:"-"`
	Raw   backend.DataQuery     `json:"-"`
	PC    backend.PluginContext `json:"-"`
}

// QueryError is a query the user got wrong.
type QueryError struct{ Field, Msg string }

func (e *QueryError) Error() string { return e.Field + ": " + e.Msg }

// Query types (the frontend and the dashboards use exactly these names).
const (
	QueryUsageSummary     = "usage_summary"
	QueryUsageTimeseries  = "usage_timeseries"
	QueryTopUsers         = "top_users"
	QueryFeatureAdoption  = "feature_adoption"
	QueryUserActivity     = "user_activity"
	QueryStorageDocuments = "storage_documents"
	QueryIngestion        = "ingestion"
	QueryInvoices         = "invoices"
	QueryBillingKPIs      = "billing_kpis"
	QueryForecast         = "forecast"
	QueryAnomalies        = "anomalies"
	QueryInsights         = "insights"
	QueryAudit            = "audit"
)

// handler answers one query with frames.
type handler func(ctx context.Context, d *Datasource, q *Query) (data.Frames, error)

// queryHandlers is filled by the query files' init functions.
var queryHandlers = map[string]handler{}

// QueryTypes lists the query types, sorted.
func QueryTypes() []string {
	var out []string
	for k := range queryHandlers {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// handle adapts a per-query handler to the mux: each query of the request gets its own response,
// so one failing query (denied, bad, upstream down) does not fail the others.
func (d *Datasource) handle(h handler) func(context.Context, *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	return func(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
		resp := backend.NewQueryDataResponse()
		for _, dq := range req.Queries {
			q, err := parseQuery(dq, req.PluginContext)
			if err != nil {
				resp.Responses[dq.RefID] = errorResponse(err)
				continue
			}
			frames, err := h(ctx, d, q)
			if err != nil {
				resp.Responses[dq.RefID] = errorResponse(err)
				continue
			}
			for _, f := range frames {
				f.RefID = dq.RefID
			}
			resp.Responses[dq.RefID] = backend.DataResponse{Frames: frames}
		}
		return resp, nil
	}
}

func (d *Datasource) unknownQuery(_ context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	for _, q := range req.Queries {
		resp.Responses[q.RefID] = backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourceDownstream,
			fmt.Sprintf("queryType %q: want one of %s", q.QueryType, strings.Join(QueryTypes(), ", ")))
	}
	return resp, nil
}

func parseQuery(dq backend.DataQuery, pc backend.PluginContext) (*Query, error) {
	q := &Query{}
	if len(dq.JSON) > 0 {
		if err := json.Unmarshal(dq.JSON, q); err != nil {
			return nil, &QueryError{"query", "not valid JSON: " + err.Error()}
		}
	}
	q.QueryType = dq.QueryType
	q.RefID, q.Range, q.User, q.Raw, q.PC = dq.RefID, dq.TimeRange, pc.User, dq, pc
	if q.Range.To.IsZero() {
		q.Range.To = time.Now()
	}
	if q.Range.From.IsZero() || !q.Range.From.Before(q.Range.To) {
		q.Range.From = q.Range.To.Add(-24 * time.Hour)
	}
	q.Range.From, q.Range.To = q.Range.From.UTC(), q.Range.To.UTC()
	switch q.Period {
	case "", "hour", "day", "month":
	default:
		return nil, &QueryError{"period", fmt.Sprintf("%q: want hour, day or month", q.Period)}
	}
	t, err := normalizeTenant(q.Tenant)
	if err != nil {
		return nil, err
	}
	q.Tenant = t
	return q, nil
}

var tenantID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

// normalizeTenant accepts one tenant id or a spelling of "all tenants" (what a Grafana
// template variable's All option sends) and returns "" for all.
func normalizeTenant(t string) (string, error) {
	switch t {
	case "", "*", ".*", "All", "all", "$__all":
		return "", nil
	}
	if !tenantID.MatchString(t) {
		return "", &QueryError{"tenant", fmt.Sprintf("%q: want one tenant id or all tenants", t)}
	}
	return t, nil
}

// requireTenant is for query types only the exporter's per-tenant endpoints answer.
func (q *Query) requireTenant() error {
	if q.Tenant == "" {
		return &QueryError{"tenant", q.QueryType + " needs one tenant"}
	}
	return nil
}

// window returns the aggregation window and its length.
func (q *Query) window() (string, time.Duration) {
	switch q.Period {
	case "hour":
		return "hour", time.Hour
	case "month":
		return "month", 30 * 24 * time.Hour
	default:
		return "day", 24 * time.Hour
	}
}

// hourRange widens the time range to whole hours, as /v1/usage requires.
func (q *Query) hourRange() (time.Time, time.Time) {
	from := q.Range.From.Truncate(time.Hour)
	to := q.Range.To.Truncate(time.Hour)
	if to.Before(q.Range.To) {
		to = to.Add(time.Hour)
	}
	if !from.Before(to) {
		to = from.Add(time.Hour)
	}
	return from, to
}

// frame builds a frame with the preferred visualization.
func frame(name string, vis data.VisType, fields ...*data.Field) *data.Frame {
	f := data.NewFrame(name, fields...)
	f.Meta = &data.FrameMeta{PreferredVisualization: vis}
	return f
}

// field builds a field with a display name and a unit.
func field[T any](name, display, unit string, values []T) *data.Field {
	f := data.NewField(name, nil, values)
	f.Config = &data.FieldConfig{DisplayNameFromDS: display, Unit: unit}
	return f
}

// unitOf maps a meter's unit to a Grafana unit.
func unitOf(u string) string {
	switch u {
	case "bytes":
		return "bytes"
	case "seconds":
		return "s"
	case "ms", "milliseconds":
		return "ms"
	}
	return "short"
}

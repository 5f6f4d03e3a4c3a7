package usagemeter

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/usagemeter/usagemeter/exporter/api/openapi/usageapi"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/plugin/pkg/upstream"
)

// chunkSize is how much an export buffers before it flushes one resource-response chunk:
// Grafana refuses gRPC messages above 16 MiB, so a large export must go out as many messages.
const chunkSize = 1 << 20

// Report kinds and formats of /export.
var (
	reportKinds   = []string{"usage", "invoices", "executive", "compliance"}
	reportFormats = []string{"csv", "json", "pdf"}
)

func (d *Datasource) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /export", d.export)
	mux.HandleFunc("GET /meters", d.listMeters)
	mux.HandleFunc("GET /tenants", d.listTenants)
	return mux
}

// exportRequest is a parsed /export query.
type exportRequest struct {
	Report, Format, Tenant, Window, Invoice string
	Meters                                  []string
	From, To                                time.Time
	// Scope narrows the compliance report to the tenant's view; the plugin sets it from the
	// user's permissions, never from the request.
	Scope string
}

func parseExport(r *http.Request, now time.Time) (exportRequest, error) {
	v := r.URL.Query()
	e := exportRequest{Report: v.Get("report"), Format: v.Get("format"), Window: v.Get("window"), Invoice: v.Get("invoice")}
	if !slices.Contains(reportKinds, e.Report) {
		return e, fmt.Errorf("report %q: want one of %s", e.Report, strings.Join(reportKinds, ", "))
	}
	if e.Format == "" {
		e.Format = "csv"
	}
	if !slices.Contains(reportFormats, e.Format) {
		return e, fmt.Errorf("format %q: want csv, json or pdf", e.Format)
	}
	t, err := normalizeTenant(v.Get("tenant"))
	if err != nil {
		return e, err
	}
	e.Tenant = t
	switch e.Window {
	case "":
		e.Window = "day"
	case "hour", "day", "month":
	default:
		return e, fmt.Errorf("window %q: want hour, day or month", e.Window)
	}
	now = now.UTC()
	e.From = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	e.To = now.Truncate(time.Hour).Add(time.Hour)
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &e.From}, {"to", &e.To}} {
		s := v.Get(p.name)
		if s == "" {
			continue
		}
		// RFC 3339, or Unix milliseconds as Grafana's time range gives them.
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			*p.dst = time.UnixMilli(ms).UTC()
		} else if t, err := time.Parse(time.RFC3339, s); err == nil {
			*p.dst = t.UTC()
		} else {
			return e, fmt.Errorf("%s %q: want RFC 3339 or Unix milliseconds", p.name, s)
		}
	}
	e.From, e.To = e.From.Truncate(time.Hour), e.To.Add(time.Hour-1).Truncate(time.Hour)
	if !e.From.Before(e.To) {
		return e, errors.New("from must be before to")
	}
	for _, m := range v["meter"] {
		for _, x := range strings.Split(m, ",") {
			if x = strings.TrimSpace(x); x != "" {
				e.Meters = append(e.Meters, x)
			}
		}
	}
	return e, nil
}

// export streams a report. The policies decide reports.export (and the data's own read action)
// for the Grafana user; a request without a user never gets an export.
func (d *Datasource) export(rw http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	w := &trackingWriter{ResponseWriter: rw}
	e, err := parseExport(r, d.now())
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	user := backend.UserFromContext(ctx) // nil for background requests
	actions := []string{route.ActionReportsExport}
	switch e.Report {
	case "usage":
		actions = append(actions, route.ActionUsageRead)
	case "invoices":
		actions = append(actions, route.ActionBillingRead)
	}
	if err := d.authorize(ctx, user, e.Tenant, "", actions...); err != nil {
		httpError(w, http.StatusForbidden, err.Error())
		return
	}
	switch {
	case e.Report == "invoices" && e.Format != "pdf":
		err = d.exportInvoices(ctx, w, e)
	case e.Report == "invoices":
		if e.Invoice == "" {
			httpError(w, http.StatusBadRequest, "invoice: a PDF export is one invoice; name it with invoice=<id>")
			return
		}
		pdf := usageapi.GetV1InvoicesIdParamsFormatPdf
		err = d.proxy(ctx, w, func(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
			return api.GetV1InvoicesId(ctx, e.Invoice, &usageapi.GetV1InvoicesIdParams{Format: &pdf, Tenant: optional[string](e.Tenant)})
		})
	default:
		// The analytics service renders the usage, executive and compliance reports, reading
		// the ledger in-process and streaming as it goes; stream its answer through.
		if e.Report == "compliance" && d.authorize(ctx, user, "", "", route.ActionAuditRead) != nil {
			// The exporter renders with the datasource's token, not as this user: ask for the
			// tenant's view (no server paths, key settings or refused principals), which is
			// all that a user who may not read the whole audit trail may see.
			e.Scope = "tenant"
		}
		err = d.proxy(ctx, w, e.reportRequest)
	}
	if err != nil {
		var ue *upstream.Error
		switch {
		case errors.As(err, &ue) && !headerWritten(w):
			httpError(w, ue.Status, err.Error())
		case !headerWritten(w):
			httpError(w, http.StatusBadGateway, err.Error())
		default:
			// Mid-stream: the status is gone; end the body with a marker a reader can see.
			_, _ = io.WriteString(w, "\n# export failed: "+err.Error()+"\n")
		}
	}
}

// chunked buffers writes and flushes a resource chunk every chunkSize bytes.
type chunked struct {
	w       http.ResponseWriter
	buf     []byte
	started bool
}

func (c *chunked) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	if len(c.buf) >= chunkSize {
		c.flush()
	}
	return len(p), nil
}

func (c *chunked) flush() {
	c.started = true
	if len(c.buf) > 0 {
		_, _ = c.w.Write(c.buf)
		c.buf = c.buf[:0]
	}
	if f, ok := c.w.(http.Flusher); ok {
		f.Flush()
	}
}

// headerWritten is tracked by the writer wrapper below.
func headerWritten(w http.ResponseWriter) bool {
	hw, ok := w.(*trackingWriter)
	return ok && hw.wrote
}

type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(code int) { t.wrote = true; t.ResponseWriter.WriteHeader(code) }
func (t *trackingWriter) Write(p []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(p)
}
func (t *trackingWriter) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func attachment(w http.ResponseWriter, name, format string) {
	ct := map[string]string{"csv": "text/csv; charset=utf-8", "json": "application/json"}[format]
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.%s"`, name, format))
}

// tenants lists the tenants with series in VictoriaMetrics in the period (the exporter has no
// tenant listing): the query editor's tenant choices.
func (d *Datasource) tenants(ctx context.Context, from, to time.Time) ([]string, error) {
	if d.vm == nil {
		return nil, errors.New("exporting all tenants needs the VictoriaMetrics URL (to list tenants); name a tenant")
	}
	var r struct {
		Data []string `json:"data"`
	}
	v := url.Values{"start": {strconv.FormatInt(from.Unix(), 10)}, "end": {strconv.FormatInt(to.Unix(), 10)}, "match[]": {`{__name__=~"usage_.+",tenant!=""}`}}
	if err := d.vm.GetJSON(ctx, "/api/v1/label/tenant/values", v, &r); err != nil {
		return nil, err
	}
	out := slices.DeleteFunc(r.Data, func(t string) bool { return t == "__overflow__" || !tenantID.MatchString(t) })
	slices.Sort(out)
	return out, nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// exportInvoices writes the invoices of the periods in range, amounts in minor units.
func (d *Datasource) exportInvoices(ctx context.Context, rw http.ResponseWriter, e exportRequest) error {
	var invs []upstream.InvoiceSummary
	for p := time.Date(e.From.Year(), e.From.Month(), 1, 0, 0, 0, 0, time.UTC); p.Before(e.To); p = p.AddDate(0, 1, 0) {
		page, err := d.exporter.Invoices(ctx, e.Tenant, p.Format("2006-01"))
		if err != nil {
			return err
		}
		invs = append(invs, page...)
	}
	w := rw
	attachment(w, fmt.Sprintf("invoices-%s-%s", cmpOr(e.Tenant, "all"), e.From.Format("200601")), e.Format)
	out := &chunked{w: w}
	if e.Format == "json" {
		if invs == nil {
			invs = []upstream.InvoiceSummary{}
		}
		if err := json.NewEncoder(out).Encode(map[string]any{"invoices": invs, "amounts": "minor units"}); err != nil {
			return err
		}
		out.flush()
		return nil
	}
	cw := csv.NewWriter(out)
	_ = cw.Write([]string{"id", "number", "tenant", "period", "status", "currency", "subtotal_minor", "amount_due_minor", "amount_remaining_minor"})
	for _, in := range invs {
		_ = cw.Write([]string{in.ID, in.Number, in.Tenant, in.Period, in.Status, in.Currency,
			strconv.FormatInt(in.Subtotal, 10), strconv.FormatInt(in.AmountDue, 10), strconv.FormatInt(in.AmountRemaining, 10)})
	}
	cw.Flush()
	out.flush()
	return cw.Error()
}

// reportRequest asks the exporter for the export's report (usage, executive or compliance).
func (e *exportRequest) reportRequest(ctx context.Context, api *usageapi.Client) (*http.Response, error) {
	from, to := e.From, e.To
	switch e.Report {
	case "usage":
		p := &usageapi.GetV1ReportsUsageParams{Format: optional[usageapi.GetV1ReportsUsageParamsFormat](e.Format), From: &from, To: &to,
			Tenant: optional[string](e.Tenant), Window: optional[usageapi.GetV1ReportsUsageParamsWindow](e.Window)}
		if len(e.Meters) > 0 {
			p.Meter = &e.Meters
		}
		return api.GetV1ReportsUsage(ctx, p)
	case "executive":
		return api.GetV1ReportsExecutive(ctx, &usageapi.GetV1ReportsExecutiveParams{Format: optional[usageapi.GetV1ReportsExecutiveParamsFormat](e.Format),
			From: &from, To: &to, Tenant: optional[string](e.Tenant)})
	case "compliance":
		return api.GetV1ReportsCompliance(ctx, &usageapi.GetV1ReportsComplianceParams{Format: optional[usageapi.GetV1ReportsComplianceParamsFormat](e.Format),
			From: &from, To: &to, Tenant: optional[string](e.Tenant), Scope: optional[usageapi.GetV1ReportsComplianceParamsScope](e.Scope)})
	}
	return nil, fmt.Errorf("report %q: want usage, executive or compliance", e.Report)
}

// optional is an optional parameter of the generated client: nil when empty.
func optional[T ~string](s string) *T {
	if s == "" {
		return nil
	}
	v := T(s)
	return &v
}

// proxy streams an upstream download through, chunk by chunk.
func (d *Datasource) proxy(ctx context.Context, rw http.ResponseWriter, send func(context.Context, *usageapi.Client) (*http.Response, error)) error {
	resp, err := d.exporter.Call(ctx, send)
	if err != nil {
		return err
	}
	path := resp.Request.URL.Path
	defer resp.Body.Close()
	w := rw
	for _, h := range []string{"Content-Type", "Content-Disposition"} {
		if s := resp.Header.Get(h); s != "" {
			w.Header().Set(h, s)
		}
	}
	out := &chunked{w: w}
	buf := make([]byte, 256<<10)
	if _, err := io.CopyBuffer(out, resp.Body, buf); err != nil {
		out.flush()
		return fmt.Errorf("%s: %w", path, err)
	}
	out.flush()
	return nil
}

func httpError(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(map[string]any{"title": http.StatusText(status), "status": status, "detail": detail})
}

// listMeters serves the query editor's meter list.
func (d *Datasource) listMeters(w http.ResponseWriter, r *http.Request) {
	if err := d.authorize(r.Context(), backend.UserFromContext(r.Context()), "", "", route.ActionMetersRead); err != nil {
		httpError(w, http.StatusForbidden, err.Error())
		return
	}
	resp, err := d.exporter.Call(r.Context(), func(ctx context.Context, api *usageapi.Client) (*http.Response, error) { return api.GetV1Meters(ctx) })
	if err != nil {
		httpError(w, http.StatusBadGateway, err.Error())
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.Copy(w, resp.Body)
}

// listTenants serves the query editor's tenant list: the user's tenants, or every tenant
// VictoriaMetrics knows for global roles.
func (d *Datasource) listTenants(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p := d.settings.Principal(backend.UserFromContext(ctx))
	out := []string{}
	if d.authorize(ctx, backend.UserFromContext(ctx), "", "", route.ActionUsageRead) == nil {
		now := d.now()
		ts, err := d.tenants(ctx, now.Add(-35*24*time.Hour), now)
		if err != nil {
			httpError(w, http.StatusBadGateway, err.Error())
			return
		}
		out = ts
	} else {
		for _, t := range p.Tenants {
			if t != "*" {
				out = append(out, t)
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"tenants": out})
}

// Package api serves the exporter's HTTP API: ingestion, exact usage, meters and quotas.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/authz"
	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/quota"
)

// API holds the handlers' dependencies.
type API struct {
	Store   *ledger.Store
	Quotas  *quota.Evaluator
	Metrics *SelfMetrics
	Log     *slog.Logger
	// Config returns the configuration in force (it changes on reload).
	Config func() *config.Config
	// Reload reloads the configuration (POST /-/reload).
	Reload func(context.Context) error
	// Authorize, when set, checks an extra action inside a handler: per-user detail is a
	// separate permission from tenant aggregates.
	Authorize func(r *http.Request, action, tenant string) error
	// Ready reports whether the store is open.
	Ready func() bool
	// Admit decides quota admission (the quota policy).
	Admit func(context.Context, authz.QuotaInput) (authz.QuotaDecision, error)
	// BillingHold reports why a tenant is on a dunning hold ("" when it is not); quota
	// admission then denies it (billing: dunning). May be nil.
	BillingHold func(ctx context.Context, tenant string) string
	// Audit is the audit trail served by GET /v1/audit.
	Audit *audit.Log

	decoder atomic.Pointer[decoderFor]
}

type decoderFor struct {
	cfg *config.Config
	dec *event.Decoder
}

func (a *API) decoderOf(cfg *config.Config) *event.Decoder {
	if d := a.decoder.Load(); d != nil && d.cfg == cfg {
		return d.dec
	}
	d := &decoderFor{cfg: cfg, dec: &event.Decoder{MaxEvents: cfg.Ingest.MaxBatchEvents, Custom: cfg.CustomEventTypes()}}
	a.decoder.Store(d)
	return d.dec
}

// Routes are the API's endpoints.
func (a *API) Routes() []route.Route {
	return []route.Route{
		{Method: http.MethodPost, Pattern: "/v1/events", Action: route.ActionIngest, Handler: a.ingest},
		{Method: http.MethodGet, Pattern: "/v1/usage", Action: route.ActionUsageRead, Audit: true, Handler: a.usage},
		{Method: http.MethodGet, Pattern: "/v1/meters", Action: route.ActionMetersRead, Handler: a.meters},
		{Method: http.MethodGet, Pattern: "/v1/tenants/{tenant}/quotas", Action: route.ActionQuotasRead, Audit: true, Handler: a.quotas},
		{Method: http.MethodPost, Pattern: "/v1/quota/check", Action: route.ActionQuotaCheck, Handler: a.quotaCheck},
		{Method: http.MethodGet, Pattern: "/v1/audit", Action: route.ActionAuditRead, Audit: true, Handler: a.auditList},
		{Method: http.MethodPost, Pattern: "/-/reload", Action: route.ActionAdmin, Audit: true, Handler: a.reload},
		{Method: http.MethodGet, Pattern: "/-/healthy", Action: route.ActionPublic, Handler: a.healthy},
		{Method: http.MethodGet, Pattern: "/-/ready", Action: route.ActionPublic, Handler: a.ready},
	}
}

// Accepted is the body of a 202 answer to POST /v1/events.
type Accepted struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
}

func (a *API) ingest(w http.ResponseWriter, r *http.Request) {
	cfg := a.Config()
	body, err := readBody(w, r, cfg.Ingest.MaxBodyBytes)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			a.Metrics.Rejected.WithLabelValues("body_too_large").Inc()
			problem.Error(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes; send smaller batches", mbe.Limit))
			return
		}
		problem.Error(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	events, err := a.decoderOf(cfg).Decode(r.Header.Get("Content-Type"), body)
	if err != nil {
		a.reject(w, err)
		return
	}
	a.Metrics.Received.Add(float64(len(events)))
	if a.Authorize != nil {
		// An ingest key acts for its tenants only: every tenant named in the batch is checked.
		checked := map[string]bool{}
		for _, ev := range events {
			if checked[ev.Tenant] {
				continue
			}
			checked[ev.Tenant] = true
			if err := a.Authorize(r, route.ActionIngest, ev.Tenant); err != nil {
				a.Metrics.Rejected.WithLabelValues("forbidden").Add(float64(len(events)))
				problem.Error(w, http.StatusForbidden, fmt.Sprintf("this credential may not ingest for tenant %q; nothing was stored", ev.Tenant))
				return
			}
		}
	}
	res, err := a.Store.Commit(r.Context(), events)
	if err != nil {
		a.Metrics.Rejected.WithLabelValues("store_error").Add(float64(len(events)))
		status := http.StatusInternalServerError
		if errors.Is(err, ledger.ErrClosed) || errors.Is(err, context.Canceled) {
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "1")
		}
		a.Log.Error("storing events failed", "err", err, "events", len(events))
		problem.Error(w, status, "the events were not stored; retry the same request (it is idempotent)")
		return
	}
	a.Metrics.Accepted.Add(float64(res.Accepted))
	a.Metrics.Duplicates.Add(float64(res.Duplicates))
	writeJSON(w, http.StatusAccepted, Accepted{Accepted: res.Accepted, Duplicates: res.Duplicates})
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	rd := http.MaxBytesReader(w, r.Body, limit)
	var buf bytes.Buffer
	if r.ContentLength > 0 && r.ContentLength <= limit {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(rd)
	return buf.Bytes(), err
}

func (a *API) reject(w http.ResponseWriter, err error) {
	if errors.Is(err, event.ErrUnsupportedMediaType) {
		a.Metrics.Rejected.WithLabelValues(event.ReasonMediaType).Inc()
		problem.Error(w, http.StatusUnsupportedMediaType, err.Error())
		return
	}
	var ee *event.Error
	if !errors.As(err, &ee) {
		problem.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(ee.Reasons) == 0 {
		a.Metrics.Rejected.WithLabelValues(ee.Reason).Inc()
	}
	for reason, n := range ee.Reasons {
		a.Metrics.Rejected.WithLabelValues(reason).Add(float64(n))
	}
	status := http.StatusBadRequest
	title := "Invalid events"
	if ee.Reason == event.ReasonBatchTooBig {
		status, title = http.StatusRequestEntityTooLarge, "Batch too large"
	}
	problem.Write(w, problem.Details{Type: "https://usagemeter.dev/problems/" + strings.ReplaceAll(ee.Reason, "_", "-"),
		Title: title, Status: status, Detail: ee.Detail, Errors: ee.Errors})
}

// UsageResponse is the body of GET /v1/usage.
type UsageResponse struct {
	Meter   string       `json:"meter"`
	Unit    string       `json:"unit"`
	Kind    string       `json:"kind"`
	Tenant  string       `json:"tenant"`
	From    time.Time    `json:"from"`
	To      time.Time    `json:"to"`
	Window  string       `json:"window,omitempty"`
	GroupBy []string     `json:"group_by,omitempty"`
	Rows    []ledger.Row `json:"rows"`
}

func (a *API) usage(w http.ResponseWriter, r *http.Request) {
	q, err := ParseUsageQuery(r, time.Now())
	if err != nil {
		problem.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	perUser := slices.Contains(q.GroupBy, "user") || q.Where["user"] != ""
	if perUser && a.Authorize != nil {
		if err := a.Authorize(r, route.ActionUsageUserRead, q.Tenant); err != nil {
			problem.Error(w, http.StatusForbidden, "per-user detail needs the usage.read_users permission (or, for a tenant user, user= naming yourself)")
			return
		}
	}
	rows, err := a.Store.Usage(r.Context(), q)
	if err != nil {
		var qe *ledger.QueryError
		if errors.As(err, &qe) {
			problem.Error(w, http.StatusBadRequest, qe.Error())
			return
		}
		a.Log.Error("usage query failed", "err", err)
		problem.Error(w, http.StatusInternalServerError, "the usage query failed")
		return
	}
	def, _ := a.Store.Meter(q.Meter)
	writeJSON(w, http.StatusOK, UsageResponse{Meter: q.Meter, Unit: def.Unit, Kind: string(def.Kind), Tenant: q.Tenant,
		From: q.From, To: q.To, Window: q.Window, GroupBy: q.GroupBy, Rows: rows})
}

// ParseUsageQuery reads /v1/usage parameters. from defaults to the start of the current month,
// to to the end of the current hour.
func ParseUsageQuery(r *http.Request, now time.Time) (ledger.Query, error) {
	v := r.URL.Query()
	q := ledger.Query{Meter: v.Get("meter"), Tenant: v.Get("tenant"), Window: v.Get("window")}
	if q.Meter == "" {
		return q, errors.New("meter: required")
	}
	if q.Tenant == "" {
		return q, errors.New("tenant: required")
	}
	if !event.ValidID(q.Tenant) {
		return q, errors.New("tenant: not a valid tenant id")
	}
	now = now.UTC()
	q.From = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	q.To = now.Truncate(time.Hour).Add(time.Hour)
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if s := v.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return q, fmt.Errorf("%s: %q is not an RFC 3339 time", p.name, s)
			}
			*p.dst = t.UTC()
		}
	}
	if u := v.Get("user"); u != "" {
		if !event.ValidID(u) {
			return q, errors.New("user: not a valid user id")
		}
		q.Where = map[string]string{"user": u}
	}
	if g := v.Get("group_by"); g != "" {
		for _, d := range strings.Split(g, ",") {
			if d = strings.TrimSpace(d); d != "" {
				q.GroupBy = append(q.GroupBy, d)
			}
		}
	}
	return q, nil
}

func (a *API) meters(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"meters": a.Store.Meters()})
}

// QuotasResponse is the body of GET /v1/tenants/{tenant}/quotas.
type QuotasResponse struct {
	Tenant string         `json:"tenant"`
	Plan   string         `json:"plan"`
	Quotas []quota.Status `json:"quotas"`
}

func (a *API) quotas(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if !event.ValidID(tenant) {
		problem.Error(w, http.StatusBadRequest, "tenant: not a valid tenant id")
		return
	}
	plan, quotas := a.Quotas.Tenant(r.Context(), tenant)
	writeJSON(w, http.StatusOK, QuotasResponse{Tenant: tenant, Plan: plan.Name, Quotas: quotas})
}

func (a *API) reload(w http.ResponseWriter, r *http.Request) {
	if err := a.Reload(r.Context()); err != nil {
		problem.Error(w, http.StatusUnprocessableEntity, "reload failed, the previous configuration stays in force: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
}

func (a *API) healthy(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "Healthy.\n")
}

func (a *API) ready(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if a.Ready != nil && !a.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "Not ready: the store is not open.\n")
		return
	}
	io.WriteString(w, "Ready.\n")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// QuotaCheckRequest is the body of POST /v1/quota/check.
type QuotaCheckRequest struct {
	Tenant  string `json:"tenant"`
	Meter   string `json:"meter"`
	Amount  int64  `json:"amount"`
	Feature string `json:"feature,omitempty"`
}

// QuotaCheckResponse answers it: allow, warn (allow with a warning) or deny.
type QuotaCheckResponse struct {
	Tenant    string `json:"tenant"`
	Meter     string `json:"meter"`
	Plan      string `json:"plan"`
	Result    string `json:"result"`
	Remaining int64  `json:"remaining"`
	Unlimited bool   `json:"unlimited,omitempty"`
	Used      int64  `json:"used"`
	Limit     int64  `json:"limit,omitempty"`
	Reason    string `json:"reason"`
}

func (a *API) quotaCheck(w http.ResponseWriter, r *http.Request) {
	var req QuotaCheckRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		problem.Error(w, http.StatusBadRequest, "the body must be {\"tenant\", \"meter\", \"amount\", \"feature\"}: "+err.Error())
		return
	}
	if t := r.URL.Query().Get("tenant"); t != "" && t != req.Tenant {
		problem.Error(w, http.StatusBadRequest, "the tenant of the query and of the body differ")
		return
	}
	switch {
	case !event.ValidID(req.Tenant):
		problem.Error(w, http.StatusBadRequest, "tenant: required, a valid tenant id")
		return
	case req.Amount < 0:
		problem.Error(w, http.StatusBadRequest, "amount: must not be negative")
		return
	}
	if _, ok := a.Store.Meter(req.Meter); !ok {
		problem.Error(w, http.StatusBadRequest, fmt.Sprintf("meter: unknown meter %q", req.Meter))
		return
	}
	if a.Authorize != nil {
		if err := a.Authorize(r, route.ActionQuotaCheck, req.Tenant); err != nil {
			problem.Error(w, http.StatusForbidden, fmt.Sprintf("this credential may not check quotas of tenant %q", req.Tenant))
			return
		}
	}
	plan := a.Quotas.Plan(r.Context(), req.Tenant)
	used, _ := a.Store.Current(req.Meter, req.Tenant, time.Now())
	in := authz.QuotaInputFor(plan, req.Tenant, req.Meter, req.Feature, req.Amount, used)
	if a.BillingHold != nil {
		if reason := a.BillingHold(r.Context(), req.Tenant); reason != "" {
			in.BillingHold = &authz.BillingHold{Reason: reason}
		}
	}
	d, err := a.Admit(r.Context(), in)
	if err != nil {
		a.Log.Error("quota admission failed", "err", err)
		problem.Error(w, http.StatusInternalServerError, "quota admission is unavailable")
		return
	}
	writeJSON(w, http.StatusOK, QuotaCheckResponse{Tenant: req.Tenant, Meter: req.Meter, Plan: plan.Name, Result: d.Result,
		Remaining: d.Remaining, Unlimited: d.Unlimited, Used: used, Limit: plan.Limits[req.Meter], Reason: d.Reason})
}

func (a *API) auditList(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	after, limit := uint64(0), 100
	if s := v.Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			problem.Error(w, http.StatusBadRequest, "after: must be a sequence number")
			return
		}
		after = n
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			problem.Error(w, http.StatusBadRequest, "limit: must be between 1 and 1000")
			return
		}
		limit = n
	}
	entries, err := a.Audit.List(r.Context(), after, limit)
	if err != nil {
		a.Log.Error("listing the audit trail failed", "err", err)
		problem.Error(w, http.StatusInternalServerError, "the audit trail could not be read")
		return
	}
	resp := map[string]any{"entries": entries}
	if len(entries) == limit {
		resp["next"] = fmt.Sprintf("/v1/audit?after=%d&limit=%d", entries[len(entries)-1].Seq, limit)
	}
	if entries == nil {
		resp["entries"] = []audit.Entry{}
	}
	writeJSON(w, http.StatusOK, resp)
}

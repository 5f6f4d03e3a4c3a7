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
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	_ "time/tzdata" // tz= names resolve the same on every host

	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/authz"
	"github.com/usagemeter/usagemeter/exporter/commit"
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
	// Committer, when set, is how ingested events reach the ledger (cluster mode: through the
	// replicated log); when nil they are committed to Store directly.
	Committer commit.Committer

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
	// Seq is the request's position in the replicated log (cluster mode, docs/cluster.md): a
	// read that asks for at least this position sees the events.
	Seq uint64 `json:"seq,omitempty"`
	// Unapplied: the events are durable in the log, not yet applied by this replica; accepted
	// counts all of them.
	Unapplied bool `json:"unapplied,omitempty"`
}

// HeaderSeq carries the log position of an acknowledged write (cluster mode).
const HeaderSeq = "X-Usagemeter-Seq"

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
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// http.read_timeout passed: the connection is closed after this answer.
			a.Metrics.Rejected.WithLabelValues("body_timeout").Inc()
			a.Log.Info("request body not received in time; nothing stored", "remote", r.RemoteAddr, "read_timeout", cfg.HTTP.ReadTimeout, "received_bytes", len(body))
			problem.Error(w, http.StatusRequestTimeout, fmt.Sprintf("the body was not received within http.read_timeout (%s); nothing was stored", cfg.HTTP.ReadTimeout))
			return
		}
		problem.Error(w, http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	events, err := a.decoderOf(cfg).DecodeHTTP(r.Header, body)
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
	var out commit.Outcome
	if a.Committer != nil {
		out, err = a.Committer.Commit(r.Context(), events)
	} else {
		out.Result, err = a.Store.Commit(r.Context(), events)
	}
	res := out.Result
	if errors.Is(err, commit.ErrTooLarge) {
		a.Metrics.Rejected.WithLabelValues("body_too_large").Add(float64(len(events)))
		problem.Error(w, http.StatusRequestEntityTooLarge, err.Error()+"; nothing was stored: send smaller batches")
		return
	}
	if err != nil {
		a.storeFailed(w, err, len(events))
		return
	}
	a.Metrics.Accepted.Add(float64(res.Accepted))
	a.Metrics.Duplicates.Add(float64(res.Duplicates))
	if out.Seq != 0 {
		w.Header().Set(HeaderSeq, strconv.FormatUint(out.Seq, 10))
	}
	writeJSON(w, http.StatusAccepted, Accepted{Accepted: res.Accepted, Duplicates: res.Duplicates, Seq: out.Seq, Unapplied: out.Unapplied})
}

// storeFailed answers a request whose events the store did not take. Nothing of it was stored
// (a group is all or nothing), so the client retries the same request later. Refusals for lack
// of space are expected while the disk is full: the store logs them, throttled, not here.
func (a *API) storeFailed(w http.ResponseWriter, err error, events int) {
	const retry = "; nothing of this request was stored: retry the same request later (it is idempotent)"
	switch {
	case errors.Is(err, ledger.ErrInsufficientStorage):
		a.Metrics.Rejected.WithLabelValues("insufficient_storage").Add(float64(events))
		w.Header().Set("Retry-After", "30")
		problem.Write(w, problem.Details{Type: problem.TypeInsufficientStorage, Title: "Insufficient storage",
			Status: http.StatusInsufficientStorage, Detail: err.Error() + retry})
	case errors.Is(err, ledger.ErrWriteFailed):
		a.Metrics.Rejected.WithLabelValues("store_failed").Add(float64(events))
		w.Header().Set("Retry-After", "60")
		problem.Write(w, problem.Details{Type: problem.TypeStoreFailed, Title: "Store unavailable for writes",
			Status: http.StatusServiceUnavailable, Detail: err.Error() + retry})
	case errors.Is(err, commit.ErrUnavailable):
		a.Metrics.Rejected.WithLabelValues("store_error").Add(float64(events))
		w.Header().Set("Retry-After", "1")
		a.Log.Warn("the replicated log did not take the events", "err", err, "events", events)
		problem.Error(w, http.StatusServiceUnavailable, "the replicated log is unavailable"+retry)
	case errors.Is(err, ledger.ErrClosed), errors.Is(err, context.Canceled):
		a.Metrics.Rejected.WithLabelValues("store_error").Add(float64(events))
		w.Header().Set("Retry-After", "1")
		problem.Error(w, http.StatusServiceUnavailable, "the exporter is stopping"+retry)
	default:
		a.Metrics.Rejected.WithLabelValues("store_error").Add(float64(events))
		a.Log.Error("storing events failed", "err", err, "events", events)
		problem.Error(w, http.StatusInternalServerError, "the events were not stored"+retry)
	}
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
	TZ      string       `json:"tz,omitempty"`
	GroupBy []string     `json:"group_by,omitempty"`
	Rows    []ledger.Row `json:"rows"`
}

func (a *API) usage(w http.ResponseWriter, r *http.Request) {
	q, err := ParseUsageQuery(r, time.Now())
	if err != nil {
		problem.Error(w, http.StatusBadRequest, err.Error())
		return
	}
	if !a.known(q.Tenant) {
		problem.UnknownTenant(w, q.Tenant)
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
	resp := UsageResponse{Meter: q.Meter, Unit: def.Unit, Kind: string(def.Kind), Tenant: q.Tenant,
		From: q.From, To: q.To, Window: q.Window, GroupBy: q.GroupBy, Rows: rows}
	if q.Location != nil {
		resp.TZ = q.Location.String()
		resp.From, resp.To = q.From.In(q.Location), q.To.In(q.Location)
	}
	writeJSON(w, http.StatusOK, resp)
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
	loc := time.UTC
	if tz := v.Get("tz"); tz != "" {
		l, err := loadZone(tz)
		if err != nil {
			return q, err
		}
		loc, q.Location = l, l
	}
	now = now.In(loc)
	q.From = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, loc).UTC()
	q.To = now.Truncate(time.Hour).Add(time.Hour).UTC()
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

// known reports whether a tenant was ever named by an event or is configured. Reads of any other
// tenant answer 404 (problem.UnknownTenant); ingestion and quota admission accept new tenants.
func (a *API) known(tenant string) bool {
	if a.Store.Seen(tenant) {
		return true
	}
	if a.Config == nil {
		return false
	}
	_, ok := a.Config().Tenant(tenant)
	return ok
}

// loadZone reads the tz parameter: an IANA time zone name. The zone database is built into the
// binary (time/tzdata), so the answer does not depend on the host's. "Local", the host's own
// zone, is refused for the same reason.
func loadZone(name string) (*time.Location, error) {
	if name == "Local" {
		return nil, errors.New(`tz: "Local" is the server's zone; name an IANA time zone such as Asia/Tokyo`)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("tz: %q is not an IANA time zone name (such as Asia/Tokyo or UTC)", name)
	}
	return loc, nil
}

func (a *API) meters(w http.ResponseWriter, r *http.Request) {
	defs := a.Store.Meters()
	out := make([]Meter, len(defs))
	for i, d := range defs {
		out[i] = meterOf(d)
	}
	writeJSON(w, http.StatusOK, map[string]any{"meters": out})
}

// QuotasResponse is the body of GET /v1/tenants/{tenant}/quotas: the tenant's quotas, and those
// of its users and features (docs/quotas.md).
type QuotasResponse struct {
	Tenant string         `json:"tenant"`
	Plan   string         `json:"plan"`
	Quotas []quota.Status `json:"quotas"`
	// UserQuotas is per-user detail: present only when asked for (?users=true), which needs
	// usage.read_users.
	UserQuotas    *[]quota.Status `json:"user_quotas,omitempty"`
	FeatureQuotas []quota.Status  `json:"feature_quotas"`
}

func (a *API) quotas(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if !event.ValidID(tenant) {
		problem.Error(w, http.StatusBadRequest, "tenant: not a valid tenant id")
		return
	}
	if !a.known(tenant) {
		problem.UnknownTenant(w, tenant)
		return
	}
	// Per-user quotas are per-user detail: asked for explicitly, and only with its permission.
	withUsers := false
	switch v := r.URL.Query().Get("users"); v {
	case "", "false":
	case "true":
		withUsers = true
		if a.Authorize != nil {
			if err := a.Authorize(r, route.ActionUsageUserRead, tenant); err != nil {
				problem.Error(w, http.StatusForbidden, "per-user quotas need the usage.read_users permission")
				return
			}
		}
	default:
		problem.Error(w, http.StatusBadRequest, fmt.Sprintf("users: %q must be true or false", v))
		return
	}
	plan, quotas := a.Quotas.Tenant(r.Context(), tenant)
	resp := QuotasResponse{Tenant: tenant, Plan: plan.Name, Quotas: quotas}
	features, err := a.Quotas.FeatureStatuses(r.Context(), tenant, plan)
	if err == nil && withUsers {
		var users []quota.Status
		if users, err = a.Quotas.UserStatuses(r.Context(), tenant, plan); err == nil {
			users = nonNil(users)
			resp.UserQuotas = &users
		}
	}
	if err != nil {
		a.Log.Error("reading user and feature quotas failed", "tenant", tenant, "err", err)
		problem.Error(w, http.StatusInternalServerError, "the usage of users and features could not be read")
		return
	}
	resp.FeatureQuotas = nonNil(features)
	writeJSON(w, http.StatusOK, resp)
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil(s []quota.Status) []quota.Status {
	if s == nil {
		return []quota.Status{}
	}
	return s
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
	// Reads go on while the store refuses writes, but a load balancer should send events
	// elsewhere.
	if a.Store != nil {
		if st := a.Store.Space(); !st.Writable {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "Not ready: the store refuses writes (%s): %d bytes free, %d kept in reserve.\n", st.Reason, st.FreeBytes, st.MinFreeBytes)
			return
		}
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
	// User, when given, adds the user's limit (named, or the tenant's default for every user).
	User string `json:"user,omitempty"`
}

// QuotaCheckResponse answers it: allow, warn (allow with a warning) or deny.
type QuotaCheckResponse struct {
	Tenant    string `json:"tenant"`
	Meter     string `json:"meter"`
	Plan      string `json:"plan"`
	Result    string `json:"result"`
	Remaining int64  `json:"remaining"`
	Unlimited bool   `json:"unlimited,omitempty"`
	// LimitScope is which limit decided: tenant, user or feature, the tightest that applies.
	// Used and Limit are that limit's.
	LimitScope string `json:"limit_scope,omitempty"`
	User       string `json:"user,omitempty"`
	Feature    string `json:"feature,omitempty"`
	Used       int64  `json:"used"`
	Limit      int64  `json:"limit,omitempty"`
	Reason     string `json:"reason"`
}

func (a *API) quotaCheck(w http.ResponseWriter, r *http.Request) {
	var req QuotaCheckRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		problem.Error(w, http.StatusBadRequest, "the body must be {\"tenant\", \"meter\", \"amount\", \"feature\", \"user\"}: "+err.Error())
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
	case req.User != "" && !event.ValidID(req.User):
		problem.Error(w, http.StatusBadRequest, "user: not a valid user id")
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
	in.User = req.User
	scoped, err := a.Quotas.Scoped(r.Context(), plan, req.Tenant, req.Meter, req.User, req.Feature)
	if err != nil {
		a.Log.Error("reading user and feature usage for quota admission failed", "err", err)
		problem.Error(w, http.StatusInternalServerError, "quota admission is unavailable")
		return
	}
	for _, l := range scoped {
		in.Scopes = append(in.Scopes, authz.QuotaScope{Scope: l.Scope, Name: l.Name, Used: l.Used, Limit: l.Limit})
	}
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
	resp := QuotaCheckResponse{Tenant: req.Tenant, Meter: req.Meter, Plan: plan.Name, Result: d.Result,
		Remaining: d.Remaining, Unlimited: d.Unlimited, LimitScope: d.LimitScope, User: req.User, Feature: req.Feature,
		Used: used, Limit: plan.Limits[req.Meter], Reason: d.Reason}
	for _, l := range scoped {
		if l.Scope == d.LimitScope {
			resp.Used, resp.Limit = l.Used, l.Limit
		}
	}
	writeJSON(w, http.StatusOK, resp)
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

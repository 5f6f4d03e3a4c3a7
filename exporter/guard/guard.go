// Package guard is the middleware in front of every route: it authenticates the caller
// (exporter/auth), asks the policies whether the route's action is allowed on the request's
// tenant (exporter/authz), writes the audit trail (exporter/audit), and only then calls the
// handler. Routes are wrapped one by one from their route.Route declaration, so no route can
// be served without naming the action that guards it.
package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/auth"
	"github.com/usagemeter/usagemeter/exporter/authz"
	"github.com/usagemeter/usagemeter/exporter/limit"
)

// Anonymous is the principal of open mode (no auth configured): the operator chose to run
// without credentials, and the server then binds loopback only unless told otherwise.
var Anonymous = auth.Principal{Subject: "anonymous", Kind: auth.KindAnonymous, Roles: []string{"platform_admin"}, Tenants: []string{"*"}}

// Options wire a Guard.
type Options struct {
	Auth   *auth.Authenticator // required
	Authz  *authz.Engine       // required
	Audit  *audit.Log          // nil: no audit trail
	Logger *slog.Logger
	Realm  string // WWW-Authenticate realm; default "usagemeter"
	// Callers, when set, bounds each caller's requests in flight (limit.Requests): the caller
	// is the authenticated principal, or the remote IP when there is no valid credential (or no
	// credentials at all, in open mode).
	Callers Limiter
	// DenialAudit, when set, rate-limits the audit entries of requests refused without a valid
	// credential: past it they are counted in usage_exporter_audit_denials_suppressed_total
	// rather than written, so anonymous traffic cannot grow the store without bound.
	DenialAudit *rate.Limiter
}

// Limiter bounds the requests in flight of one caller (limit.Requests.Acquire). When refusing,
// it answers w itself.
type Limiter interface {
	Acquire(w http.ResponseWriter, caller string) (release func(), ok bool)
}

// Guard authenticates, authorizes and audits requests.
type Guard struct {
	o         Options
	auth      atomic.Pointer[auth.Authenticator] // swapped on config reload
	decisions *prometheus.CounterVec
	// suppressed counts denials not audited (Options.DenialAudit); lastWarn is when the
	// operator was last told, in Unix nanoseconds.
	suppressed prometheus.Counter
	lastWarn   atomic.Int64
}

// Outcomes counted by usage_exporter_guard_decisions_total.
const (
	outcomeAllow           = "allow"
	outcomeDeny            = "deny"
	outcomeUnauthenticated = "unauthenticated"
	outcomeError           = "error"
	outcomeLimited         = "limited"
)

// kindNone is the principal kind audited for a request without a valid credential.
const kindNone = "none"

// suppressWarnEvery spaces the warnings about suppressed denial audits.
const suppressWarnEvery = time.Minute

// New builds a Guard.
func New(o Options) (*Guard, error) {
	if o.Auth == nil || o.Authz == nil {
		return nil, errors.New("guard: an authenticator and a policy engine are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Realm == "" {
		o.Realm = "usagemeter"
	}
	g := &Guard{o: o, decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "usage_exporter_guard_decisions_total",
		Help: "Requests decided by the guard, by route action and outcome (allow, deny, unauthenticated, error, limited).",
	}, []string{"action", "outcome"}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usage_exporter_audit_denials_suppressed_total",
			Help: "Refusals of requests without a valid credential not written to the audit trail because they passed http.denial_audit_rate.",
		}),
	}
	g.auth.Store(o.Auth)
	return g, nil
}

// ErrWouldOpen refuses a reload that removes every credential: the listen address was chosen
// at start for an authenticated server, and open mode there would expose everything.
var ErrWouldOpen = errors.New("guard: the new auth config has no credentials (open mode needs a restart)")

// SetAuthenticator replaces the authenticator (config reload). Requests in flight finish with
// the old one.
func (g *Guard) SetAuthenticator(a *auth.Authenticator) error {
	if a == nil {
		return errors.New("guard: nil authenticator")
	}
	if a.Open() && !g.auth.Load().Open() {
		return ErrWouldOpen
	}
	g.auth.Store(a)
	return nil
}

// Handle registers each route on mux as "METHOD pattern" (any method when Method is empty),
// wrapped.
func (g *Guard) Handle(mux *http.ServeMux, routes ...route.Route) {
	for _, rt := range routes {
		pattern := rt.Pattern
		if rt.Method != "" {
			pattern = rt.Method + " " + pattern
		}
		mux.Handle(pattern, g.Wrap(rt))
	}
}

type ctxKey struct{}

// PrincipalFrom returns the principal the guard authenticated for this request.
func PrincipalFrom(ctx context.Context) (auth.Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(auth.Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p (for handlers called outside the guard, and tests).
func WithPrincipal(ctx context.Context, p auth.Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// Wrap returns the guarded handler of rt.
func (g *Guard) Wrap(rt route.Route) http.Handler {
	if rt.Action == route.ActionPublic {
		return g.public(rt)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// The actions the handler's Check calls allow, for the route's audit entry.
		r = r.WithContext(context.WithValue(r.Context(), checkedKey{}, &checked{}))
		in := g.input(r, rt.Action, route.Tenant(r), User(r))
		p, err := g.authenticate(r)
		if err != nil {
			release, ok := g.acquire(w, limit.RemoteIP(r), rt.Action)
			if !ok {
				return
			}
			defer release()
			in.Principal.Kind = kindNone
			g.decisions.WithLabelValues(rt.Action, outcomeUnauthenticated).Inc()
			d := authz.Decision{Reason: err.Error()}
			audited := g.admitAudit(in, d)
			g.unauthorized(w, r, err, audited || g.o.Audit == nil)
			if audited {
				g.appendAudit(r, start, in, d, http.StatusUnauthorized)
			}
			return
		}
		caller := p.Kind + ":" + p.Subject
		if p.Kind == auth.KindAnonymous {
			caller = limit.RemoteIP(r)
		}
		release, ok := g.acquire(w, caller, rt.Action)
		if !ok {
			return
		}
		defer release()
		in.Principal = authz.Principal(p)
		d, err := g.o.Authz.Decide(r.Context(), in)
		if err != nil {
			// Fail closed: no decision is a refusal, and a server fault rather than the caller's.
			g.o.Logger.Error("authorization failed", "action", rt.Action, "path", r.URL.Path, "err", err)
			g.decisions.WithLabelValues(rt.Action, outcomeError).Inc()
			problem.Error(w, http.StatusInternalServerError, "authorization is unavailable")
			g.audit(r, start, in, authz.Decision{Reason: "policy error: " + err.Error()}, http.StatusInternalServerError)
			return
		}
		if !d.Allow {
			g.decisions.WithLabelValues(rt.Action, outcomeDeny).Inc()
			problem.Write(w, problem.Details{Status: http.StatusForbidden, Detail: d.Reason})
			g.audit(r, start, in, d, http.StatusForbidden)
			return
		}
		g.decisions.WithLabelValues(rt.Action, outcomeAllow).Inc()
		sw := &statusWriter{ResponseWriter: w}
		rt.Handler.ServeHTTP(sw, r.WithContext(WithPrincipal(r.Context(), p)))
		if rt.Audit {
			g.audit(r, start, in, d, sw.Status())
		}
	})
}

// public routes authenticate by other means (probes, signed webhooks); they are audited when
// they refuse a request: a 401 or 403, or any refusal the handler reports with Refuse (a
// webhook answers a bad signature with 400, as its sender expects).
func (g *Guard) public(rt route.Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		ref := &refusal{}
		rt.Handler.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), refusalKey{}, ref)))
		s := sw.Status()
		if !ref.refused && s != http.StatusUnauthorized && s != http.StatusForbidden {
			return
		}
		in := g.input(r, rt.Action, route.Tenant(r), "")
		in.Principal.Kind = kindNone
		reason := "refused by the handler"
		if ref.refused {
			in.Principal.Subject, reason = ref.subject, ref.reason
		}
		g.audit(r, start, in, authz.Decision{Reason: reason}, s)
	})
}

// MaxRefusalReason caps what a refusal puts in the audit trail: its reason usually quotes
// what the sender sent (an event id, a signature header), which the sender can make any size.
const MaxRefusalReason = 256

type refusalKey struct{}

type refusal struct {
	refused         bool
	subject, reason string
}

// Refuse tells the guard that a public route's handler refused r, and why: the guard audits
// the refusal with the status the handler answers. subject names the claimed sender (e.g.
// "stripe"). Both are cut to MaxRefusalReason bytes. Outside a guarded public route it does
// nothing.
func Refuse(r *http.Request, subject, reason string) {
	ref, ok := r.Context().Value(refusalKey{}).(*refusal)
	if !ok {
		return
	}
	ref.refused, ref.subject, ref.reason = true, Truncate(subject, MaxRefusalReason), Truncate(reason, MaxRefusalReason)
}

// Truncate cuts s to at most n bytes on a UTF-8 boundary, marking the cut with "...".
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "..."
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// Check asks the policies about an action beyond the route's own, for handlers whose request
// decides what is needed: per-user detail (group_by=user needs usage.read_users) or each
// tenant named inside an ingested batch. It answers for the principal the guard put in r's
// context; a denial is returned as an error wrapping ErrForbidden with the policy's reason.
func (g *Guard) Check(r *http.Request, action, tenant, user string) error {
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		return fmt.Errorf("%w: request not authenticated by the guard", ErrForbidden)
	}
	in := g.input(r, action, tenant, user)
	in.Principal = authz.Principal(p)
	d, err := g.o.Authz.Decide(r.Context(), in)
	if err != nil {
		return fmt.Errorf("authorize %s: %w", action, err)
	}
	if !d.Allow {
		g.decisions.WithLabelValues(action, outcomeDeny).Inc()
		g.audit(r, time.Now(), in, d, http.StatusForbidden)
		return fmt.Errorf("%w: %s", ErrForbidden, d.Reason)
	}
	if c, ok := r.Context().Value(checkedKey{}).(*checked); ok {
		c.mu.Lock()
		if !slices.Contains(c.actions, action) {
			c.actions = append(c.actions, action)
		}
		c.mu.Unlock()
	}
	return nil
}

type checkedKey struct{}

// checked collects the actions Check allowed during one request (a handler may check from
// several goroutines).
type checked struct {
	mu      sync.Mutex
	actions []string
}

// MaxAuditedQuery caps the query string an audit entry keeps: enough for every parameter the
// API takes, while a client cannot grow the trail with a long URL.
const MaxAuditedQuery = 512

// auditedQuery is r's query string as the trail keeps it: parameters whose name suggests a
// credential are dropped (the API never takes one there, but a client may send one anyway),
// and the rest is cut to MaxAuditedQuery bytes.
func auditedQuery(r *http.Request) string {
	raw := r.URL.RawQuery
	if raw == "" {
		return ""
	}
	var kept []string
	for _, p := range strings.Split(raw, "&") {
		name, _, _ := strings.Cut(p, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if credentialParam(name) {
			continue
		}
		kept = append(kept, p)
	}
	return Truncate(strings.Join(kept, "&"), MaxAuditedQuery)
}

func credentialParam(name string) bool {
	name = strings.ToLower(name)
	for _, s := range []string{"token", "key", "secret", "password", "signature", "auth"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// Allowed reports whether the principal the guard put in r's context holds action on tenant,
// without auditing or counting the answer: for handlers that choose what to show (a report's
// scope), not whether to answer. A policy error is a no.
func (g *Guard) Allowed(r *http.Request, action, tenant string) bool {
	p, ok := PrincipalFrom(r.Context())
	if !ok {
		return false
	}
	in := g.input(r, action, tenant, "")
	in.Principal = authz.Principal(p)
	d, err := g.o.Authz.Decide(r.Context(), in)
	return err == nil && d.Allow
}

// ErrForbidden is wrapped by Check's denials; handlers answer it with 403.
var ErrForbidden = errors.New("forbidden")

// Describe implements prometheus.Collector (usage_exporter_guard_decisions_total,
// usage_exporter_audit_denials_suppressed_total).
func (g *Guard) Describe(ch chan<- *prometheus.Desc) {
	g.decisions.Describe(ch)
	g.suppressed.Describe(ch)
}

// Collect implements prometheus.Collector.
func (g *Guard) Collect(ch chan<- prometheus.Metric) {
	g.decisions.Collect(ch)
	g.suppressed.Collect(ch)
}

// acquire takes one of caller's request slots; when refused, the answer (429) is sent.
func (g *Guard) acquire(w http.ResponseWriter, caller, action string) (func(), bool) {
	if g.o.Callers == nil {
		return func() {}, true
	}
	release, ok := g.o.Callers.Acquire(w, caller)
	if !ok {
		g.decisions.WithLabelValues(action, outcomeLimited).Inc()
	}
	return release, ok
}

// User is the user a request is about: the {user} path value, else the user query parameter.
func User(r *http.Request) string {
	if u := r.PathValue("user"); u != "" {
		return u
	}
	return r.URL.Query().Get("user")
}

func (g *Guard) input(r *http.Request, action, tenant, user string) authz.Input {
	return authz.Input{Action: action, Tenant: tenant, User: user, Method: r.Method, Path: r.URL.Path}
}

func (g *Guard) authenticate(r *http.Request) (auth.Principal, error) {
	a := g.auth.Load()
	if a.Open() {
		return Anonymous, nil
	}
	return a.Authenticate(r)
}

// unauthorized answers 401 with an RFC 6750 challenge. A bad credential is logged when its
// denial was audited (the same rate limit keeps the log from flooding), with a bounded path.
func (g *Guard) unauthorized(w http.ResponseWriter, r *http.Request, err error, audited bool) {
	challenge := fmt.Sprintf("Bearer realm=%q", g.o.Realm)
	detail := "credentials required: Authorization: Bearer <token>, or " + auth.APIKeyHeader
	if !errors.Is(err, auth.ErrNoCredentials) {
		challenge += `, error="invalid_token"`
		detail = err.Error()
		if audited {
			g.o.Logger.Info("authentication failed", "path", audit.Bound(r.URL.Path, audit.DefaultMaxFieldBytes), "remote", r.RemoteAddr, "err", err)
		}
	}
	w.Header().Set("WWW-Authenticate", challenge)
	problem.Write(w, problem.Details{Status: http.StatusUnauthorized, Detail: detail})
}

// audit writes the trail's entry of a request, unless admitAudit refuses it.
func (g *Guard) audit(r *http.Request, start time.Time, in authz.Input, d authz.Decision, status int) {
	if g.admitAudit(in, d) {
		g.appendAudit(r, start, in, d, status)
	}
}

// admitAudit reports whether a request's entry is to be written: always, except denials
// without a valid credential past Options.DenialAudit, which are counted instead.
func (g *Guard) admitAudit(in authz.Input, d authz.Decision) bool {
	if g.o.Audit == nil {
		return false
	}
	if d.Allow || in.Principal.Kind != kindNone || g.o.DenialAudit == nil || g.o.DenialAudit.Allow() {
		return true
	}
	g.suppressed.Inc()
	now := time.Now().UnixNano()
	if last := g.lastWarn.Load(); now-last >= int64(suppressWarnEvery) && g.lastWarn.CompareAndSwap(last, now) {
		g.o.Logger.Warn("requests without a valid credential are refused faster than http.denial_audit_rate: the refusals past it are counted in usage_exporter_audit_denials_suppressed_total, not audited one by one",
			"rate_per_second", float64(g.o.DenialAudit.Limit()), "burst", g.o.DenialAudit.Burst())
	}
	return false
}

// appendAudit writes the entry, with the query string and the extra actions the handler checked.
func (g *Guard) appendAudit(r *http.Request, start time.Time, in authz.Input, d authz.Decision, status int) {
	var checks string
	if c, ok := r.Context().Value(checkedKey{}).(*checked); ok && d.Allow {
		c.mu.Lock()
		checks = strings.Join(c.actions, ",")
		c.mu.Unlock()
	}
	// The entry is written even if the client went away: the trail must not depend on it.
	ctx := context.WithoutCancel(r.Context())
	_, err := g.o.Audit.Append(ctx, audit.Entry{
		Time: start, Subject: in.Principal.Subject, Kind: in.Principal.Kind,
		Action: in.Action, Method: in.Method, Path: in.Path, Tenant: in.Tenant,
		Query: auditedQuery(r), Checked: checks,
		Allow: d.Allow, Reason: d.Reason, Status: status,
	})
	if err != nil {
		g.o.Logger.Error("audit entry not written", "action", in.Action, "path", audit.Bound(in.Path, audit.DefaultMaxFieldBytes), "err", err)
	}
}

// statusWriter records the status a handler answered; Unwrap keeps http.ResponseController
// (flushing of streamed exports) working through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush() // a writer that cannot flush just buffers
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Status is the status sent, 200 when the handler wrote nothing.
func (w *statusWriter) Status() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

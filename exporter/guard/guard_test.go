package guard_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/auth"
	"github.com/usagemeter/usagemeter/exporter/authz"
	"github.com/usagemeter/usagemeter/exporter/guard"
	"github.com/usagemeter/usagemeter/exporter/guard/guardtest"
)

var quiet = slog.New(slog.DiscardHandler)

// creds are the plaintext credentials of the test config.
type creds struct{ acmeAdmin, globexAdmin, sre, ingestAcme string }

// setup builds a guard from a real config file section, the embedded policies and an audit
// log in a real Pebble database.
func setup(t *testing.T, log *audit.Log, opts ...func(*guard.Options)) (*guard.Guard, creds) {
	t.Helper()
	var c creds
	var hashes [4]string
	for i, p := range []*string{&c.acmeAdmin, &c.globexAdmin, &c.sre, &c.ingestAcme} {
		*p, hashes[i] = auth.NewAPIKey()
	}
	doc := fmt.Sprintf(`
tokens:
  - {subject: ann, hash: %s, roles: [saas_admin], tenants: [acme]}
  - {subject: gus, hash: %s, roles: [saas_admin], tenants: [globex]}
  - {subject: sam, hash: %s, roles: [sre]}
api_keys:
  - {name: acme-ingest, hash: %s, tenants: [acme]}
`, hashes[0], hashes[1], hashes[2], hashes[3])
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	cfg, err := auth.ParseConfig(&n)
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(context.Background(), cfg, auth.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return newGuard(t, a, log, opts...), c
}

func newGuard(t *testing.T, a *auth.Authenticator, log *audit.Log, opts ...func(*guard.Options)) *guard.Guard {
	t.Helper()
	engine, err := authz.New(context.Background(), authz.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	o := guard.Options{Auth: a, Authz: engine, Audit: log, Logger: quiet}
	for _, set := range opts {
		set(&o)
	}
	g, err := guard.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func newAudit(t *testing.T) *audit.Log {
	t.Helper()
	db, err := pebble.Open(t.TempDir(), &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(db, audit.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); db.Close() })
	return l
}

type quietPebble struct{}

func (quietPebble) Infof(string, ...any)              {}
func (quietPebble) Errorf(string, ...any)             {}
func (quietPebble) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// routes is a small API like the server's: each handler reports the principal it was given.
func routes(t *testing.T, g *guard.Guard) []route.Route {
	who := func(w http.ResponseWriter, r *http.Request) {
		p, ok := guard.PrincipalFrom(r.Context())
		if !ok {
			t.Error("handler called without a principal")
		}
		_ = json.NewEncoder(w).Encode(p)
	}
	return []route.Route{
		{Method: "GET", Pattern: "/v1/usage", Action: route.ActionUsageRead, Audit: true, Handler: func(w http.ResponseWriter, r *http.Request) {
			// Per-user detail is a separate permission, checked by the handler.
			if strings.Contains(r.URL.Query().Get("group_by"), "user") {
				if err := g.Check(r, route.ActionUsageUserRead, route.Tenant(r), ""); err != nil {
					problem.Error(w, http.StatusForbidden, err.Error())
					return
				}
			}
			who(w, r)
		}},
		{Method: "POST", Pattern: "/v1/events", Action: route.ActionIngest, Handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
		}},
		{Method: "GET", Pattern: "/v1/tenants/{tenant}/quotas", Action: route.ActionQuotasRead, Audit: true, Handler: who},
		{Method: "GET", Pattern: "/v1/meters", Action: route.ActionMetersRead, Handler: who},
		{Method: "GET", Pattern: "/v1/audit", Action: route.ActionAuditRead, Audit: true, Handler: who},
		{Pattern: "/v1/admin/reload", Action: route.ActionAdmin, Audit: true, Handler: who}, // any method
		{Method: "GET", Pattern: "/-/healthy", Action: route.ActionPublic, Handler: func(w http.ResponseWriter, r *http.Request) {}},
		{Method: "POST", Pattern: "/v1/webhooks/pay", Action: route.ActionPublic, Handler: func(w http.ResponseWriter, r *http.Request) {
			problem.Error(w, http.StatusUnauthorized, "bad signature")
		}},
	}
}

func mux(g *guard.Guard, rts []route.Route) http.Handler {
	m := http.NewServeMux()
	g.Handle(m, rts...)
	return m
}

func do(h http.Handler, method, target, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func entries(t *testing.T, l *audit.Log) []audit.Entry {
	t.Helper()
	es, err := l.List(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestGuard(t *testing.T) {
	log := newAudit(t)
	g, c := setup(t, log)
	h := mux(g, routes(t, g))

	cases := []struct {
		name, method, target, token string
		status                      int
		audited                     bool
		subject                     string // principal the handler must see (when 200)
	}{
		{"no credentials", "GET", "/v1/usage?tenant=acme", "", 401, true, ""},
		{"unknown token", "GET", "/v1/usage?tenant=acme", "um_nope", 401, true, ""},
		{"own tenant", "GET", "/v1/usage?tenant=acme", c.acmeAdmin, 200, true, "ann"},
		{"own tenant per-user detail", "GET", "/v1/usage?tenant=acme&group_by=user", c.acmeAdmin, 200, true, "ann"},
		{"sre no per-user detail", "GET", "/v1/usage?tenant=acme&group_by=user", c.sre, 403, true, ""},
		{"other tenant", "GET", "/v1/usage?tenant=acme", c.globexAdmin, 403, true, ""},
		{"other tenant in path", "GET", "/v1/tenants/acme/quotas", c.globexAdmin, 403, true, ""},
		{"own tenant in path", "GET", "/v1/tenants/globex/quotas", c.globexAdmin, 200, true, "gus"},
		{"sre aggregates", "GET", "/v1/usage", c.sre, 200, true, "sam"},
		{"audit needs platform admin", "GET", "/v1/audit", c.sre, 403, true, ""},
		{"catalogue", "GET", "/v1/meters", c.acmeAdmin, 200, false, "ann"},
		{"ingest not audited", "POST", "/v1/events", c.ingestAcme, 202, false, ""},
		{"ingest key cannot read", "GET", "/v1/usage?tenant=acme", c.ingestAcme, 403, true, ""},
		{"public probe", "GET", "/-/healthy", "", 200, false, ""},
		{"public refusal audited", "POST", "/v1/webhooks/pay", "", 401, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(entries(t, log))
			rec := do(h, tc.method, tc.target, tc.token)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status >= 400 && rec.Header().Get("Content-Type") != problem.ContentType {
				t.Errorf("error answered as %q", rec.Header().Get("Content-Type"))
			}
			if tc.status == 401 && tc.token != "" && !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q", rec.Header().Get("WWW-Authenticate"))
			}
			if tc.subject != "" {
				var p auth.Principal
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Subject != tc.subject {
					t.Errorf("handler saw %+v (%v), want subject %s", p, err, tc.subject)
				}
			}
			after := entries(t, log)
			if got := len(after) > before; got != tc.audited {
				t.Fatalf("audited = %v, want %v", got, tc.audited)
			}
			// The route's entry records the status answered; a denial (by the guard or by a
			// handler's Check) is recorded as one.
			var sawStatus, sawDeny bool
			for _, e := range after[before:] {
				sawStatus = sawStatus || (e.Status == tc.status && e.Method == tc.method && e.Reason != "")
				sawDeny = sawDeny || !e.Allow
			}
			if tc.audited && (!sawStatus || sawDeny != (tc.status >= 400)) {
				t.Errorf("audit entries %+v for status %d", after[before:], tc.status)
			}
		})
	}
	if res, err := log.Verify(context.Background()); err != nil || res.Entries == 0 {
		t.Fatalf("audit chain: %+v, %v", res, err)
	}
	// Outcomes by action: the unauthenticated pair, the denials and the allowed requests above.
	if err := testutil.CollectAndCompare(g, strings.NewReader(`
# HELP usage_exporter_guard_decisions_total Requests decided by the guard, by route action and outcome (allow, deny, unauthenticated, error, limited).
# TYPE usage_exporter_guard_decisions_total counter
usage_exporter_guard_decisions_total{action="audit.read",outcome="deny"} 1
usage_exporter_guard_decisions_total{action="events.ingest",outcome="allow"} 1
usage_exporter_guard_decisions_total{action="meters.read",outcome="allow"} 1
usage_exporter_guard_decisions_total{action="quotas.read",outcome="allow"} 1
usage_exporter_guard_decisions_total{action="quotas.read",outcome="deny"} 1
usage_exporter_guard_decisions_total{action="usage.read",outcome="allow"} 4
usage_exporter_guard_decisions_total{action="usage.read",outcome="deny"} 2
usage_exporter_guard_decisions_total{action="usage.read",outcome="unauthenticated"} 2
usage_exporter_guard_decisions_total{action="usage.read_users",outcome="deny"} 1
`), "usage_exporter_guard_decisions_total"); err != nil {
		t.Error(err)
	}
}

func TestOpenModeIsAnonymousPlatformAdmin(t *testing.T) {
	a, err := auth.New(context.Background(), auth.Config{}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := newGuard(t, a, nil)
	h := mux(g, routes(t, g))
	rec := do(h, "GET", "/v1/audit", "")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"anonymous"`) {
		t.Fatalf("open mode: %d %s", rec.Code, rec.Body)
	}
}

func TestSetAuthenticator(t *testing.T) {
	g, c := setup(t, nil)
	h := mux(g, routes(t, g))
	if rec := do(h, "GET", "/v1/usage?tenant=acme", c.acmeAdmin); rec.Code != 200 {
		t.Fatalf("before reload: %d", rec.Code)
	}
	// Reload with a config that only knows a new token: the old one stops working.
	token, hash := auth.NewAPIKey()
	h2, err := yamlAuth(t, "tokens:\n  - {subject: zed, hash: "+hash+", roles: [sre]}\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetAuthenticator(h2); err != nil {
		t.Fatal(err)
	}
	if rec := do(h, "GET", "/v1/usage?tenant=acme", c.acmeAdmin); rec.Code != 401 {
		t.Errorf("removed token after reload: %d", rec.Code)
	}
	if rec := do(h, "GET", "/v1/usage?tenant=acme", token); rec.Code != 200 {
		t.Errorf("new token after reload: %d", rec.Code)
	}
	open, _ := auth.New(context.Background(), auth.Config{}, auth.Options{})
	if err := g.SetAuthenticator(open); !errors.Is(err, guard.ErrWouldOpen) {
		t.Errorf("reload into open mode: %v", err)
	}
	if rec := do(h, "GET", "/v1/usage?tenant=acme", ""); rec.Code != 401 {
		t.Errorf("after a refused reload into open mode: %d", rec.Code)
	}
}

func yamlAuth(t *testing.T, doc string) (*auth.Authenticator, error) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		return nil, err
	}
	cfg, err := auth.ParseConfig(&n)
	if err != nil {
		return nil, err
	}
	return auth.New(context.Background(), cfg, auth.Options{Logger: quiet})
}

func TestCheckOutsideGuard(t *testing.T) {
	a, _ := auth.New(context.Background(), auth.Config{}, auth.Options{})
	g := newGuard(t, a, nil)
	r := httptest.NewRequest("GET", "/", nil)
	if err := g.Check(r, route.ActionUsageRead, "acme", ""); !errors.Is(err, guard.ErrForbidden) {
		t.Errorf("Check without a principal: %v", err)
	}
}

func TestNewRequiresComponents(t *testing.T) {
	if _, err := guard.New(guard.Options{}); err == nil {
		t.Error("guard without authenticator and engine")
	}
}

// recorder collects the failures guardtest reports.
type recorder struct{ errs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, a ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, a...))
}

func TestAssertAllRoutesProtected(t *testing.T) {
	g, c := setup(t, nil)
	rts := routes(t, g)
	cr := guardtest.Creds{Tenant: "acme", OtherTenant: "Bearer " + c.globexAdmin}

	var ok recorder
	guardtest.AssertAllRoutesProtected(&ok, mux(g, rts), rts, cr)
	if len(ok.errs) != 0 {
		t.Fatalf("guarded routes reported: %v", ok.errs)
	}

	// A route mounted without the guard is caught (401 expected, 200 seen).
	leaky := http.NewServeMux()
	g.Handle(leaky, rts[1:]...)
	leaky.HandleFunc("GET /v1/usage", func(w http.ResponseWriter, r *http.Request) {})
	var bad recorder
	guardtest.AssertAllRoutesProtected(&bad, leaky, rts, cr)
	if len(bad.errs) != 2 || !strings.Contains(bad.errs[0], "GET /v1/usage: unauthenticated request answered 200") {
		t.Fatalf("unguarded route: %q", bad.errs)
	}

	// A route guarded with a tenant-blind action is caught too (403 expected).
	blind := append([]route.Route(nil), rts...)
	blind[2].Action = route.ActionMetersRead // quotas under the catalogue action: any tenant may read
	var bad2 recorder
	withBlind := append([]route.Route(nil), rts...)
	guardtest.AssertAllRoutesProtected(&bad2, mux(g, blind), withBlind, cr)
	if len(bad2.errs) != 1 || !strings.Contains(bad2.errs[0], "another tenant's principal answered 200") {
		t.Fatalf("tenant-blind route: %q", bad2.errs)
	}
}

func TestPath(t *testing.T) {
	for pattern, want := range map[string]string{
		"/v1/tenants/{tenant}/quotas": "/v1/tenants/acme/quotas",
		"/v1/users/{user}/usage":      "/v1/users/user/usage",
		"/v1/files/{path...}":         "/v1/files/path",
		"/v1/x/{$}":                   "/v1/x/$",
	} {
		if got := guardtest.Path(pattern, "acme"); got != want {
			t.Errorf("Path(%q) = %q, want %q", pattern, got, want)
		}
	}
}

func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijkl", 10, "abcdefg..."},
		{"ééééééé", 10, "ééé..."}, // never cuts a rune in half
	} {
		got := guard.Truncate(c.in, c.n)
		if got != c.want || len(got) > c.n || !utf8.ValidString(got) {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

// TestAuditRecordsQueryAndPerUserFact: an audited read records its query string (capped, and
// without credential-like parameters) and the further permissions the handler checked, so a
// per-user read does not look like an aggregate one in the trail.
func TestAuditRecordsQueryAndPerUserFact(t *testing.T) {
	log := newAudit(t)
	g, c := setup(t, log)
	h := mux(g, routes(t, g))
	last := func() audit.Entry {
		es := entries(t, log)
		return es[len(es)-1]
	}
	if rec := do(h, "GET", "/v1/usage?tenant=acme&meter=ai_tokens", c.acmeAdmin); rec.Code != 200 {
		t.Fatalf("aggregate read: %d", rec.Code)
	}
	agg := last()
	if agg.Query != "tenant=acme&meter=ai_tokens" || agg.Checked != "" {
		t.Errorf("aggregate read audited as query %q, checked %v", agg.Query, agg.Checked)
	}
	if rec := do(h, "GET", "/v1/usage?tenant=acme&meter=ai_tokens&group_by=user", c.acmeAdmin); rec.Code != 200 {
		t.Fatalf("per-user read: %d", rec.Code)
	}
	per := last()
	if !strings.Contains(per.Query, "group_by=user") || per.Checked != route.ActionUsageUserRead {
		t.Errorf("per-user read audited as query %q, checked %v", per.Query, per.Checked)
	}
	// A query string of any size is cut; the per-user fact survives the cut.
	if rec := do(h, "GET", "/v1/usage?tenant=acme&pad="+strings.Repeat("x", 10_000)+"&group_by=user", c.acmeAdmin); rec.Code != 200 {
		t.Fatalf("long read: %d", rec.Code)
	}
	long := last()
	if len(long.Query) > guard.MaxAuditedQuery || !strings.HasPrefix(long.Query, "tenant=acme&pad=xxx") || long.Checked != route.ActionUsageUserRead {
		t.Errorf("long read audited as %d bytes of query, checked %v", len(long.Query), long.Checked)
	}
	// Credential-like parameters are never written, whatever their value.
	if rec := do(h, "GET", "/v1/usage?tenant=acme&access_token=um_leaked&api_key=um_leaked2", c.acmeAdmin); rec.Code != 200 {
		t.Fatalf("read: %d", rec.Code)
	}
	if q := last().Query; strings.Contains(q, "um_leaked") || !strings.Contains(q, "tenant=acme") {
		t.Errorf("credential in the audited query %q", q)
	}
	// Denials record the query too.
	if rec := do(h, "GET", "/v1/usage?tenant=acme&group_by=user", c.sre); rec.Code != 403 {
		t.Fatalf("sre per-user read: %d", rec.Code)
	}
	es := entries(t, log)
	if d := es[len(es)-2]; d.Allow || d.Action != route.ActionUsageUserRead || d.Query != "tenant=acme&group_by=user" {
		t.Errorf("denial audited as %+v", d)
	}
}

// TestAllowedIsNotAudited: Allowed answers for the request's principal and writes nothing.
func TestAllowedIsNotAudited(t *testing.T) {
	log := newAudit(t)
	g, c := setup(t, log)
	var got []bool
	h := mux(g, []route.Route{{Method: "GET", Pattern: "/v1/reports/compliance", Action: route.ActionReportsExport, Handler: func(w http.ResponseWriter, r *http.Request) {
		got = append(got, g.Allowed(r, route.ActionAuditRead, ""), g.Allowed(r, route.ActionUsageRead, "acme"))
	}}})
	if rec := do(h, "GET", "/v1/reports/compliance?tenant=acme", c.acmeAdmin); rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	if len(got) != 2 || got[0] || !got[1] {
		t.Errorf("Allowed(audit.read, usage.read) = %v, want [false true]", got)
	}
	if n := len(entries(t, log)); n != 0 {
		t.Errorf("Allowed wrote %d audit entries", n)
	}
}

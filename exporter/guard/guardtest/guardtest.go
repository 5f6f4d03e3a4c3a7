// Package guardtest proves, in the server's tests, that every registered route is guarded:
// an unauthenticated request gets 401 and a request by a principal of another tenant gets 403,
// so a new route cannot skip authentication or authorization unnoticed.
package guardtest

import (
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"

	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/api/route"
)

// T is the part of testing.TB used here (so this package can be tested with a recorder).
type T interface {
	Helper()
	Errorf(format string, args ...any)
}

// TenantIndependent lists actions whose data belongs to no tenant (the meter and plan
// catalogue): a principal of any tenant may be allowed them, so no 403 is expected.
var TenantIndependent = map[string]bool{route.ActionMetersRead: true, route.ActionPlansRead: true}

// Creds names the requests' tenant and a credential scoped to another one.
type Creds struct {
	// Tenant is put in every request: the {tenant} path value, else the tenant query parameter.
	Tenant string
	// OtherTenant is an Authorization header value of a principal that holds tenant-scoped
	// roles (e.g. saas_admin) on tenants other than Tenant only.
	OtherTenant string
}

var wildcard = regexp.MustCompile(`\{([^}.]*)(\.\.\.)?\}`)

// Path turns a route pattern into a request path: {tenant} becomes tenant, any other
// wildcard its own name.
func Path(pattern, tenant string) string {
	return wildcard.ReplaceAllStringFunc(pattern, func(m string) string {
		name := wildcard.FindStringSubmatch(m)[1]
		if name == "tenant" {
			return url.PathEscape(tenant)
		}
		if name == "" {
			return "x"
		}
		return name
	})
}

// AssertAllRoutesProtected sends every non-public route an unauthenticated request (401,
// problem+json, WWW-Authenticate) and a request with c.OtherTenant (403 unless the action is
// TenantIndependent) through h, the server's complete handler.
func AssertAllRoutesProtected(t T, h http.Handler, routes []route.Route, c Creds) {
	t.Helper()
	if len(routes) == 0 {
		t.Errorf("no routes to check")
	}
	for _, rt := range routes {
		if rt.Action == route.ActionPublic {
			continue
		}
		method := rt.Method
		if method == "" {
			method = http.MethodGet
		}
		name := method + " " + rt.Pattern
		target := Path(rt.Pattern, c.Tenant)
		if !strings.Contains(rt.Pattern, "{tenant}") {
			target += "?tenant=" + url.QueryEscape(c.Tenant)
		}

		resp := serve(h, method, target, "")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: unauthenticated request answered %d, want 401", name, resp.StatusCode)
		} else {
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: 401 without WWW-Authenticate", name)
			}
			checkProblem(t, name, resp)
		}

		if TenantIndependent[rt.Action] {
			continue
		}
		resp = serve(h, method, target, c.OtherTenant)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s (action %s): request by another tenant's principal answered %d, want 403", name, rt.Action, resp.StatusCode)
		} else {
			checkProblem(t, name, resp)
		}
	}
}

func serve(h http.Handler, method, target, authorization string) *http.Response {
	var body io.Reader
	if method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		body = strings.NewReader("{}")
	}
	req := httptest.NewRequest(method, target, body)
	req.RemoteAddr = "127.0.0.1:12345"
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func checkProblem(t T, name string, resp *http.Response) {
	t.Helper()
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != problem.ContentType {
		t.Errorf("%s: %d answered as %q, want %s", name, resp.StatusCode, mt, problem.ContentType)
	}
}

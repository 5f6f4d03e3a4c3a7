package usagemeter

import (
	"context"
	"strings"
	"testing"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

// call runs a resource request through the datasource's CallResource (httpadapter).
func call(t *testing.T, d *Datasource, u *backend.User, path string) (int, string) {
	t.Helper()
	var status int
	var body strings.Builder
	err := d.CallResource(context.Background(), &backend.CallResourceRequest{PluginContext: backend.PluginContext{User: u}, Path: "export", Method: "GET", URL: path},
		backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error {
			if status == 0 {
				status = r.Status
			}
			body.Write(r.Body)
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	return status, body.String()
}

func TestExports(t *testing.T) {
	fs := newFixtureServer(t)
	d := newTestDatasource(t, fs.URL, settingsJSON(fs.URL))
	status, body := call(t, d, admin, "export?report=invoices&format=csv&tenant=acme&from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z")
	want := "id,number,tenant,period,status,currency,subtotal_minor,amount_due_minor,amount_remaining_minor\n" +
		"INV-2026-0007,INV-2026-0007,acme,2026-11,finalized,EUR,129900,129900,29900\n"
	if status != 200 || body != want {
		t.Errorf("invoices CSV: %d\n%s", status, body)
	}
	status, body = call(t, d, admin, "export?report=invoices&format=json&tenant=acme&from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z")
	if status != 200 || !strings.Contains(body, `"subtotal":129900`) || !strings.Contains(body, `"amounts":"minor units"`) {
		t.Errorf("invoices JSON: %d %s", status, body)
	}
	for _, c := range []struct {
		user   *backend.User
		path   string
		status int
		want   string
	}{
		{admin, "export?report=nope", 400, "report"},
		{admin, "export?report=usage&format=xlsx", 400, "format"},
		{admin, "export?report=usage&from=yesterday", 400, "from"},
		{admin, "export?report=invoices&format=pdf&tenant=acme", 400, "invoice=<id>"},
		{admin, "export?report=compliance&format=pdf", 404, "no fixture"}, // the upstream's problem is passed on
		{nil, "export?report=usage&tenant=acme", 403, "aggregates only"},
		{&backend.User{Login: "ann", Email: "ann@acme.example"}, "export?report=usage&tenant=globex", 403, "not among the principal's tenants"},
	} {
		status, body := call(t, d, c.user, c.path)
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s; want %d and %q", c.path, status, body, c.status, c.want)
		}
	}
}

// TestComplianceExportScope: the exporter renders exports with the datasource's token, not as
// the Grafana user, so the plugin asks for the tenant scope (no server paths, key settings or
// refused principals, docs/analytics.md) for a user who may not read the whole audit trail.
func TestComplianceExportScope(t *testing.T) {
	fs := newFixtureServer(t)
	d := newTestDatasource(t, fs.URL, settingsJSON(fs.URL))
	ann := &backend.User{Login: "ann", Email: "ann@acme.example"}
	for _, c := range []struct {
		user   *backend.User
		tenant string
		scope  bool
	}{
		{ann, "acme", true},
		{admin, "acme", false},
		{admin, "", false},
	} {
		before := len(fs.requests)
		call(t, d, c.user, "export?report=compliance&format=csv&tenant="+c.tenant)
		if len(fs.requests) != before+1 {
			t.Fatalf("%s: %d upstream requests", c.user.Login, len(fs.requests)-before)
		}
		got := strings.Contains(fs.requests[before], "scope=tenant")
		if got != c.scope {
			t.Errorf("%s on %q: upstream %s; tenant scope asked = %v, want %v", c.user.Login, c.tenant, fs.requests[before], got, c.scope)
		}
	}
}

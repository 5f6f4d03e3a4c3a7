package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/auth"
	"github.com/usagemeter/usagemeter/exporter/guard/guardtest"
)

type creds struct{ admin, acmeAdmin, globexAdmin, sre, alice, ingestAcme, checker string }

// secured builds the whole exporter with every kind of credential configured.
func secured(t *testing.T) (*Server, *httptest.Server, creds) {
	t.Helper()
	var c creds
	var hashes []string
	for _, p := range []*string{&c.admin, &c.acmeAdmin, &c.globexAdmin, &c.sre, &c.alice, &c.ingestAcme, &c.checker} {
		key, hash := auth.NewAPIKey()
		*p = key
		hashes = append(hashes, hash)
	}
	cfg := fmt.Sprintf(`
plans:
  - {name: free, enforcement: hard, limits: {ai_tokens: 100}, features: [chat]}
default_plan: free
auth:
  tokens:
    - {subject: root, hash: %q, roles: [platform_admin]}
    - {subject: acme-admin, hash: %q, roles: [saas_admin], tenants: [acme]}
    - {subject: globex-admin, hash: %q, roles: [saas_admin], tenants: [globex]}
    - {subject: oncall, hash: %q, roles: [sre]}
    - {subject: alice, hash: %q, roles: [tenant_user], tenants: [acme]}
  api_keys:
    - {name: acme-ingest, hash: %q, tenants: [acme]}
    - {name: acme-checker, hash: %q, tenants: [acme], roles: [quota_checker]}
`, hashes[0], hashes[1], hashes[2], hashes[3], hashes[4], hashes[5], hashes[6])
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := []string{"127.0.0.1:0"}
	opts := Options{Web: &web.FlagConfig{WebListenAddresses: &addrs}, StoragePath: filepath.Join(dir, "data"), ConfigFile: file, Log: &promslog.Config{}}
	srv, err := Build(context.Background(), opts, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if !srv.AuthEnabled {
		t.Fatal("auth not enabled")
	}
	ts := httptest.NewServer(validating(t, srv.Handler)) // every request is checked against the OpenAPI document
	t.Cleanup(ts.Close)
	return srv, ts, c
}

// TestEveryRouteIsGuarded walks every registered route: without credentials it gets 401, with
// a credential of another tenant 403. A route added without the guard fails this test.
func TestEveryRouteIsGuarded(t *testing.T) {
	srv, _, c := secured(t)
	if len(srv.Routes) < 8 {
		t.Fatalf("only %d routes registered", len(srv.Routes))
	}
	guardtest.AssertAllRoutesProtected(t, srv.Handler, srv.Routes, guardtest.Creds{Tenant: "acme", OtherTenant: "Bearer " + c.globexAdmin})
}

func do(t *testing.T, ts *httptest.Server, method, path, token, ctype, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func event(id, tenant, user string, tokens int) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"s","type":"ai.tokens","time":%q,"data":{"tenant":%q,"user":%q,"feature":"chat","model":"m","input_tokens":%d,"output_tokens":0}}`+"\n",
		id, time.Now().UTC().Format(time.RFC3339), tenant, user, tokens)
}

func TestAuthorizationFlows(t *testing.T) {
	_, ts, c := secured(t)
	nd := "application/x-ndjson"

	// An ingest key acts for its own tenant only, and a batch naming another tenant stores nothing.
	if code, body := do(t, ts, "POST", "/v1/events", c.ingestAcme, nd, event("1", "acme", "alice", 30)+event("2", "acme", "bob", 50)); code != 202 {
		t.Fatalf("ingest own tenant: %d %s", code, body)
	}
	if code, body := do(t, ts, "POST", "/v1/events", c.ingestAcme, nd, event("3", "acme", "alice", 1)+event("4", "globex", "x", 1)); code != 403 || !strings.Contains(body, "globex") {
		t.Fatalf("ingest for another tenant: %d %s", code, body)
	}
	if code, _ := do(t, ts, "POST", "/v1/events", c.acmeAdmin, nd, event("5", "acme", "alice", 1)); code != 403 {
		t.Fatalf("a saas_admin token ingested: %d", code)
	}
	if code, _ := do(t, ts, "GET", "/v1/usage?tenant=acme&meter=ai_tokens", c.ingestAcme, "", ""); code != 403 {
		t.Fatalf("an ingest key read usage: %d", code)
	}

	usage := func(token, query string) (int, int64) {
		code, body := do(t, ts, "GET", "/v1/usage?meter=ai_tokens&"+query, token, "", "")
		var r struct{ Rows []struct{ Value int64 } }
		json.Unmarshal([]byte(body), &r)
		var sum int64
		for _, row := range r.Rows {
			sum += row.Value
		}
		return code, sum
	}
	// Tenant aggregates: saas_admin of acme and sre yes; another tenant's admin no.
	for name, tok := range map[string]string{"acme admin": c.acmeAdmin, "sre": c.sre, "root": c.admin} {
		if code, sum := usage(tok, "tenant=acme"); code != 200 || sum != 80 {
			t.Errorf("%s: %d %d, want 200 80", name, code, sum)
		}
	}
	if code, _ := usage(c.globexAdmin, "tenant=acme"); code != 403 {
		t.Errorf("globex admin read acme: %d", code)
	}
	// Per-user detail is a separate permission: sre may not, saas_admin may.
	if code, _ := usage(c.sre, "tenant=acme&group_by=user"); code != 403 {
		t.Errorf("sre got per-user detail: %d", code)
	}
	if code, sum := usage(c.acmeAdmin, "tenant=acme&group_by=user"); code != 200 || sum != 80 {
		t.Errorf("acme admin per user: %d %d", code, sum)
	}
	// A tenant user sees their own usage only, and must say so.
	if code, sum := usage(c.alice, "tenant=acme&user=alice"); code != 200 || sum != 30 {
		t.Errorf("alice own usage: %d %d, want 200 30", code, sum)
	}
	if code, _ := usage(c.alice, "tenant=acme&user=bob"); code != 403 {
		t.Errorf("alice read bob: %d", code)
	}
	if code, _ := usage(c.alice, "tenant=acme"); code != 403 {
		t.Errorf("alice read the tenant total: %d", code)
	}

	// Quota admission: 80 of 100 used on a hard plan, warning at 80 %.
	check := func(token, body string) (int, map[string]any) {
		code, resp := do(t, ts, "POST", "/v1/quota/check", token, "application/json", body)
		var m map[string]any
		json.Unmarshal([]byte(resp), &m)
		return code, m
	}
	if code, m := check(c.checker, `{"tenant":"acme","meter":"ai_tokens","amount":10,"feature":"chat"}`); code != 200 || m["result"] != "warn" || m["remaining"] != float64(10) {
		t.Errorf("check 10: %d %v", code, m)
	}
	if code, m := check(c.checker, `{"tenant":"acme","meter":"ai_tokens","amount":30,"feature":"chat"}`); code != 200 || m["result"] != "deny" {
		t.Errorf("check 30 past a hard limit: %d %v", code, m)
	}
	if code, m := check(c.checker, `{"tenant":"acme","meter":"ai_tokens","amount":1,"feature":"translate"}`); code != 200 || m["result"] != "deny" {
		t.Errorf("check a feature outside the plan: %d %v", code, m)
	}
	if code, _ := check(c.checker, `{"tenant":"globex","meter":"ai_tokens","amount":1}`); code != 403 {
		t.Errorf("checker on another tenant: %d", code)
	}

	// The audit trail recorded reads and denials; only platform_admin may page through it.
	if code, _ := do(t, ts, "GET", "/v1/audit", c.acmeAdmin, "", ""); code != 403 {
		t.Errorf("saas_admin read the audit trail: %d", code)
	}
	code, body := do(t, ts, "GET", "/v1/audit?limit=1000", c.admin, "", "")
	if code != 200 {
		t.Fatalf("audit: %d %s", code, body)
	}
	var trail struct {
		Entries []struct {
			Subject, Action, Tenant string
			Allow                   bool
			Status                  int
		}
	}
	json.Unmarshal([]byte(body), &trail)
	var sawDenial, sawRead bool
	for _, e := range trail.Entries {
		if !e.Allow && e.Subject == "globex-admin" && e.Tenant == "acme" {
			sawDenial = true
		}
		if e.Allow && e.Action == route.ActionUsageRead && e.Subject == "oncall" {
			sawRead = true
		}
	}
	if !sawDenial || !sawRead {
		t.Errorf("audit trail lacks the denial (%v) or the read (%v): %s", sawDenial, sawRead, body)
	}
}

package server

import (
	"context"
	"encoding/json"
	"io"
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

	"github.com/usagemeter/usagemeter/exporter/api/problem"
)

// open builds the exporter without authentication (loopback) on a config listing one tenant.
func openPlain(t *testing.T) *httptest.Server {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yml")
	cfg := "plans:\n  - {name: free, enforcement: hard, limits: {ai_tokens: 100}}\ndefault_plan: free\ntenants:\n  - {id: configured, plan: free}\n"
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := []string{"127.0.0.1:0"}
	srv, err := Build(context.Background(), Options{Web: &web.FlagConfig{WebListenAddresses: &addrs}, StoragePath: filepath.Join(dir, "data"),
		ConfigFile: file, Log: &promslog.Config{}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ts := httptest.NewServer(srv.Handler)
	t.Cleanup(ts.Close)
	return ts
}

func fetch(t *testing.T, method, url, body string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestUnknownTenantIsNotFound: a read naming a tenant never seen and not configured (a typo)
// answers a 404 problem instead of an empty 200; a configured tenant without usage, and a new
// tenant once its first event is stored, read as before (issue #19).
func TestUnknownTenantIsNotFound(t *testing.T) {
	ts := openPlain(t)
	from := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour).Format(time.RFC3339)
	reads := func(tenant string) []string {
		return []string{
			"/v1/usage?meter=ai_tokens&from=" + from + "&tenant=" + tenant,
			"/v1/tenants/" + tenant + "/quotas",
			"/v1/reports/usage?format=csv&last=24h&tenant=" + tenant,
			"/v1/analytics/engagement?tenant=" + tenant,
			"/v1/tenants/" + tenant + "/plan",
			"/v1/tenants/" + tenant + "/balance",
			"/v1/tenants/" + tenant + "/statement",
		}
	}
	for _, path := range reads("tenant-001") {
		code, h, body := fetch(t, "GET", ts.URL+path, "")
		var p problem.Details
		_ = json.Unmarshal([]byte(body), &p)
		if code != http.StatusNotFound || h.Get("Content-Type") != problem.ContentType || p.Type != problem.TypeUnknownTenant ||
			!strings.Contains(p.Detail, `"tenant-001" has never been seen`) {
			t.Errorf("GET %s: %d %s %s, want a 404 unknown-tenant problem", path, code, h.Get("Content-Type"), body)
		}
	}
	for _, path := range reads("configured") {
		if code, _, body := fetch(t, "GET", ts.URL+path, ""); code != http.StatusOK {
			t.Errorf("GET %s (a configured tenant without usage): %d %s", path, code, body)
		}
	}
	ev := `{"specversion":"1.0","id":"1","source":"t","type":"user.login","data":{"tenant":"newcomer","user":"u"}}`
	if code, _, body := fetch(t, "POST", ts.URL+"/v1/events", ev); code != http.StatusAccepted {
		t.Fatalf("a new tenant's first event: %d %s", code, body)
	}
	for _, path := range reads("newcomer") {
		if code, _, body := fetch(t, "GET", ts.URL+path, ""); code != http.StatusOK {
			t.Errorf("GET %s (a tenant seen once): %d %s", path, code, body)
		}
	}
}

// TestAPIAnswersInItsOwnTerms: /v1/meters uses the config's field names, and paths or methods
// with no route answer problem+json like every other error.
func TestAPIAnswersInItsOwnTerms(t *testing.T) {
	ts := openPlain(t)
	code, _, body := fetch(t, "GET", ts.URL+"/v1/meters", "")
	var meters struct {
		Meters []map[string]any `json:"meters"`
	}
	if err := json.Unmarshal([]byte(body), &meters); code != 200 || err != nil || len(meters.Meters) == 0 {
		t.Fatalf("GET /v1/meters: %d %v %s", code, err, body)
	}
	for _, m := range meters.Meters {
		for k := range m {
			if k != strings.ToLower(k) {
				t.Fatalf("GET /v1/meters has the Go field name %q: %v", k, m)
			}
		}
	}
	if !strings.Contains(body, `"aggregation":"sum"`) || !strings.Contains(body, `"sign":-1`) || !strings.Contains(body, `"labels":[`) {
		t.Errorf("GET /v1/meters lacks snake_case fields: %s", body)
	}

	for _, c := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/v1/nothing-here", 404, ""},
		{"GET", "/v1/usagee", 404, ""},
		{"DELETE", "/v1/meters", 405, "GET, HEAD"},
	} {
		code, h, body := fetch(t, c.method, ts.URL+c.path, "")
		var p problem.Details
		if err := json.Unmarshal([]byte(body), &p); err != nil || code != c.status || p.Status != c.status ||
			h.Get("Content-Type") != problem.ContentType || p.Detail == "" || h.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d %q Allow %q %s, want a %d problem", c.method, c.path, code, h.Get("Content-Type"), h.Get("Allow"), body, c.status)
		}
	}
	if code, h, _ := fetch(t, "GET", ts.URL+"/", ""); code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Errorf("the landing page: %d %s", code, h.Get("Content-Type"))
	}
}

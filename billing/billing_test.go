package billing

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/usagemeter/usagemeter/billing/billingcli"
	"github.com/usagemeter/usagemeter/billing/internal/usagetest"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/exporter/api/route"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// server mounts Routes on a mux the way the exporter does (minus the guard) on 127.0.0.1.
func server(t *testing.T) (*Service, *clock, *usagetest.Usage, *httptest.Server) {
	t.Helper()
	db := usagetest.OpenDB(t)
	u := usagetest.New("storage_bytes")
	c := &clock{t: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)}
	plans := map[string]string{"acme": "pro", "beta": "starter"}
	svc, err := New(Options{DB: db, Catalogue: pricing.Default(), Usage: u, Stock: u.IsStock, Now: c.now,
		DefaultPlan: func(t string) string {
			if p, ok := plans[t]; ok {
				return p
			}
			return "free"
		}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, r := range svc.Routes() {
		if r.Action == "" {
			t.Fatalf("route %s %s has no action", r.Method, r.Pattern)
		}
		mux.HandleFunc(r.Method+" "+r.Pattern, r.Handler)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return svc, c, u, srv
}

func call(t *testing.T, method, url, accept string, body any) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, url, rd)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func TestRoutesActions(t *testing.T) {
	svc, _, _, _ := server(t)
	want := map[string]string{
		"GET /v1/invoices":                 route.ActionBillingRead,
		"GET /v1/billing/kpis":             route.ActionBillingRead,
		"POST /v1/invoices/run":            route.ActionBillingWrite,
		"GET /v1/tenants/{tenant}/balance": route.ActionBillingRead,
		"POST /v1/payments":                route.ActionBillingWrite,
		"GET /v1/plans":                    route.ActionPlansRead,
		"POST /v1/tenants/{tenant}/plan":   route.ActionPlansChange,
		"POST /v1/webhooks/stripe":         route.ActionPublic,
	}
	got := map[string]string{}
	for _, r := range svc.Routes() {
		got[r.Method+" "+r.Pattern] = r.Action
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: action %q, want %q", k, got[k], v)
		}
	}
}

func TestHTTPLifecycle(t *testing.T) {
	_, clk, u, srv := server(t)
	oct := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	u.Add("acme", "ai_tokens", oct, 6_000_000) // pro: 1,000,000 above the allowance × 0.0015c = 15.00
	u.Add("beta", "ai_tokens", oct, 10)

	code, _, body := call(t, "POST", srv.URL+"/v1/invoices/run?period=2026-10", "", nil)
	if code != 200 || !strings.Contains(string(body), `"drafts": 2`) {
		t.Fatalf("run in grace: %d %s", code, body)
	}
	if code, _, body := call(t, "POST", srv.URL+"/v1/invoices/DRAFT-2026-10-acme/finalize", "", nil); code != http.StatusConflict {
		t.Fatalf("finalize in grace: %d %s", code, body)
	}
	if code, _, _ := call(t, "POST", srv.URL+"/v1/invoices/run?period=2026-13", "", nil); code != 400 {
		t.Fatalf("bad period: %d", code)
	}
	clk.set(time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC))
	if code, _, body := call(t, "POST", srv.URL+"/v1/invoices/DRAFT-2026-10-acme/finalize", "", nil); code != 200 || !strings.Contains(string(body), `"number": "INV-00000001"`) {
		t.Fatalf("finalize: %d %s", code, body)
	}
	code, _, body = call(t, "GET", srv.URL+"/v1/invoices/INV-00000001", "", nil)
	var inv struct {
		Tenant   string
		Subtotal int64
		Status   string
	}
	// 199.00 base + 15.00 tokens = 214.00, topped up to the 250.00 minimum commitment.
	if err := json.Unmarshal(body, &inv); err != nil || code != 200 || inv.Tenant != "acme" || inv.Subtotal != 25000 || inv.Status != "finalized" {
		t.Fatalf("get: %d %s", code, body)
	}
	// Another tenant's scope cannot read it.
	if code, _, _ := call(t, "GET", srv.URL+"/v1/invoices/INV-00000001?tenant=beta", "", nil); code != 404 {
		t.Fatalf("cross-tenant read: %d", code)
	}
	code, h, body := call(t, "GET", srv.URL+"/v1/invoices/INV-00000001?tenant=acme", "application/pdf", nil)
	if code != 200 || h.Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(body, []byte("%PDF-")) {
		t.Fatalf("pdf: %d %s", code, h)
	}
	code, h, body = call(t, "GET", srv.URL+"/v1/invoices/INV-00000001?format=csv", "", nil)
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/csv") || !strings.Contains(string(body), "Minimum commitment") {
		t.Fatalf("csv: %d %s", code, body)
	}
	if code, _, _ := call(t, "GET", srv.URL+"/v1/invoices/INV-00000001?format=xml", "", nil); code != http.StatusNotAcceptable {
		t.Fatalf("xml: %d", code)
	}
	code, _, body = call(t, "POST", srv.URL+"/v1/invoices/run?period=2026-10", "", nil)
	if code != 200 || !strings.Contains(string(body), `"finalized": 1`) || !strings.Contains(string(body), `"skipped": 1`) {
		t.Fatalf("run: %d %s", code, body)
	}
	code, _, body = call(t, "GET", srv.URL+"/v1/invoices?tenant=acme", "", nil)
	if code != 200 || strings.Count(string(body), `"number"`) != 1 {
		t.Fatalf("list: %d %s", code, body)
	}
	// Payments, credit note, balance, statement.
	code, _, body = call(t, "POST", srv.URL+"/v1/payments", "", map[string]string{"invoice": "INV-00000001", "amount": "200.00", "method": "bank_transfer"})
	if code != 201 {
		t.Fatalf("payment: %d %s", code, body)
	}
	if code, _, body := call(t, "POST", srv.URL+"/v1/payments", "", map[string]string{"invoice": "INV-00000001", "amount": "1.001"}); code != 400 {
		t.Fatalf("sub-cent payment: %d %s", code, body)
	}
	code, _, body = call(t, "POST", srv.URL+"/v1/invoices/INV-00000001/credit-notes", "", map[string]string{"amount": "60.00", "reason": "outage"})
	if code != 201 || !strings.Contains(string(body), `"to_credit": 1000`) {
		t.Fatalf("credit note: %d %s", code, body)
	}
	code, _, body = call(t, "GET", srv.URL+"/v1/tenants/acme/balance", "", nil)
	if code != 200 || !strings.Contains(string(body), `"balance": -1000`) {
		t.Fatalf("balance: %d %s", code, body)
	}
	code, _, body = call(t, "GET", srv.URL+"/v1/tenants/acme/statement", "", nil)
	if code != 200 || strings.Count(string(body), `"kind"`) != 3 {
		t.Fatalf("statement: %d %s", code, body)
	}
	if code, _, body := call(t, "POST", srv.URL+"/v1/invoices/INV-00000001/void", "", map[string]string{"reason": "x"}); code != 409 {
		t.Fatalf("void paid: %d %s", code, body)
	}
	// Plans and plan change.
	code, _, body = call(t, "GET", srv.URL+"/v1/plans", "", nil)
	if code != 200 || !strings.Contains(string(body), `"enterprise"`) {
		t.Fatalf("plans: %d %s", code, body)
	}
	code, _, body = call(t, "POST", srv.URL+"/v1/tenants/beta/plan", "", map[string]any{"plan": "pro", "effective": "2026-11-15T00:00:00Z"})
	if code != 200 {
		t.Fatalf("change plan: %d %s", code, body)
	}
	clk.set(time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC))
	code, _, body = call(t, "GET", srv.URL+"/v1/tenants/beta/plan", "", nil)
	if code != 200 || !strings.Contains(string(body), `"plan": "pro"`) {
		t.Fatalf("tenant plan: %d %s", code, body)
	}
	if code, _, _ := call(t, "POST", srv.URL+"/v1/tenants/beta/plan", "", map[string]any{"plan": "platinum"}); code != 400 {
		t.Fatalf("unknown plan: %d", code)
	}
	if code, _, _ := call(t, "POST", srv.URL+"/v1/tenants/beta/plan", "", map[string]any{"plan": "free", "effective": "2026-10-20T00:00:00Z"}); code != 409 {
		t.Fatalf("change in an invoiced month: %d", code)
	}
}

// TestCLI drives usagectl's billing commands against the HTTP API.
func TestCLI(t *testing.T) {
	_, clk, u, srv := server(t)
	u.Add("acme", "ai_tokens", time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC), 1)
	clk.set(time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC))
	run := func(args ...string) (string, error) {
		app := kingpin.New("usagectl", "")
		var out bytes.Buffer
		billingcli.RegisterTo(app, &out)
		_, err := app.Parse(append(args, "--url", srv.URL))
		return out.String(), err
	}
	out, err := run("invoices", "run", "--period", "2026-10")
	if err != nil || !strings.Contains(out, "INV-00000001") {
		t.Fatalf("invoices run: %v %s", err, out)
	}
	if out, err = run("invoices", "show", "INV-00000001"); err != nil || !strings.Contains(out, `"tenant": "acme"`) {
		t.Fatalf("show: %v %s", err, out)
	}
	if out, err = run("invoices", "csv", "INV-00000001"); err != nil || !strings.HasPrefix(out, "invoice,tenant,period") {
		t.Fatalf("csv: %v %s", err, out)
	}
	dest := filepath.Join(t.TempDir(), "inv.pdf")
	if _, err = run("invoices", "pdf", "INV-00000001", "-o", dest); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dest); err != nil || !bytes.HasPrefix(b, []byte("%PDF-")) {
		t.Fatalf("pdf file: %v", err)
	}
	if out, err = run("payments", "record", "--invoice", "INV-00000001", "--amount", "100.00", "--reference", "wire-1"); err != nil || !strings.Contains(out, "PAY-00000001") {
		t.Fatalf("payments record: %v %s", err, out)
	}
	if _, err = run("payments", "record", "--invoice", "INV-00000999", "--amount", "1.00"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown invoice: %v", err)
	}
	if out, err = run("tenants", "balance", "acme"); err != nil || !strings.Contains(out, fmt.Sprintf(`"outstanding": %d`, 25000-10000)) {
		t.Fatalf("balance: %v %s", err, out)
	}
	if _, err = run("invoices", "run"); err == nil {
		t.Fatal("run without --period accepted")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"invoices", "list", "--tenant", "acme", "--status", "finalized"}, `"number": "INV-00000001"`},
		{[]string{"invoices", "credit-note", "INV-00000001", "--amount", "5.00", "--reason", "outage"}, `"number": "CN-00000001"`},
		{[]string{"payments", "list", "--tenant", "acme"}, `"reference": "wire-1"`},
		{[]string{"plans", "list"}, `"name": "enterprise"`},
		{[]string{"plans", "change", "acme", "starter", "--effective", "2026-11-20T00:00:00Z"}, `"plan": "starter"`},
		{[]string{"plans", "show", "acme"}, `"plan": "pro"`}, // the change is still ahead (clock: Nov 10)
		{[]string{"plans", "show", "acme"}, `"effective": "2026-11-20T00:00:00Z"`},
		{[]string{"tenants", "statement", "acme"}, `"kind": "credit_note"`},
	} {
		if out, err := run(tc.args...); err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("%v: %v\n%s", tc.args, err, out)
		}
	}
	if _, err := run("invoices", "void", "INV-00000001", "--reason", "x"); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("void of a paid-in-part invoice: %v", err)
	}
}

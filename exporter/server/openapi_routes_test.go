package server

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/analytics"
)

// TestOpenAPIDescribesEveryAnswer drives the billing, analytics and report routes with real data
// through the validating handler (open): every answer, success or problem, must match the
// document's schema for its operation and status. The core routes are driven by the other tests
// of this package.
func TestOpenAPIDescribesEveryAnswer(t *testing.T) {
	_, ts := openWith(t, `
default_plan: free
plans:
  - {name: free, enforcement: hard, limits: {ai_tokens: 1000000}}
  - {name: pro, enforcement: soft, limits: {ai_tokens: 100000000}}
tenants:
  - {id: acme, plan: free}
`)
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	prev := month.AddDate(0, 0, -1) // the last day of the previous month: within the late window
	var body strings.Builder
	n := 0
	event := func(at time.Time, typ, data string) {
		n++
		fmt.Fprintf(&body, `{"specversion":"1.0","id":"oa-%d","source":"s","type":%q,"time":%q,"data":%s}`+"\n", n, typ, at.Format(time.RFC3339), data)
	}
	for _, at := range []time.Time{prev.Add(2 * time.Hour), now.Add(-2 * time.Hour), now.Add(-26 * time.Hour)} {
		event(at, "ai.tokens", `{"tenant":"acme","user":"alice","feature":"chat","model":"gpt-large","input_tokens":1200,"output_tokens":300}`)
		event(at, "document.created", `{"tenant":"acme","user":"bob","document_id":"d1","doc_type":"pdf","bytes":2048,"content_hash":"h1"}`)
		event(at, "ingest.completed", `{"tenant":"acme","source":"s3","bytes":1000,"records":10,"duration_ms":50}`)
		event(at, "user.login", `{"tenant":"acme","user":"alice","session_seconds":60}`)
		event(at, "feature.used", `{"tenant":"acme","user":"alice","feature":"export"}`)
	}
	if code, resp := do(t, ts, "POST", "/v1/events", "", "application/x-ndjson", body.String()); code != 202 {
		t.Fatalf("ingest: %d %s", code, resp)
	}
	period := prev.Format("2006-01")
	q := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return "?" + v.Encode()
	}
	// Each request answers 2xx (else the test says which did not); the validating handler checks
	// the answer's shape either way.
	must := func(method, path, ctype, reqBody string) string {
		t.Helper()
		code, resp := do(t, ts, method, path, "", ctype, reqBody)
		if code >= 300 {
			t.Errorf("%s %s: %d %.300s", method, path, code, resp)
		}
		return resp
	}
	must("POST", "/v1/invoices/run"+q("period", period), "", "")
	must("POST", "/v1/invoices/run"+q("period", month.Format("2006-01")), "", "")
	var list struct {
		Invoices []struct {
			ID, Number, Status string
		}
	}
	if err := json.Unmarshal([]byte(must("GET", "/v1/invoices"+q("tenant", "acme"), "", "")), &list); err != nil || len(list.Invoices) == 0 {
		t.Fatalf("invoices: %v %+v", err, list)
	}
	id := list.Invoices[0].ID
	must("GET", "/v1/invoices/"+id+q("tenant", "acme"), "", "")
	must("GET", "/v1/invoices/"+id+q("format", "csv"), "", "")
	must("GET", "/v1/invoices/"+id+q("format", "pdf"), "", "")
	// Finalizing, voiding and crediting answer an invoice or a problem, depending on its state
	// (a draft in its grace period cannot be finalized): both are described.
	do(t, ts, "POST", "/v1/invoices/"+id+"/finalize", "", "", "")
	do(t, ts, "POST", "/v1/invoices/"+id+"/credit-notes", "", "application/json", `{"amount":"1.00","reason":"goodwill"}`)
	must("GET", "/v1/billing/kpis"+q("period", period), "", "")
	must("GET", "/v1/billing/kpis"+q("period", period, "group_by", "plan"), "", "")
	must("GET", "/v1/credit-notes", "", "")
	must("POST", "/v1/payments", "application/json", `{"tenant":"acme","amount":"5.00","method":"bank_transfer","reference":"wire-1"}`)
	must("GET", "/v1/payments"+q("tenant", "acme"), "", "")
	must("GET", "/v1/tenants/acme/balance", "", "")
	must("GET", "/v1/tenants/acme/statement", "", "")
	must("GET", "/v1/plans", "", "")
	must("GET", "/v1/tenants/acme/plan", "", "")
	do(t, ts, "POST", "/v1/invoices/"+id+"/void", "", "application/json", `{"reason":"test"}`)

	for _, p := range []string{
		"/v1/analytics/trends", "/v1/analytics/trends" + q("tenant", "acme", "meter", "ai_tokens,logins"),
		"/v1/analytics/seasonality" + q("tenant", "acme", "meter", "ai_tokens"),
		"/v1/analytics/forecast" + q("tenant", "acme", "meter", "ai_tokens"),
		"/v1/analytics/adoption" + q("tenant", "acme"),
		"/v1/analytics/engagement" + q("tenant", "acme", "users", "true"),
		"/v1/analytics/new-users" + q("tenant", "acme", "users", "true"),
		"/v1/analytics/ingestion" + q("tenant", "acme"),
		"/v1/analytics/insights", "/v1/analytics/insights/applied",
		"/v1/reports/usage" + q("format", "json", "last", "7d"),
		"/v1/reports/usage" + q("format", "csv", "month", period, "group_by", "model"),
		"/v1/reports/executive" + q("format", "json"),
		"/v1/reports/compliance" + q("format", "json", "last", "7d"),
	} {
		must("GET", p, "", "")
	}
	var ins analytics.InsightsResponse
	if err := json.Unmarshal([]byte(must("GET", "/v1/analytics/insights"+q("tenant", "acme"), "", "")), &ins); err != nil {
		t.Fatal(err)
	}
	if len(ins.Insights) > 0 {
		must("POST", "/v1/analytics/tenants/acme/insights/"+url.PathEscape(ins.Insights[0].ID)+"/apply", "application/json", `{"note":"done"}`)
	}
	must("POST", "/v1/reports"+q("format", "json"), "application/yaml", "kind: usage\nmeters: [ai_tokens]\nperiod: {last: 7d}\n")
	must("POST", "/v1/tenants/acme/plan", "application/json", `{"plan":"pro"}`)
	must("GET", "/v1/tenants/acme/quotas", "", "")
	// Problems are described too.
	do(t, ts, "GET", "/v1/invoices/INV-99999999", "", "", "")
	do(t, ts, "GET", "/v1/analytics/forecast"+q("tenant", "acme", "meter", "nope"), "", "", "")
}

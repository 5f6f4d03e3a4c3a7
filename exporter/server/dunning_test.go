package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"
)

// TestDunningHoldDeniesQuotaUntilPaid: through the whole exporter, a tenant whose invoice is
// overdue past the last step of a hard_deny schedule is denied by POST /v1/quota/check (the
// quota policy's billing_hold), and admitted again once the invoice is paid.
func TestDunningHoldDeniesQuotaUntilPaid(t *testing.T) {
	cfg := `
plans:
  - {name: pro, enforcement: hard, limits: {ai_tokens: 1000}}
default_plan: pro
tenants:
  - {id: acme, name: Acme Corp, plan: pro}
billing:
  currency: USD
  grace_period: 0h
  payment_terms: 0d
  plans:
    - name: pro
      base_fee: "10.00"
      dunning: {retry_days: [0], consequence: hard_deny}
`
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yml")
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

	check := func() map[string]any {
		t.Helper()
		code, body := do(t, ts, "POST", "/v1/quota/check", "", "application/json", `{"tenant":"acme","meter":"ai_tokens","amount":1}`)
		var m map[string]any
		if code != 200 || json.Unmarshal([]byte(body), &m) != nil {
			t.Fatalf("quota check: %d %s", code, body)
		}
		return m
	}
	if m := check(); m["result"] != "allow" {
		t.Fatalf("before any invoice: %v", m)
	}
	// The month billed must lie in the ledger's history (invoice runs refuse periods before it):
	// one event on its last day, which the 35-day late window always admits.
	now := time.Now().UTC()
	lastDay := time.Date(now.Year(), now.Month(), 1, 12, 0, 0, 0, time.UTC).AddDate(0, 0, -1)
	ev := fmt.Sprintf(`{"specversion":"1.0","id":"dun-1","source":"test","type":"feature.used","time":%q,"data":{"tenant":"acme","user":"u1","feature":"chat"}}`, lastDay.Format(time.RFC3339))
	if code, body := do(t, ts, "POST", "/v1/events", "", "application/cloudevents+json", ev); code != 202 {
		t.Fatalf("event: %d %s", code, body)
	}
	last := lastDay.Format("2006-01")
	if code, body := do(t, ts, "POST", "/v1/invoices/run?period="+last, "", "", ""); code != 200 || !strings.Contains(body, "INV-00000001") {
		t.Fatalf("run %s: %d %s", last, code, body)
	}
	time.Sleep(time.Millisecond) // due at finalization (0d terms): overdue from the next instant
	if code, body := do(t, ts, "POST", "/v1/billing/dunning/run", "", "", ""); code != 200 || !strings.Contains(body, `"holds": 1`) {
		t.Fatalf("dunning: %d %s", code, body)
	}
	m := check()
	if m["result"] != "deny" || !strings.Contains(m["reason"].(string), "billing hold: invoice INV-00000001 is overdue") {
		t.Fatalf("held tenant: %v", m)
	}
	if code, body := do(t, ts, "POST", "/v1/payments", "", "application/json", `{"invoice":"INV-00000001","amount":"10.00"}`); code != 201 {
		t.Fatalf("payment: %d %s", code, body)
	}
	if m := check(); m["result"] != "allow" {
		t.Fatalf("after paying: %v", m)
	}
}

package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/usagemeter/usagemeter/exporter/auth"
	"github.com/usagemeter/usagemeter/notify"
	"github.com/usagemeter/usagemeter/notify/notifytest"
)

// Issue #16 through the running exporter: a tenant's admin manages its rules over the API
// (another tenant's admin cannot), ingested usage crossing 80 % of the quota reaches a
// signature-verifying webhook receiver and an amount reaches mailpit, once each; the delivery
// log, a manual replay and the metrics are readable.
func TestNotificationsThroughTheExporter(t *testing.T) {
	mp := notifytest.StartMailpit(t, "--smtp-auth-accept-any", "--smtp-auth-allow-insecure")
	rcv := notifytest.NewReceiver(t, func(secret string, h http.Header, body []byte, now time.Time) error {
		return notify.Verify(secret, h, body, now, 5*time.Minute)
	})
	keys := map[string]string{}
	var hashes []any
	for _, who := range []string{"root", "acme", "globex", "ingest"} {
		key, hash := auth.NewAPIKey()
		keys[who] = key
		hashes = append(hashes, hash)
	}
	cfg := fmt.Sprintf(`
plans:
  - {name: free, enforcement: soft, limits: {ai_tokens: 1000}, features: [chat]}
default_plan: free
notifications:
  evaluate_interval: 1s
  smtp: {addr: %q, from: usagemeter@platform.test}
auth:
  tokens:
    - {subject: root, hash: %q, roles: [platform_admin]}
    - {subject: acme-admin, hash: %q, roles: [saas_admin], tenants: [acme]}
    - {subject: globex-admin, hash: %q, roles: [saas_admin], tenants: [globex]}
  api_keys:
    - {name: acme-ingest, hash: %q, tenants: [acme]}
`, append([]any{mp.SMTP}, hashes...)...)
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := notifytest.FreePort(t)
	addrs := []string{addr}
	opts := Options{Web: &web.FlagConfig{WebListenAddresses: &addrs}, StoragePath: filepath.Join(dir, "data"), ConfigFile: file, Log: &promslog.Config{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("exporter: %v", err)
		}
	})
	base := "http://" + addr
	notifytest.Eventually(t, 30*time.Second, "the exporter is ready", func() bool {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	call := func(method, path, who, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+keys[who])
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = fmt.Fprint(&b, readAll(resp))
		return resp.StatusCode, b.String()
	}

	hook := fmt.Sprintf(`{"meter":"ai_tokens","condition":{"kind":"quota_percent","percent":80},"channels":[{"type":"webhook","url":%q}]}`, rcv.URL)
	if code, body := call("POST", "/v1/notifications/rules?tenant=acme", "globex", hook); code != 403 {
		t.Fatalf("globex's admin created an acme rule: %d %s", code, body)
	}
	code, body := call("POST", "/v1/notifications/rules?tenant=acme", "acme", hook)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var created notify.Rule
	if err := json.Unmarshal([]byte(body), &created); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Channels[0].Secret, "whsec_") || created.Version != 1 || created.UpdatedBy != "acme-admin" {
		t.Fatalf("created %+v", created)
	}
	rcv.Trust(created.Channels[0].Secret)
	if code, body := call("GET", "/v1/notifications/rules/"+created.ID+"?tenant=acme", "acme", ""); code != 200 || strings.Contains(body, "whsec_") {
		t.Fatalf("the secret is shown again: %d %s", code, body)
	}
	if code, body := call("POST", "/v1/notifications/rules?tenant=acme", "acme", `{"meter":"ai_tokens","condition":{"kind":"quota_percent","percent":0},"channels":[]}`); code != 400 {
		t.Fatalf("a bad rule: %d %s", code, body)
	}
	mail := `{"meter":"ai_tokens","name":"big month","condition":{"kind":"usage_amount","amount":900},"channels":[{"type":"email","to":["admin@acme.test"]}]}`
	if code, body := call("POST", "/v1/notifications/rules?tenant=acme", "acme", mail); code != 201 {
		t.Fatalf("create the e-mail rule: %d %s", code, body)
	}
	if code, body := call("GET", "/v1/notifications/rules?tenant=acme", "globex", ""); code != 403 {
		t.Fatalf("globex read acme's rules: %d %s", code, body)
	}

	ingest := func(id string, tokens int) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/v1/events", strings.NewReader(event(id, "acme", "alice", tokens)))
		req.Header.Set("Authorization", "Bearer "+keys["ingest"])
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("ingest: %s", resp.Status)
		}
	}
	ingest("n1", 700)
	crossed := time.Now()
	ingest("n2", 150) // 850: past 80 %
	notifytest.Eventually(t, 30*time.Second, "the webhook arrives", func() bool { return len(rcv.Received()) == 1 })
	webhookAfter := rcv.Received()[0].At.Sub(crossed)
	crossed = time.Now()
	ingest("n3", 100) // 950: past the amount; still past 80 %
	notifytest.Eventually(t, 30*time.Second, "the e-mail arrives", func() bool { return len(mp.Messages(t)) == 1 })
	mailAfter := time.Since(crossed) // an upper bound: includes the polling
	t.Logf("crossing to webhook received: %s; to e-mail in mailpit (polled every 20 ms): <= %s", webhookAfter, mailAfter)
	if n := len(rcv.Received()); n != 1 || rcv.Rejected() != 0 {
		t.Fatalf("webhook got %d verified and %d rejected", n, rcv.Rejected())
	}

	var list struct{ Deliveries []notify.Delivery }
	code, body = call("GET", "/v1/notifications/deliveries?tenant=acme", "acme", "")
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list.Deliveries) != 2 {
		t.Fatalf("deliveries: %d %s", code, body)
	}
	var hookDelivery notify.Delivery
	for _, d := range list.Deliveries {
		if d.State != notify.StateDelivered {
			t.Fatalf("delivery %+v", d)
		}
		if d.Type == notify.ChannelWebhook {
			hookDelivery = d
		}
	}
	if code, _ := call("GET", "/v1/notifications/deliveries/"+hookDelivery.ID+"?tenant=globex", "globex", ""); code != 404 {
		t.Fatalf("globex read acme's delivery: %d", code)
	}
	if code, body := call("GET", "/v1/notifications/deliveries/"+hookDelivery.ID+"?tenant=acme", "acme", ""); code != 200 || !strings.Contains(body, `"attempts"`) || !strings.Contains(body, `"ok": true`) {
		t.Fatalf("delivery log: %d %s", code, body)
	}
	if code, body := call("POST", "/v1/notifications/deliveries/"+hookDelivery.ID+"/replay?tenant=acme", "acme", ""); code != 202 {
		t.Fatalf("replay: %d %s", code, body)
	}
	notifytest.Eventually(t, 30*time.Second, "the replay arrives", func() bool { return len(rcv.Received()) == 2 })
	if got := rcv.Received(); got[1].ID != got[0].ID || got[0].ID != hookDelivery.ID {
		t.Fatalf("replay webhook-id %q, first %q, delivery %q", got[1].ID, got[0].ID, hookDelivery.ID)
	}
	// Acknowledging the event: its tenant's admin may, another tenant's may not.
	if code, body := call("POST", "/v1/notifications/events/"+hookDelivery.EventID+"/ack?tenant=acme", "globex", ""); code != 403 {
		t.Fatalf("globex acknowledged acme's event: %d %s", code, body)
	}
	if code, body := call("POST", "/v1/notifications/events/"+hookDelivery.EventID+"/ack?tenant=acme", "acme", ""); code != 200 || !strings.Contains(body, `"by": "acme-admin"`) {
		t.Fatalf("ack: %d %s", code, body)
	}
	if code, body := call("GET", "/v1/notifications/deliveries/"+hookDelivery.ID+"?tenant=acme", "acme", ""); code != 200 || !strings.Contains(body, `"ack"`) {
		t.Fatalf("the delivery does not show the ack: %d %s", code, body)
	}
	// Editing a rule is a new version; the history stays readable.
	if code, body := call("PUT", "/v1/notifications/rules/"+created.ID+"?tenant=acme", "acme", strings.Replace(hook, "80", "90", 1)); code != 200 || strings.Contains(body, "whsec_") {
		t.Fatalf("update (same URL keeps its secret, not shown): %d %s", code, body)
	}
	var versions struct{ Versions []notify.Rule }
	if code, body := call("GET", "/v1/notifications/rules/"+created.ID+"/versions?tenant=acme", "root", ""); code != 200 || json.Unmarshal([]byte(body), &versions) != nil ||
		len(versions.Versions) != 2 || versions.Versions[1].Condition.Percent != 90 {
		t.Fatalf("versions: %d %s", code, body)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics := readAll(resp)
	resp.Body.Close()
	for _, want := range []string{
		`usage_exporter_notification_deliveries_total{channel="webhook",state="delivered"} 2`,
		`usage_exporter_notification_deliveries_total{channel="email",state="delivered"} 1`,
		`usage_exporter_notification_events_total{condition="quota_percent"} 1`,
		`usage_exporter_notification_events_total{condition="usage_amount"} 1`,
		`usage_exporter_notification_deliveries_pending 0`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func readAll(resp *http.Response) string {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// The exporter's data sources of the tenant-wide conditions: the executive summary comes from
// analytics over the ledger, the invoices from billing.
func TestNotificationSourcesOfTheExporter(t *testing.T) {
	srv, ts, c := secured(t)
	// The summary covers the 30 whole days before today: the event is from two days ago.
	twoDaysAgo := fmt.Sprintf(`{"specversion":"1.0","id":"s1","source":"s","type":"ai.tokens","time":%q,"data":{"tenant":"acme","user":"alice","feature":"chat","model":"m","input_tokens":40,"output_tokens":0}}`+"\n",
		time.Now().UTC().Add(-48*time.Hour).Format(time.RFC3339))
	if code, body := do(t, ts, "POST", "/v1/events", c.ingestAcme, "application/x-ndjson", twoDaysAgo); code != 202 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	ctx := context.Background()
	sum, err := srv.notify.eval.Summaries(ctx, "acme", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var tokens int64 = -1
	for _, k := range sum.KPIs {
		if k.Meter == "ai_tokens" {
			tokens = k.Value
		}
	}
	if tokens != 40 || sum.To.Before(sum.From) {
		t.Fatalf("summary %+v: ai_tokens %d, want 40", sum, tokens)
	}
	invs, err := srv.notify.eval.Invoices(ctx, "acme")
	if err != nil || len(invs) != 0 {
		t.Fatalf("invoices %v (%v), want none finalized", invs, err)
	}
}

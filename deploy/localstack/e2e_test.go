package localstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/deploy/localstack"
)

const (
	e2eTenant = "e2e-tenant"
	e2eMeter  = "ai_tokens"
	// How long any one step may take before the test gives up. A bound on waiting, not an
	// assertion on speed: the measured latency is logged, never compared.
	stepTimeout = 2 * time.Minute
)

// TestQuotaPagesAndResolves runs the real stack (exporter, VictoriaMetrics, vmalert,
// Alertmanager) with one-second intervals, drives one tenant over its AI token quota, and follows
// the page from the crossing event to the test's webhook, the inhibited warning, the resolution
// after the limit is raised and reloaded, and the agreement of VictoriaMetrics with the ledger.
func TestQuotaPagesAndResolves(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, p := range []string{"bin/usage-exporter", "bin/tools/victoria-metrics", "bin/tools/vmalert", "bin/tools/alertmanager"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Skipf("end-to-end test needs %s: run `make build tools` (make test does both first)", strings.Join(missing, ", "))
	}

	dir := t.TempDir()
	catalogue := filepath.Join(dir, "catalogue.yml")
	writeCatalogue(t, catalogue, 1000)
	hook := newWebhookRecorder(t)

	ctx := t.Context()
	started := time.Now()
	stack, err := localstack.Start(ctx, localstack.Config{
		StateDir:           filepath.Join(dir, "state"),
		BinDir:             filepath.Join(root, "bin"),
		ToolsDir:           filepath.Join(root, "bin", "tools"),
		RulesDir:           filepath.Join(root, "rules"),
		AlertmanagerConfig: filepath.Join(root, "deploy", "alertmanager", "alertmanager.yml"),
		Catalogue:          catalogue,
		ScrapeInterval:     time.Second,
		EvalInterval:       time.Second,
		// The routing and inhibitions are the shipped file's; only the waits are shortened. The
		// group wait spans a few evaluations: were the new scrape to become visible between the
		// evaluation of UsageQuotaExceeded and that of the warning, the warning would fire one
		// evaluation before the page that inhibits it.
		AlertTimings: &localstack.AlertTimings{GroupWait: 3 * time.Second, GroupInterval: time.Second, RepeatInterval: time.Hour},
		WebhookURL:   hook.server.URL,
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatalf("starting the stack: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = stack.Stop()
		}
		if t.Failed() {
			dumpLogs(t, stack.Logs)
		}
	})
	t.Logf("stack up in %s: exporter %s, VictoriaMetrics %s", time.Since(started).Round(time.Millisecond), stack.URLs.Exporter, stack.URLs.VictoriaMetrics)
	vm := stack.URLs.VictoriaMetrics

	// A first small event, scraped on its own, starts the counters near 0 the way any new series
	// starts; increase() then counts the big event below in full.
	postEvents(t, stack.URLs.Exporter, aiEvent("seed", 1, 1))
	waitFor(t, "VictoriaMetrics to scrape the seed event", func() (bool, error) {
		v, ok, err := queryScalar(ctx, vm, fmt.Sprintf(`sum(usage_ai_tokens_total{tenant=%q})`, e2eTenant))
		return ok && v == 2, err
	})

	// One event takes the tenant from 0.2% of its limit to 110.2%: past the warning ratio and the
	// limit in the same scrape, so the warning must be inhibited rather than sent.
	crossing := time.Now()
	postEvents(t, stack.URLs.Exporter, aiEvent("crossing", 700, 400))
	page := hook.waitFor(t, "the page for UsageQuotaExceeded", func(m received) bool {
		return m.msg.Receiver == "pager" && hasAlert(m.msg, "firing", "UsageQuotaExceeded")
	})
	t.Logf("page latency: %s from sending the crossing event to the pager webhook receiving UsageQuotaExceeded (scrape 1s, evaluation 1s, group_wait 3s)",
		page.at.Sub(crossing).Round(time.Millisecond))
	a := findAlert(page.msg, "firing", "UsageQuotaExceeded")
	if a.Labels["severity"] != "critical" || a.Labels["enforcement"] != "hard" {
		t.Errorf("page labels = %v, want severity=critical enforcement=hard", a.Labels)
	}
	if !strings.HasSuffix(a.Annotations["runbook_url"], "/docs/runbooks/UsageQuotaExceeded.md") {
		t.Errorf("page runbook_url = %q", a.Annotations["runbook_url"])
	}
	// The page agrees with the exporter's own account of the quota.
	if st := quotaState(t, stack.URLs.Exporter); st != "exceeded" {
		t.Errorf("GET /v1/tenants/%s/quotas: %s is %q while paging, want exceeded", e2eTenant, e2eMeter, st)
	}

	// The warning reached Alertmanager (vmalert evaluated it) and sits there suppressed, inhibited
	// by the exceeded alert of the same tenant and meter.
	waitFor(t, "Alertmanager to hold the inhibited UsageQuotaWarning", func() (bool, error) {
		alerts, err := amAlerts(ctx, stack.URLs.Alertmanager, "UsageQuotaWarning")
		if err != nil || len(alerts) == 0 {
			return false, err
		}
		for _, al := range alerts {
			if al.Status.State != "suppressed" || len(al.Status.InhibitedBy) == 0 {
				return false, fmt.Errorf("UsageQuotaWarning is %s (inhibited by %v), want suppressed by an inhibition", al.Status.State, al.Status.InhibitedBy)
			}
		}
		return true, nil
	})

	// Raise the limit in the catalogue and reload: the tenant is back at 0.1% and the page resolves.
	writeCatalogue(t, catalogue, 1000000)
	reloaded := time.Now()
	resp, err := http.Post(stack.URLs.Exporter+"/-/reload", "", nil)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reload: %s", resp.Status)
	}
	resolved := hook.waitFor(t, "UsageQuotaExceeded to resolve", func(m received) bool {
		return m.msg.Receiver == "pager" && hasAlert(m.msg, "resolved", "UsageQuotaExceeded")
	})
	if st := quotaState(t, stack.URLs.Exporter); st != "ok" {
		t.Errorf("GET /v1/tenants/%s/quotas: %s is %q after the limit was raised, want ok", e2eTenant, e2eMeter, st)
	}
	t.Logf("resolution latency: %s from the reload to the resolved notification (keep_firing_for 30s, group_interval 1s)", resolved.at.Sub(reloaded).Round(time.Millisecond))

	// VictoriaMetrics over the whole test agrees exactly with the ledger.
	window := int(time.Since(started).Seconds()) + 60
	for _, c := range []struct{ meter, metric string }{
		{"ai_tokens", "usage_ai_tokens_total"},
		{"ai_requests", "usage_ai_requests_total"},
	} {
		// /v1/usage answers whole hours (the ledger rolls up hourly): the hours spanning the test.
		exact := ledgerTotal(t, stack.URLs.Exporter, c.meter, started.Truncate(time.Hour), time.Now().Truncate(time.Hour).Add(time.Hour))
		waitFor(t, "VictoriaMetrics to scrape the last value of "+c.metric, func() (bool, error) {
			v, ok, err := queryScalar(ctx, vm, fmt.Sprintf(`sum(%s{tenant=%q})`, c.metric, e2eTenant))
			return ok && v == float64(exact), err
		})
		q := fmt.Sprintf(`sum(increase(%s{tenant=%q}[%ds]))`, c.metric, e2eTenant, window)
		got, ok, err := queryScalar(ctx, vm, q)
		if err != nil || !ok {
			t.Fatalf("%s: %v (result present: %v)", q, err, ok)
		}
		if got != float64(exact) {
			t.Errorf("%s = %v, /v1/usage total = %d", q, got, exact)
		} else {
			t.Logf("%s = %v = /v1/usage total", q, got)
		}
	}

	for _, m := range hook.all() {
		for _, al := range m.msg.Alerts {
			if al.Labels["alertname"] == "UsageQuotaWarning" {
				t.Errorf("the inhibited warning was delivered to %s: %v", m.msg.Receiver, al.Labels)
			}
		}
	}
	if t.Failed() {
		for _, m := range hook.all() {
			for _, al := range m.msg.Alerts {
				t.Logf("notification at %s to %s: %s %s startsAt=%s endsAt=%s", m.at.Format(time.StampMilli), m.msg.Receiver,
					al.Status, al.Labels["alertname"], al.StartsAt.Format(time.StampMilli), al.EndsAt.Format(time.StampMilli))
			}
		}
	}

	stopped = true
	if err := stack.Stop(); err != nil {
		t.Errorf("stopping the stack: %v", err)
	}
}

func writeCatalogue(t *testing.T, path string, aiTokens int64) {
	t.Helper()
	doc := fmt.Sprintf(`default_plan: free
plans:
  - name: free
    enforcement: hard
    warning_ratio: 0.8
    limits: {ai_tokens: 100}
  - name: e2e
    enforcement: hard
    warning_ratio: 0.8
    limits: {ai_tokens: %d}
tenants:
  - {id: %s, plan: e2e}
`, aiTokens, e2eTenant)
	// Write then rename, so a reload never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func aiEvent(id string, in, out int) map[string]any {
	return map[string]any{
		"specversion": "1.0", "id": id, "source": "e2e-test", "type": "ai.tokens",
		"data": map[string]any{"tenant": e2eTenant, "user": "alice", "feature": "chat", "model": "m1",
			"input_tokens": in, "output_tokens": out},
	}
}

func postEvents(t *testing.T, exporter string, events ...map[string]any) {
	t.Helper()
	body, err := json.Marshal(events)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(exporter+"/v1/events", "application/cloudevents-batch+json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /v1/events: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/events: %s: %s", resp.Status, b)
	}
}

// ledgerTotal sums the exact usage of the test tenant's meter from GET /v1/usage.
func ledgerTotal(t *testing.T, exporter, meter string, from, to time.Time) int64 {
	t.Helper()
	q := url.Values{"tenant": {e2eTenant}, "meter": {meter}, "from": {from.UTC().Format(time.RFC3339)}, "to": {to.UTC().Format(time.RFC3339)}}
	resp, err := http.Get(exporter + "/v1/usage?" + q.Encode())
	if err != nil {
		t.Fatalf("GET /v1/usage: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/usage: %s: %s", resp.Status, b)
	}
	var usage struct {
		Rows []struct {
			Value json.Number `json:"value"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(b, &usage); err != nil {
		t.Fatalf("GET /v1/usage: %v: %s", err, b)
	}
	var total int64
	for _, r := range usage.Rows {
		v, err := strconv.ParseInt(r.Value.String(), 10, 64)
		if err != nil {
			t.Fatalf("GET /v1/usage: value %q: %v", r.Value, err)
		}
		total += v
	}
	if total == 0 {
		t.Fatalf("GET /v1/usage: no usage for %s: %s", meter, b)
	}
	return total
}

// quotaState answers the state of the test tenant's quota on the test meter from
// GET /v1/tenants/{tenant}/quotas.
func quotaState(t *testing.T, exporter string) string {
	t.Helper()
	resp, err := http.Get(exporter + "/v1/tenants/" + e2eTenant + "/quotas")
	if err != nil {
		t.Fatalf("GET quotas: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Quotas []struct {
			Meter string `json:"meter"`
			State string `json:"state"`
		} `json:"quotas"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET quotas: %s: %v", resp.Status, err)
	}
	for _, q := range body.Quotas {
		if q.Meter == e2eMeter {
			return q.State
		}
	}
	t.Fatalf("GET quotas: no %s quota for %s", e2eMeter, e2eTenant)
	return ""
}

// queryScalar runs an instant query that yields at most one series and returns its value.
func queryScalar(ctx context.Context, vm, query string) (float64, bool, error) {
	q := url.Values{"query": {query}, "nocache": {"1"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, vm+"/api/v1/query?"+q.Encode(), nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, false, fmt.Errorf("%s: %w", query, err)
	}
	if body.Status != "success" {
		return 0, false, fmt.Errorf("%s: %s", query, body.Error)
	}
	switch len(body.Data.Result) {
	case 0:
		return 0, false, nil
	case 1:
		s, _ := body.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil, err
	default:
		return 0, false, fmt.Errorf("%s: %d series, want one", query, len(body.Data.Result))
	}
}

type amAlert struct {
	Labels map[string]string `json:"labels"`
	Status struct {
		State       string   `json:"state"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status"`
}

// amAlerts lists Alertmanager's alerts of one name for the test tenant and meter, suppressed
// ones included.
func amAlerts(ctx context.Context, am, alertname string) ([]amAlert, error) {
	q := url.Values{"filter": {
		fmt.Sprintf("alertname=%q", alertname), fmt.Sprintf("tenant=%q", e2eTenant), fmt.Sprintf("meter=%q", e2eMeter),
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, am+"/api/v2/alerts?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var alerts []amAlert
	if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
		return nil, fmt.Errorf("alertmanager alerts: %w", err)
	}
	return alerts, nil
}

// waitFor polls cond until it holds; an error from cond is kept as the reason if time runs out.
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(stepTimeout)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s after %s (last error: %v)", what, stepTimeout, last)
}

type received struct {
	at  time.Time
	msg localstack.WebhookMessage
}

// webhookRecorder is the test's pager and team chat: it records every notification.
type webhookRecorder struct {
	server *httptest.Server
	mu     sync.Mutex
	msgs   []received
}

func newWebhookRecorder(t *testing.T) *webhookRecorder {
	w := &webhookRecorder{}
	w.server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var msg localstack.WebhookMessage
		if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
			t.Errorf("webhook %s: undecodable notification: %v", r.URL.Path, err)
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.msgs = append(w.msgs, received{at: time.Now(), msg: msg})
		w.mu.Unlock()
	}))
	t.Cleanup(w.server.Close)
	return w
}

func (w *webhookRecorder) all() []received {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]received(nil), w.msgs...)
}

func (w *webhookRecorder) waitFor(t *testing.T, what string, match func(received) bool) received {
	t.Helper()
	var got received
	waitFor(t, what, func() (bool, error) {
		for _, m := range w.all() {
			if match(m) {
				got = m
				return true, nil
			}
		}
		return false, nil
	})
	return got
}

func findAlert(m localstack.WebhookMessage, status, alertname string) *localstack.WebhookAlert {
	for i, a := range m.Alerts {
		if a.Status == status && a.Labels["alertname"] == alertname && a.Labels["tenant"] == e2eTenant && a.Labels["meter"] == e2eMeter {
			return &m.Alerts[i]
		}
	}
	return nil
}

func hasAlert(m localstack.WebhookMessage, status, alertname string) bool {
	return findAlert(m, status, alertname) != nil
}

// dumpLogs prints the end of every program's log, so a failure shows what the stack said.
func dumpLogs(t *testing.T, dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		t.Logf("--- %s (end) ---\n%s", e.Name(), b)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

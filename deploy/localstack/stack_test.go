package localstack

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/config"
)

func TestAlertmanagerConfigKeepsRoutingAndMovesWebhooks(t *testing.T) {
	out, err := alertmanagerConfig(filepath.Join("..", "alertmanager", "alertmanager.yml"), "http://127.0.0.1:5555/hook",
		&AlertTimings{GroupWait: time.Second, RepeatInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Route struct {
			GroupWait      string `yaml:"group_wait"`
			GroupInterval  string `yaml:"group_interval"`
			RepeatInterval string `yaml:"repeat_interval"`
			Routes         []struct {
				Receiver       string `yaml:"receiver"`
				GroupWait      string `yaml:"group_wait"`
				GroupInterval  string `yaml:"group_interval"`
				RepeatInterval string `yaml:"repeat_interval"`
				Continue       bool   `yaml:"continue"`
			} `yaml:"routes"`
		} `yaml:"route"`
		Receivers []struct {
			Name           string `yaml:"name"`
			WebhookConfigs []struct {
				URL string `yaml:"url"`
			} `yaml:"webhook_configs"`
		} `yaml:"receivers"`
		InhibitRules []map[string]any `yaml:"inhibit_rules"`
	}
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("rendered config: %v\n%s", err, out)
	}
	urls := map[string]string{}
	for _, r := range doc.Receivers {
		for _, w := range r.WebhookConfigs {
			urls[r.Name] = w.URL
		}
	}
	if urls["pager"] != "http://127.0.0.1:5555/hook/pager" || urls["team"] != "http://127.0.0.1:5555/hook/team" {
		t.Errorf("webhook URLs = %v, want the sink base replaced", urls)
	}
	r := doc.Route
	if r.GroupWait != "1s" || r.RepeatInterval != "1h0m0s" || r.GroupInterval != "5m" {
		t.Errorf("root timings = %s/%s/%s, want 1s/5m (kept)/1h0m0s", r.GroupWait, r.GroupInterval, r.RepeatInterval)
	}
	if len(r.Routes) != 3 || r.Routes[0].Receiver != "pager" || !r.Routes[0].Continue {
		t.Fatalf("routes changed: %+v", r.Routes)
	}
	for _, c := range r.Routes {
		if c.GroupWait != "" && c.GroupWait != "1s" || c.RepeatInterval != "1h0m0s" {
			t.Errorf("route %s timings = %s/%s, want overridden", c.Receiver, c.GroupWait, c.RepeatInterval)
		}
	}
	if len(doc.InhibitRules) != 2 {
		t.Errorf("inhibit rules = %d, want the file's 2", len(doc.InhibitRules))
	}
}

func TestScrapeConfigNamesTheExporterJob(t *testing.T) {
	out, err := scrapeConfig(time.Second, map[string]string{"usage-exporter": "127.0.0.1:1", "vmalert": "127.0.0.1:2"})
	if err != nil {
		t.Fatal(err)
	}
	want := `global:
    scrape_interval: 1s
    scrape_timeout: 1s
scrape_configs:
    - job_name: usage-exporter
      static_configs:
        - targets:
            - 127.0.0.1:1
    - job_name: vmalert
      static_configs:
        - targets:
            - 127.0.0.1:2
`
	if string(out) != want {
		t.Errorf("scrape config:\n%s\nwant:\n%s", out, want)
	}
}

// TestDemoCatalogue loads the catalogue `make run` uses with the exporter's own loader, and checks
// what the demo relies on: the four plans, twenty tenants, and the two quota breakers on allowances
// below their plans'.
func TestDemoCatalogue(t *testing.T) {
	c, err := config.Load("catalogue.yml")
	if err != nil {
		t.Fatal(err)
	}
	var plans []string
	for _, p := range c.Plans {
		plans = append(plans, p.Name)
	}
	if got := strings.Join(plans, ","); got != "free,starter,pro,enterprise" {
		t.Errorf("plans = %s", got)
	}
	if len(c.Tenants) != 20 {
		t.Errorf("%d tenants, want 20", len(c.Tenants))
	}
	for _, id := range []string{"tenant-0003", "tenant-0007"} {
		tenant, ok := c.Tenant(id)
		if !ok {
			t.Fatalf("%s missing", id)
		}
		plan, _ := c.Plan(tenant.Plan)
		if got := c.PlanOf(id).Limits["ai_tokens"]; got >= plan.Limits["ai_tokens"] {
			t.Errorf("%s: ai_tokens limit %d, want below its plan's %d", id, got, plan.Limits["ai_tokens"])
		}
	}
}

// helperScript writes a shell script standing in for a server, so process supervision is tested
// on real processes and signals.
func helperScript(t *testing.T, body string) string {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	p := filepath.Join(t.TempDir(), "server.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitLog waits until the script has installed its signal handling and said so.
func waitLog(t *testing.T, path, line string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), line+"\n") {
			return
		}
	}
	t.Fatalf("%s never logged %q", path, line)
}

func TestStopIsCleanOnSIGTERM(t *testing.T) {
	script := helperScript(t, "trap 'echo bye; exit 0' TERM\necho started\nwhile :; do sleep 0.05; done\n")
	logs := t.TempDir()
	r, err := start(Process{Name: "polite", Path: script}, logs)
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, filepath.Join(logs, "polite.log"), "started")
	if err := r.stop(10 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(logs, "polite.log"))
	if !strings.Contains(string(b), "bye") {
		t.Errorf("log %q: the process did not handle SIGTERM", b)
	}
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	script := helperScript(t, "trap '' TERM\necho started\nwhile :; do sleep 0.05; done\n")
	logs := t.TempDir()
	r, err := start(Process{Name: "stubborn", Path: script}, logs)
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, filepath.Join(logs, "stubborn.log"), "started")
	err = r.stop(300 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("stop = %v, want a kill reported", err)
	}
	select {
	case <-r.done:
	default:
		t.Fatal("process still running after stop")
	}
}

func TestWaitReadyFailsWhenTheProcessExits(t *testing.T) {
	script := helperScript(t, "echo broken config >&2\nexit 3\n")
	r, err := start(Process{Name: "broken", Path: script, ReadyURL: "http://127.0.0.1:1/health"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	err = r.waitReady(t.Context())
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Fatalf("waitReady = %v, want the early exit reported", err)
	}
}

func TestStateDirectoryIsExclusive(t *testing.T) {
	dir := t.TempDir()
	first, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDir(dir); err == nil {
		t.Fatal("a second lock on the same state directory succeeded")
	}
	first.Close()
	again, err := lockDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Close()
}

func TestStartFailsCleanlyOnAMissingBinary(t *testing.T) {
	dir := t.TempDir()
	_, err := Start(t.Context(), Config{
		StateDir: filepath.Join(dir, "state"), BinDir: filepath.Join(dir, "nobin"), ToolsDir: filepath.Join(dir, "notools"),
		RulesDir: dir, AlertmanagerConfig: filepath.Join("..", "alertmanager", "alertmanager.yml"), Catalogue: "catalogue.yml",
		ScrapeInterval: time.Second, EvalInterval: time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "usage-exporter") {
		t.Fatalf("Start = %v, want an error naming the missing exporter", err)
	}
	// The lock was released: the directory can be used again.
	l, err := lockDir(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatalf("state directory still locked after a failed start: %v", err)
	}
	l.Close()
}

func TestAlertSinkPrintsEachNotification(t *testing.T) {
	var logs strings.Builder
	sink := AlertSink{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	body := `{"version":"4","status":"firing","receiver":"pager","alerts":[
		{"status":"firing","labels":{"alertname":"UsageQuotaExceeded","severity":"critical","tenant":"tenant-0003","meter":"ai_tokens"},
		 "annotations":{"summary":"Tenant tenant-0003 exceeded its ai_tokens quota"}}]}`
	rec := httptest.NewRecorder()
	sink.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/pager", strings.NewReader(body)))
	if rec.Code != http.StatusOK {
		t.Fatalf("POST /pager: %d", rec.Code)
	}
	for _, want := range []string{`msg="PAGER firing"`, "alert=UsageQuotaExceeded", "tenant=tenant-0003", "meter=ai_tokens"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q lacks %s", logs.String(), want)
		}
	}

	rec = httptest.NewRecorder()
	sink.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/team", strings.NewReader("{not json")))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("undecodable body: %d, want 400", rec.Code)
	}
	rec = httptest.NewRecorder()
	sink.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/team", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", rec.Code)
	}
}

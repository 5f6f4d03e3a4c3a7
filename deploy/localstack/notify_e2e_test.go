package localstack_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/deploy/localstack"
	"github.com/usagemeter/usagemeter/notify"
	"github.com/usagemeter/usagemeter/notify/notifytest"
)

// The stack starts mailpit; a tenant's rule crossing 80 % of its quota reaches a verifying
// webhook receiver and mailpit once, and the log says how long each took from the crossing.
func TestNotificationReachesMailpitAndWebhook(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, p := range []string{"bin/usage-exporter", "bin/tools/victoria-metrics", "bin/tools/vmalert", "bin/tools/alertmanager", "bin/tools/mailpit"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Skipf("end-to-end test needs %s: run `make build tools` (make test does both first)", strings.Join(missing, ", "))
	}
	smtpPort := freeTCPPort(t)
	dir := t.TempDir()
	catalogue := filepath.Join(dir, "catalogue.yml")
	doc := fmt.Sprintf(`default_plan: e2e
plans:
  - {name: e2e, enforcement: soft, warning_ratio: 0.8, limits: {ai_tokens: 1000}}
tenants:
  - {id: %s, plan: e2e}
notifications:
  smtp: {addr: "127.0.0.1:%d", from: usagemeter@localstack.test}
`, e2eTenant, smtpPort)
	if err := os.WriteFile(catalogue, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	stack, err := localstack.Start(t.Context(), localstack.Config{
		StateDir: filepath.Join(dir, "state"), BinDir: filepath.Join(root, "bin"), ToolsDir: filepath.Join(root, "bin", "tools"),
		RulesDir: filepath.Join(root, "rules"), AlertmanagerConfig: filepath.Join(root, "deploy", "alertmanager", "alertmanager.yml"),
		Catalogue: catalogue, ScrapeInterval: time.Second, EvalInterval: time.Second,
		Ports:  localstack.Ports{MailpitSMTP: smtpPort},
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatalf("starting the stack: %v", err)
	}
	t.Cleanup(func() {
		if err := stack.Stop(); err != nil {
			t.Errorf("stopping the stack: %v", err)
		}
		if t.Failed() {
			dumpLogs(t, stack.Logs)
		}
	})
	if stack.URLs.Mailpit == "" {
		t.Fatal("the stack did not start mailpit")
	}
	_, apiPort, _ := net.SplitHostPort(strings.TrimPrefix(stack.URLs.Mailpit, "http://"))
	mp := notifytest.Mailpit{SMTP: "127.0.0.1:" + strconv.Itoa(smtpPort), API: "127.0.0.1:" + apiPort}

	// The demo rule `make run` ensures: created once, found on the next start.
	for i, want := range []bool{true, false} {
		if created, err := localstack.EnsureDemoNotification(t.Context(), stack.URLs.Exporter, "demo-tenant", "admin@demo.test"); err != nil || created != want {
			t.Fatalf("demo rule, start %d: created %v (%v), want %v", i, created, err, want)
		}
	}
	rcv := notifytest.NewReceiver(t, func(secret string, h http.Header, body []byte, now time.Time) error {
		return notify.Verify(secret, h, body, now, 5*time.Minute)
	})
	rule := fmt.Sprintf(`{"meter":"ai_tokens","condition":{"kind":"quota_percent","percent":80},"channels":[{"type":"webhook","url":%q},{"type":"email","to":["admin@e2e.test"]}]}`, rcv.URL)
	resp, err := http.Post(stack.URLs.Exporter+"/v1/notifications/rules?tenant="+e2eTenant, "application/json", strings.NewReader(rule))
	if err != nil {
		t.Fatal(err)
	}
	var created notify.Rule
	decodeJSON(t, resp, http.StatusCreated, &created)
	rcv.Trust(created.Channels[0].Secret)

	postEvents(t, stack.URLs.Exporter, aiEvent("n-seed", 500, 0))
	crossing := time.Now()
	postEvents(t, stack.URLs.Exporter, aiEvent("n-crossing", 300, 100)) // 900 of 1000
	notifytest.Eventually(t, time.Minute, "the webhook", func() bool { return len(rcv.Received()) == 1 })
	webhook := rcv.Received()[0].At.Sub(crossing)
	notifytest.Eventually(t, time.Minute, "the e-mail in mailpit", func() bool { return len(mp.Messages(t)) == 1 })
	mail := time.Since(crossing)
	t.Logf("from the crossing event sent to the webhook received: %s; to the e-mail readable in mailpit's API: <= %s (polled every 20 ms)",
		webhook.Round(time.Millisecond), mail.Round(time.Millisecond))
	postEvents(t, stack.URLs.Exporter, aiEvent("n-more", 50, 0))
	m := mp.Messages(t)[0]
	if !strings.Contains(m.Subject, e2eTenant) || !strings.Contains(m.Text, "80% of the quota") || !strings.Contains(m.HTML, "<table") {
		t.Fatalf("message %q:\n%s", m.Subject, m.Text)
	}
	if rcv.Rejected() != 0 {
		t.Fatalf("%d webhook requests did not verify", rcv.Rejected())
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func decodeJSON(t *testing.T, resp *http.Response, want int, into any) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != want {
		var b strings.Builder
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		t.Fatalf("%s: %s %s", resp.Request.URL, resp.Status, b.String())
	}
	if err := jsonDecode(resp, into); err != nil {
		t.Fatal(err)
	}
}

func jsonDecode(resp *http.Response, into any) error { return json.NewDecoder(resp.Body).Decode(into) }

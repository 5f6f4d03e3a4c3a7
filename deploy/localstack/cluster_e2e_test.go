package localstack_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/deploy/localstack"
)

// The cluster topology of `make run-cluster`: three NATS servers, two replicas, VictoriaMetrics
// scraping both. An event sent to the second replica is counted by the first, and once in
// VictoriaMetrics although both replicas export it.
func TestClusterStack(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, p := range []string{"bin/usage-exporter", "bin/tools/victoria-metrics", "bin/tools/vmalert", "bin/tools/alertmanager", "bin/tools/nats-server"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Skipf("end-to-end test needs %s: run `make build tools` (make test does both first)", strings.Join(missing, ", "))
	}
	dir := t.TempDir()
	catalogue := filepath.Join(dir, "catalogue.yml")
	writeCatalogue(t, catalogue, 1000000)
	hook := newWebhookRecorder(t)
	stack, err := localstack.Start(t.Context(), localstack.Config{
		StateDir:           filepath.Join(dir, "state"),
		BinDir:             filepath.Join(root, "bin"),
		ToolsDir:           filepath.Join(root, "bin", "tools"),
		RulesDir:           filepath.Join(root, "rules"),
		AlertmanagerConfig: filepath.Join(root, "deploy", "alertmanager", "alertmanager.yml"),
		Catalogue:          catalogue,
		ScrapeInterval:     time.Second,
		EvalInterval:       time.Second,
		WebhookURL:         hook.server.URL,
		Cluster:            &localstack.Cluster{NATSNodes: 3, Replicas: 2},
		Logger:             slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		dumpLogs(t, filepath.Join(dir, "state", "logs"))
		t.Fatalf("starting the cluster stack: %v", err)
	}
	t.Cleanup(func() {
		if err := stack.Stop(); err != nil {
			t.Errorf("stopping: %v", err)
		}
		if t.Failed() {
			dumpLogs(t, stack.Logs)
		}
	})
	u := stack.URLs
	if len(u.NATS) != 3 || len(u.Replicas) != 2 || u.Exporter != u.Replicas[0] {
		t.Fatalf("URLs: %d NATS servers, %d replicas, exporter %s: want 3, 2 and the first replica", len(u.NATS), len(u.Replicas), u.Exporter)
	}
	for _, n := range u.NATS {
		if !strings.HasPrefix(n, "nats://127.0.0.1:") {
			t.Errorf("NATS URL %q", n)
		}
	}
	start := time.Now()
	postEvents(t, u.Replicas[1], aiEvent("cluster-1", 100, 23))
	vm := u.VictoriaMetrics
	waitFor(t, "VictoriaMetrics to count the event once", func() (bool, error) {
		v, ok, err := queryScalar(t.Context(), vm, fmt.Sprintf(`sum(usage_ai_tokens_total{tenant=%q})`, e2eTenant))
		if ok && v > 123 {
			return false, fmt.Errorf("VictoriaMetrics sums %v tokens over the replicas, 123 were sent", v)
		}
		return ok && v == 123, err
	})
	waitFor(t, "both replicas to be scraped", func() (bool, error) {
		v, ok, err := queryScalar(t.Context(), vm, `count(up{job="usage-exporter-replica"} == 1)`)
		return ok && v == 2, err
	})
	for _, r := range u.Replicas {
		if got := ledgerTotal(t, r, e2eMeter, start.Add(-time.Hour).Truncate(time.Hour), start.Add(2*time.Hour).Truncate(time.Hour)); got != 123 {
			t.Errorf("%s counts %d tokens, want 123", r, got)
		}
	}
}

package usagemeter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/auth"
)

// The real components of the end-to-end test and the benchmark: the usage exporter binary with
// its own store and an authenticated token, and VictoriaMetrics scraping it every second.

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// repoRoot is the module root (this file is in plugin/pkg/usagemeter).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// binaries builds the exporter and the plugin once per test process.
func binaries(tb testing.TB) (exporter, plugin string) {
	tb.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "usagemeter-plugin-e2e-")
		if buildErr != nil {
			return
		}
		for _, b := range []struct{ out, pkg string }{
			{"usage-exporter", "./cmd/usage-exporter"},
			{"gpx_usagemeter_" + runtime.GOOS + "_" + runtime.GOARCH, "./plugin/pkg"},
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, b.out), b.pkg)
			cmd.Dir = repoRoot()
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "usage-exporter"), filepath.Join(buildDir, "gpx_usagemeter_"+runtime.GOOS+"_"+runtime.GOARCH)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc runs a program until the test ends: SIGTERM, then SIGKILL if it does not stop.
func proc(tb testing.TB, logName string, name string, args ...string) {
	tb.Helper()
	logf, err := os.Create(filepath.Join(tb.TempDir(), logName+".log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if tb.Failed() {
			b, _ := os.ReadFile(logf.Name())
			tb.Logf("%s log (tail):\n%s", logName, tail(string(b), 3000))
		}
		logf.Close()
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitFor polls until ok returns true (no timing assertion: the deadline only bounds a hang).
func waitFor(tb testing.TB, what string, limit time.Duration, ok func() bool) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			tb.Fatalf("gave up waiting for %s after %s", what, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func httpOK(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// stack is a running exporter and VictoriaMetrics.
type stack struct {
	Exporter, VM, Token string
}

// startStack starts the exporter (authentication on: the plugin's token is a platform_admin
// bearer token) and VictoriaMetrics scraping it at scrapeInterval.
func startStack(tb testing.TB, tenants []string, scrapeInterval time.Duration) *stack {
	tb.Helper()
	exporterBin, _ := binaries(tb)
	vmBin := filepath.Join(repoRoot(), "bin", "tools", "victoria-metrics")
	if _, err := os.Stat(vmBin); err != nil {
		tb.Fatalf("VictoriaMetrics is missing (%v): run `make tools`", err)
	}
	dir := tb.TempDir()
	token, hash := auth.NewAPIKey()
	var cfg strings.Builder
	cfg.WriteString("auth:\n  tokens:\n    - subject: grafana-plugin\n      hash: " + hash + "\n      roles: [platform_admin]\n")
	cfg.WriteString("default_plan: basic\nplans:\n  - name: basic\n    enforcement: hard\n    warning_ratio: 0.8\n    limits: {ai_tokens: 100000000, documents: 100000, storage_bytes: 107374182400, ingest_bytes: 1099511627776, active_users: 1000}\n")
	if len(tenants) > 0 {
		cfg.WriteString("tenants:\n")
		for _, t := range tenants {
			cfg.WriteString("  - {id: " + t + ", plan: basic}\n")
		}
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	ea, va := freeAddr(tb), freeAddr(tb)
	proc(tb, "usage-exporter", exporterBin, "--web.listen-address="+ea, "--config.file="+cfgPath, "--storage.path="+filepath.Join(dir, "data"), "--log.level=warn")
	scrape := fmt.Sprintf("global:\n  scrape_interval: %[1]s\n  scrape_timeout: %[1]s\nscrape_configs:\n  - job_name: usage-exporter\n    static_configs:\n      - targets: ['%[2]s']\n", scrapeInterval, ea)
	scrapePath := filepath.Join(dir, "scrape.yml")
	if err := os.WriteFile(scrapePath, []byte(scrape), 0o600); err != nil {
		tb.Fatal(err)
	}
	proc(tb, "victoria-metrics", vmBin, "-httpListenAddr="+va, "-storageDataPath="+filepath.Join(dir, "vm"), "-retentionPeriod=100d",
		"-promscrape.config="+scrapePath, "-search.latencyOffset=0s", "-loggerLevel=ERROR")
	s := &stack{Exporter: "http://" + ea, VM: "http://" + va, Token: token}
	waitFor(tb, "the exporter", time.Minute, func() bool { return httpOK(s.Exporter + "/-/ready") })
	waitFor(tb, "VictoriaMetrics", time.Minute, func() bool { return httpOK(s.VM + "/health") })
	return s
}

// post sends a batch of CloudEvents and requires a 202.
func (s *stack) post(tb testing.TB, events []map[string]any) {
	tb.Helper()
	b, err := json.Marshal(events)
	if err != nil {
		tb.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, s.Exporter+"/v1/events", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		body, _ := io.ReadAll(resp.Body)
		tb.Fatalf("POST /v1/events: %d %s", resp.StatusCode, body)
	}
}

// vmHas reports whether an instant query returns at least n series.
func (s *stack) vmHas(ctx context.Context, expr string, n int) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.VM+"/api/v1/query?query="+urlQueryEscape(expr), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	return json.NewDecoder(resp.Body).Decode(&r) == nil && len(r.Data.Result) >= n
}

func event(id, typ string, t time.Time, data map[string]any) map[string]any {
	return map[string]any{"specversion": "1.0", "id": id, "source": "plugin-test", "type": typ, "time": t.UTC().Format(time.RFC3339), "data": data}
}

// do sends an authenticated request to the exporter and requires a status.
func (s *stack) do(tb testing.TB, method, path string, want int) []byte {
	tb.Helper()
	req, _ := http.NewRequest(method, s.Exporter+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		tb.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, body)
	}
	return body
}

package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/usagemeter/usagemeter/exporter/meter"
	"github.com/usagemeter/usagemeter/exporter/server"
	"github.com/usagemeter/usagemeter/internal/testproc"
	"github.com/usagemeter/usagemeter/simulate"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "usage-exporter-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "usage-exporter")
	out, err := exec.Command("go", "build", "-o", binary, "github.com/usagemeter/usagemeter/cmd/usage-exporter").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building usage-exporter: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type exporter struct {
	cmd  *exec.Cmd
	addr string
	url  string
	log  *bytes.Buffer
}

func start(t *testing.T, addr, store string, args ...string) *exporter {
	t.Helper()
	e := &exporter{addr: addr, url: "http://" + addr, log: &bytes.Buffer{}}
	e.cmd = exec.Command(binary, append([]string{"--web.listen-address=" + addr, "--storage.path=" + store}, args...)...)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if e.cmd.ProcessState == nil {
			e.cmd.Process.Kill()
			e.cmd.Wait()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(e.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return e
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("exporter did not become ready:\n%s", e.log)
	return nil
}

type batch struct {
	body   []byte
	events [][]byte
}

func makeBatches(g *simulate.Generator, n, size int, now time.Time, rng *rand.Rand) []batch {
	out := make([]batch, n)
	for i := range out {
		for range size {
			// Times spread over the last 3 days: several hours, days and rollup cells.
			at := now.Add(-time.Duration(rng.Int64N(int64(72 * time.Hour))))
			s := len(out[i].body)
			out[i].body = g.Next(out[i].body, at)
			out[i].events = append(out[i].events, out[i].body[s:len(out[i].body):len(out[i].body)])
			out[i].body = append(out[i].body, '\n')
		}
	}
	return out
}

type ack struct{ Accepted, Duplicates int }

func post(url string, b []byte) (ack, int, error) {
	resp, err := http.Post(url+"/v1/events", "application/x-ndjson", bytes.NewReader(b))
	if err != nil {
		return ack{}, 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var a ack
	if resp.StatusCode == http.StatusAccepted {
		if err := json.Unmarshal(data, &a); err != nil {
			return a, resp.StatusCode, err
		}
	}
	return a, resp.StatusCode, nil
}

func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// checkExact compares /v1/usage (all time to now) and /metrics with the reference totals.
func checkExact(t *testing.T, url string, totals *simulate.Totals, now time.Time) {
	t.Helper()
	from := now.Add(-40 * 24 * time.Hour).Truncate(time.Hour).Format(time.RFC3339)
	to := now.Truncate(time.Hour).Add(2 * time.Hour).Format(time.RFC3339)
	metrics := scrape(t, url)
	checked := 0
	for _, tenant := range totals.Tenants() {
		for _, d := range meter.Defaults() {
			if d.Aggregation == meter.UniqueCount {
				continue // all-time distinct users are checked through the 30d gauge below
			}
			resp, err := http.Get(fmt.Sprintf("%s/v1/usage?tenant=%s&meter=%s&from=%s&to=%s", url, tenant, d.Name, url2(from), url2(to)))
			if err != nil {
				t.Fatal(err)
			}
			var body struct{ Rows []struct{ Value int64 } }
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			var got int64
			for _, r := range body.Rows {
				got += r.Value
			}
			if want := totals.Value(tenant, d.Name); got != want {
				t.Errorf("/v1/usage %s %s = %d, want %d", tenant, d.Name, got, want)
			}
			checked++
		}
		// /metrics: the tenant's series of a counter add up to the exact total.
		var tokens float64
		for k, v := range metrics {
			if strings.HasPrefix(k, "usage_ai_tokens_total{") && strings.Contains(k, "tenant="+tenant+",") || strings.HasPrefix(k, "usage_ai_tokens_total{") && strings.HasSuffix(k, "tenant="+tenant+"}") {
				tokens += v
			}
		}
		if want := totals.Value(tenant, "ai_tokens"); int64(tokens) != want {
			t.Errorf("usage_ai_tokens_total for %s = %v, want %d", tenant, tokens, want)
		}
		if got, want := metrics["usage_active_users{tenant="+tenant+",window=30d}"], totals.Value(tenant, "active_users"); int64(got) != want {
			t.Errorf("usage_active_users 30d for %s = %v, want %d", tenant, got, want)
		}
	}
	if checked == 0 {
		t.Fatal("nothing was checked")
	}
	t.Logf("checked %d tenant×meter totals exactly", checked)
}

func url2(s string) string { return url.QueryEscape(s) }

func TestEndToEndExactAfterCrash(t *testing.T) {
	server.ValidateClient(t) // every request and answer below is checked against the OpenAPI document
	store := t.TempDir()
	addr := testproc.FreeAddr(t)
	e := start(t, addr, store)
	rng := rand.New(rand.NewPCG(7, 7))
	g := simulate.NewGenerator(40, 7)
	now := time.Now().UTC()
	totals := simulate.NewTotals(meter.Defaults())

	// Phase 1: a few thousand events with duplicates and retries, from 4 clients.
	batches := makeBatches(g, 40, 100, now, rng)
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan batch)
	dups := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				a, code, err := post(e.url, b.body)
				if err != nil || code != http.StatusAccepted {
					t.Errorf("post: %v %d", err, code)
					continue
				}
				mu.Lock()
				dups += a.Duplicates
				for _, ev := range b.events {
					totals.Add(ev)
				}
				mu.Unlock()
			}
		}()
	}
	for i, b := range batches {
		work <- b
		if i%5 == 4 { // a client retrying a batch it already sent
			work <- batches[i-2]
		}
	}
	close(work)
	wg.Wait()
	if dups < 7*100 {
		t.Fatalf("only %d duplicates reported for 8 resent batches of 100", dups)
	}
	checkExact(t, e.url, totals, now)
	before := scrape(t, e.url)

	// Phase 2: SIGKILL while 4 clients load the exporter. Batches acknowledged before the kill
	// must all be there after the restart; batches in flight may or may not be: the clients
	// resend them, as real clients would, and each event must count once.
	load := makeBatches(g, 200, 200, now, rng)
	var acked, unacked []batch
	work = make(chan batch)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				_, code, err := post(e.url, b.body)
				mu.Lock()
				if err == nil && code == http.StatusAccepted {
					acked = append(acked, b)
				} else {
					unacked = append(unacked, b)
				}
				mu.Unlock()
			}
		}()
	}
	killed := make(chan struct{})
	go func() {
		for {
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n >= 20 {
				e.cmd.Process.Signal(syscall.SIGKILL)
				e.cmd.Wait()
				close(killed)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for _, b := range load {
		work <- b
	}
	close(work)
	wg.Wait()
	<-killed
	t.Logf("killed with %d batches acknowledged and %d not", len(acked), len(unacked))
	if len(unacked) == 0 {
		t.Fatal("the kill did not interrupt the load")
	}
	for _, b := range acked {
		for _, ev := range b.events {
			totals.Add(ev)
		}
	}

	e = start(t, addr, store)
	after := scrape(t, e.url)
	for k, v := range before {
		if strings.Contains(k, "_total{") && strings.HasPrefix(k, "usage_") && !strings.HasPrefix(k, "usage_exporter_") && after[k] < v {
			t.Errorf("counter %s went down across the crash: %v → %v", k, v, after[k])
		}
	}
	// Every acknowledged event is there: resending an acknowledged batch finds only duplicates.
	for _, b := range acked[:5] {
		a, code, err := post(e.url, b.body)
		if err != nil || code != http.StatusAccepted || a.Accepted != 0 || a.Duplicates != len(b.events) {
			t.Fatalf("resent acknowledged batch: %+v %d %v (want all %d duplicates)", a, code, err, len(b.events))
		}
	}
	for _, b := range unacked {
		if _, code, err := post(e.url, b.body); err != nil || code != http.StatusAccepted {
			t.Fatalf("resending: %v %d", err, code)
		}
		for _, ev := range b.events {
			totals.Add(ev)
		}
	}
	checkExact(t, e.url, totals, now)

	// Graceful stop: SIGTERM exits 0.
	e.cmd.Process.Signal(syscall.SIGTERM)
	if err := e.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, e.log)
	}
}

func TestBadConfigNamesFileLineField(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "bad.yml")
	os.WriteFile(cfg, []byte("plans:\n  - name: free\n    limits:\n      documents: 10\n      tokenz: 5\n"), 0o644)
	out, err := exec.Command(binary, "--config.file="+cfg, "--storage.path="+t.TempDir(), "--web.listen-address="+testproc.FreeAddr(t)).CombinedOutput()
	if err == nil {
		t.Fatal("started with a bad config")
	}
	if !strings.Contains(string(out), cfg+":5") || !strings.Contains(string(out), "plans[0].limits.tokenz") {
		t.Fatalf("message does not name file, line and field:\n%s", out)
	}
}

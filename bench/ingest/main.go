// Command ingest benchmarks the usage exporter against the real binary on loopback:
// durable ingestion from concurrent clients (events/s, acknowledgement latency), the same
// events sent to statsd_exporter over UDP, and /metrics scrape time and memory at 10,000 and
// 100,000 series. It prints a table and appends rows to bench-results/ingest.tsv. With -baseline
// it only compares: this exporter and an earlier one take the same load at once.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fastjson"

	"github.com/usagemeter/usagemeter/bench/loadgen"
	"github.com/usagemeter/usagemeter/simulate"
)

var (
	exporterBin = flag.String("exporter", "bin/usage-exporter", "usage-exporter binary")
	statsdBin   = flag.String("statsd", "bin/tools/statsd_exporter", "statsd_exporter binary")
	events      = flag.Int("events", 1000000, "events to send (10 s or more at the target rate: a sustained figure, flushes and compactions included)")
	batchSize   = flag.Int("batch", 1000, "events per request")
	clients     = flag.Int("clients", 8, "concurrent clients")
	series      = flag.String("series", "10000,100000", "series counts for the scrape benchmark")
	out         = flag.String("out", "bench-results/ingest.tsv", "results file")
	baseline    = flag.String("baseline", "", "an earlier usage-exporter binary: when set, only a paired run is made, both exporters taking the same load at once, and the table gives each one's CPU per event and their ratio (make bench-ingest-vs BASE=<git revision>)")
)

type result struct{ name, value, unit, note string }

var results []result

func record(name, value, unit, note string) {
	results = append(results, result{name, value, unit, note})
	fmt.Printf("%-44s %14s %-10s %s\n", name, value, unit, note)
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	os.MkdirAll(filepath.Dir(*out), 0o755)
	var b strings.Builder
	for _, r := range results {
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\n", r.name, r.value, r.unit, r.note)
	}
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func startExporter(extra ...string) (*loadgen.Proc, error) {
	return loadgen.StartBinary(*exporterBin, extra...)
}

func run() error {
	fmt.Printf("usagemeter ingest benchmark: %d events, batches of %d, %d clients, %d CPUs\n\n", *events, *batchSize, *clients, loadgen.NumCPU())
	g := simulate.NewGenerator(200, 42)
	now := time.Now()
	nb := *events / *batchSize
	bodies := make([][]byte, nb)
	for i := range bodies {
		bodies[i] = g.Batch(*batchSize, now)
	}
	if *baseline != "" {
		return runPaired(bodies)
	}

	// usage-exporter: durable, deduplicated, exact.
	p, err := startExporter()
	if err != nil {
		return err
	}
	r := ingestAll(p, bodies)
	if r.err != nil {
		return r.err
	}
	lat, elapsed, cpu := r.lat, r.elapsed, r.cpu
	accepted, err := metricValue(p.URL, "usage_exporter_events_accepted_total")
	if err != nil {
		return err
	}
	if err := benchQuotaCheck(p.URL); err != nil {
		return err
	}
	p.Stop()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	sent := nb * *batchSize
	rate := float64(sent) / elapsed.Seconds()
	record("usage-exporter events/s (durable, fsync per group)", fmt.Sprintf("%.0f", rate), "events/s", fmt.Sprintf("%d clients x batches of %d", *clients, *batchSize))
	record("usage-exporter counted", fmt.Sprintf("%.2f", 100*accepted/float64(sent)), "%", fmt.Sprintf("%d of %d events", int(accepted), sent))
	record("usage-exporter ack latency p50 (batch)", ms(lat[len(lat)/2]), "ms", "")
	record("usage-exporter ack latency p99 (batch)", ms(lat[len(lat)*99/100]), "ms", "")
	if cpu > 0 {
		// CPU time per event moves much less than events/s when other work shares the machine.
		record("usage-exporter CPU per event (ingest)", fmt.Sprintf("%.1f", float64(cpu.Nanoseconds())/1000/float64(sent)), "us",
			fmt.Sprintf("%.2f CPU-s over %.2f s; %.0f events/s per CPU-second", cpu.Seconds(), elapsed.Seconds(), float64(sent)/cpu.Seconds()))
	}

	// statsd_exporter: the same events as DogStatsD lines over UDP, unpaced.
	if _, err := os.Stat(*statsdBin); err != nil {
		record("statsd_exporter", "n/a", "", "binary missing: run make tools")
	} else if err := benchStatsd(bodies, sent, rate); err != nil {
		return err
	}

	for _, s := range strings.Split(*series, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		if err := benchScrape(n); err != nil {
			return err
		}
	}
	return nil
}

// ingestRun is what one exporter did under the load.
type ingestRun struct {
	lat          []time.Duration // per request
	elapsed, cpu time.Duration
	err          error
}

// ingestAll sends every body to p from *clients clients, then flushes its derived changes: the
// exporter folds derived usage in memory and writes it every few seconds, and the time and CPU
// of writing what the load left pending count too (a usage query flushes it first).
func ingestAll(p *loadgen.Proc, bodies [][]byte) ingestRun {
	cpu0 := loadgen.ProcCPU(p.Cmd.Process.Pid)
	start := time.Now()
	lat, err := loadgen.Load(*clients, len(bodies), func(client *http.Client, i int) error {
		return loadgen.Post(client, p.URL+"/v1/events", "application/x-ndjson", bytes.NewReader(bodies[i]), http.StatusAccepted)
	})
	if err == nil {
		err = loadgen.FlushDerived(p.URL)
	}
	return ingestRun{lat: lat, elapsed: time.Since(start), cpu: loadgen.ProcCPU(p.Cmd.Process.Pid) - cpu0, err: err}
}

// runPaired loads this exporter and the baseline at once with the same events. The host's
// speed drifts a lot from one run to the next; both exporters live through the same drift, so
// the ratio of their CPU per event holds where separate runs would not.
func runPaired(bodies [][]byte) error {
	var procs [2]*loadgen.Proc
	for i, bin := range []string{*exporterBin, *baseline} {
		p, err := loadgen.StartBinary(bin)
		if err != nil {
			return fmt.Errorf("starting %s: %w", bin, err)
		}
		defer p.Stop()
		procs[i] = p
	}
	var runs [2]ingestRun
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = ingestAll(p, bodies)
		}()
	}
	wg.Wait()
	sent := len(bodies) * *batchSize
	perEvent := func(r ingestRun) float64 { return float64(r.cpu.Nanoseconds()) / 1000 / float64(sent) }
	for i, name := range []string{"usage-exporter", "baseline"} {
		if runs[i].err != nil {
			return fmt.Errorf("%s: %w", name, runs[i].err)
		}
		note := fmt.Sprintf("%.2f CPU-s, %.0f events/s while sharing the machine", runs[i].cpu.Seconds(), float64(sent)/runs[i].elapsed.Seconds())
		record("paired: "+name+" CPU per event", fmt.Sprintf("%.1f", perEvent(runs[i])), "us", note)
	}
	record("paired: CPU per event, usage-exporter / baseline", fmt.Sprintf("%.2f", perEvent(runs[0])/perEvent(runs[1])), "ratio", *baseline)
	return nil
}

// benchQuotaCheck measures POST /v1/quota/check end to end (HTTP, exact usage, the quota policy)
// from concurrent clients against the exporter loaded above.
func benchQuotaCheck(url string) error {
	const n = 20000
	start := time.Now()
	lat, failed := loadgen.Load(*clients, n, func(client *http.Client, i int) error {
		body := fmt.Sprintf(`{"tenant":"tenant-%04d","meter":"ai_tokens","amount":%d,"feature":"chat"}`, 1+i%200, 100+i%5000)
		return loadgen.Post(client, url+"/v1/quota/check", "application/json", strings.NewReader(body), http.StatusOK)
	})
	if failed != nil {
		return failed
	}
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	note := fmt.Sprintf("%d clients, %d checks", *clients, n)
	record("quota check (HTTP) requests/s", fmt.Sprintf("%.0f", float64(n)/elapsed.Seconds()), "req/s", note)
	record("quota check (HTTP) latency p50", fmt.Sprintf("%.2f", float64(lat[n/2].Microseconds())/1000), "ms", note)
	record("quota check (HTTP) latency p99", fmt.Sprintf("%.2f", float64(lat[n*99/100].Microseconds())/1000), "ms", note)
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

// statsdLines turns one event into DogStatsD counter lines, one per quantity (or one count).
func statsdLines(body []byte) [][]byte {
	var p fastjson.Parser
	var lines [][]byte
	for line := range bytes.Lines(body) {
		v, err := p.ParseBytes(bytes.TrimSpace(line))
		if err != nil {
			continue
		}
		typ := strings.ReplaceAll(string(v.GetStringBytes("type")), ".", "_")
		d := v.Get("data")
		tags := "#tenant:" + string(d.GetStringBytes("tenant"))
		lines = append(lines, []byte("usage_events:1|c|"+tags+",type:"+typ))
	}
	return lines
}

func benchStatsd(bodies [][]byte, sent int, exporterRate float64) error {
	udp := loadgen.FreeAddr() // a free TCP port; the UDP port of the same number is almost surely free too
	web := loadgen.FreeAddr()
	cmd := exec.Command(*statsdBin, "--statsd.listen-udp="+udp, "--statsd.listen-tcp=", "--web.listen-address="+web, "--log.level=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := loadgen.WaitReady("http://" + web + "/metrics"); err != nil {
		return err
	}
	var all [][]byte
	for _, b := range bodies {
		all = append(all, statsdLines(b)...)
	}
	start := time.Now()
	var wg sync.WaitGroup
	chunk := (len(all) + *clients - 1) / *clients
	for c := range *clients {
		wg.Add(1)
		go func(lines [][]byte) {
			defer wg.Done()
			conn, err := net.Dial("udp", udp)
			if err != nil {
				return
			}
			defer conn.Close()
			for _, l := range lines {
				conn.Write(l)
			}
		}(all[c*chunk : min((c+1)*chunk, len(all))])
	}
	wg.Wait()
	elapsed := time.Since(start)
	time.Sleep(2 * time.Second) // let it drain its socket buffer
	counted, err := loadgen.SumMetric("http://"+web, "usage_events")
	if err != nil {
		return err
	}
	record("statsd_exporter events/s sent (UDP, in memory)", fmt.Sprintf("%.0f", float64(len(all))/elapsed.Seconds()), "events/s",
		fmt.Sprintf("usage-exporter/statsd send rate = %.2f", exporterRate/(float64(len(all))/elapsed.Seconds())))
	record("statsd_exporter events/s counted", fmt.Sprintf("%.0f", counted/elapsed.Seconds()), "events/s", "")
	record("statsd_exporter counted", fmt.Sprintf("%.2f", 100*counted/float64(sent)), "%", fmt.Sprintf("%d of %d events; lost on restart", int(counted), sent))
	return nil
}

func benchScrape(n int) error {
	dir, err := os.MkdirTemp("", "usagemeter-bench-cfg")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := filepath.Join(dir, "config.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("metrics:\n  series_limit: %d\n", n*2)), 0o644)
	p, err := startExporter("--config.file=" + cfg)
	if err != nil {
		return err
	}
	defer p.Stop()
	// n distinct series of usage_feature_uses_total: tenants x features.
	tenants := max(1, n/100)
	now := time.Now().UTC().Format(time.RFC3339)
	var body []byte
	id := 0
	flush := func() error {
		if len(body) == 0 {
			return nil
		}
		resp, err := http.Post(p.URL+"/v1/events", "application/x-ndjson", bytes.NewReader(body))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		body = body[:0]
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("loading series: %s", resp.Status)
		}
		return nil
	}
	for t := range tenants {
		for f := range n / tenants {
			id++
			body = fmt.Appendf(body, `{"specversion":"1.0","id":"%d","source":"bench","type":"feature.used","time":%q,"data":{"tenant":"t%05d","user":"u","feature":"f%03d"}}`+"\n", id, now, t, f)
			if id%5000 == 0 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	rssBefore := loadgen.RSS(p.Cmd.Process.Pid)
	var times []time.Duration
	var size int
	for range 5 {
		t0 := time.Now()
		resp, err := http.Get(p.URL + "/metrics")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		times = append(times, time.Since(t0))
		size = len(b)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	record(fmt.Sprintf("/metrics scrape at %d usage series (median of 5)", n), ms(times[2]), "ms", fmt.Sprintf("%d bytes", size))
	record(fmt.Sprintf("exporter RSS at %d series (before/after scrape)", n), fmt.Sprintf("%d/%d", rssBefore>>20, loadgen.RSS(p.Cmd.Process.Pid)>>20), "MiB", "")
	return nil
}

func metricValue(url, name string) (float64, error) { return loadgen.SumMetric(url, name) }

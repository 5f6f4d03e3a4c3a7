// Command soak runs the usage exporter under a steady load for a long time (30 minutes by
// default) and fails when its memory or its acknowledgement latency keeps growing. It first
// measures the exporter's peak ingest rate with a short unpaced burst, as bench/ingest does,
// then sends half of it, paced, and reports RSS, open files, store size and ack latency p99 at
// every interval. The trend test is in trend.go. `make bench-soak` (SOAK=5m for a short trial).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usagemeter/usagemeter/bench/loadgen"
	"github.com/usagemeter/usagemeter/simulate"
)

var (
	exporterBin = flag.String("exporter", "bin/usage-exporter", "usage-exporter binary")
	duration    = flag.Duration("duration", 30*time.Minute, "how long the steady load runs (after the peak burst)")
	interval    = flag.Duration("interval", 0, "sampling interval (0: a minute, or a tenth of -duration when that is shorter than 10 minutes)")
	warmup      = flag.Duration("warmup", 5*time.Minute, "samples in the first part of the run are reported but left out of the trend test (capped at a third of -duration)")
	burst       = flag.Duration("burst", 15*time.Second, "the unpaced burst that measures the peak rate")
	share       = flag.Float64("share", 0.5, "the steady load, as a share of the measured peak")
	batchSize   = flag.Int("batch", 1000, "events per request")
	clients     = flag.Int("clients", 8, "concurrent clients")
	rssTol      = flag.Float64("rss-tolerance", 0.10, "fail when RSS is projected to grow by more than this share of its median over the window...")
	rssFloor    = flag.Float64("rss-floor", 64, "...and by more than this many MiB")
	p99Tol      = flag.Float64("p99-tolerance", 0.50, "fail when the ack latency p99 is projected to grow by more than this share of its median over the window...")
	p99Floor    = flag.Float64("p99-floor", 25, "...and by more than this many milliseconds")
	out         = flag.String("out", "bench-results/soak.tsv", "results file")
)

func main() {
	flag.Parse()
	ok, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	if !ok {
		fmt.Fprintln(os.Stderr, "soak: FAILED: a resource keeps growing (see the trend lines above)")
		os.Exit(1)
	}
}

// sample is one interval of the steady load.
type sample struct {
	at        time.Duration // since the steady load started
	rss       int64
	heap      float64 // Go heap in use, from the exporter's /metrics: RSS beyond it is Pebble's cache and memtables
	openFiles int
	store     int64
	p99       time.Duration
	events    int64 // acknowledged in the interval
	failures  int64
	missed    int64 // requests the schedule wanted but no client was free to send
}

func run() (bool, error) {
	every := *interval
	if every <= 0 {
		every = min(time.Minute, *duration/10)
	}
	warm := min(*warmup, *duration/3)
	fmt.Printf("usagemeter soak: peak burst %s, then %.0f%% of the peak for %s, sampled every %s (trend after %s of warm-up); %d clients x batches of %d, %d CPUs\n\n",
		*burst, 100**share, *duration, every, warm, *clients, *batchSize, loadgen.NumCPU())
	p, err := loadgen.StartBinary(*exporterBin)
	if err != nil {
		return false, err
	}
	defer p.Stop()

	// Each client of the steady load has its own generator (its own event source), and the
	// burst one more, so ids never collide.
	gens := make([]*simulate.Generator, *clients)
	for i := range gens {
		gens[i] = simulate.NewGenerator(200, uint64(1000+i))
	}
	peak, err := measurePeak(p, simulate.NewGenerator(200, 999))
	if err != nil {
		return false, err
	}
	target := peak * *share
	fmt.Printf("peak: %.0f events/s over %s; steady load: %.0f events/s\n\n", peak, *burst, target)
	fmt.Printf("%8s %10s %10s %8s %12s %10s %12s %9s %7s\n", "minute", "RSS MiB", "heap MiB", "fds", "store MiB", "p99 ms", "events/s", "failures", "missed")

	samples, err := steady(p, gens, target, every)
	if err != nil {
		return false, err
	}
	var xs, rss, p99 []float64
	for _, s := range samples {
		if s.at <= warm {
			continue
		}
		xs = append(xs, s.at.Minutes())
		rss = append(rss, float64(s.rss)/(1<<20))
		p99 = append(p99, float64(s.p99.Microseconds())/1000)
	}
	fmt.Println()
	ok := true
	var verdicts []trend
	for _, c := range []struct {
		name, unit string
		ys         []float64
		tol, floor float64
	}{{"RSS", "MiB", rss, *rssTol, *rssFloor}, {"ack latency p99", "ms", p99, *p99Tol, *p99Floor}} {
		tr, err := checkTrend(c.name, c.unit, xs, c.ys, c.tol, c.floor)
		if err != nil {
			return false, err
		}
		fmt.Println(tr)
		verdicts = append(verdicts, tr)
		ok = ok && !tr.Failed
	}
	var failures int64
	for _, s := range samples {
		failures += s.failures
	}
	if failures > 0 {
		fmt.Printf("%d requests failed\n", failures)
		ok = false
	}
	return ok, writeResults(peak, target, samples, verdicts)
}

// measurePeak sends unpaced batches from every client for *burst, then has the exporter flush
// what it folded in memory (as bench/ingest counts it), and returns the events acknowledged per
// second.
func measurePeak(p *loadgen.Proc, g *simulate.Generator) (float64, error) {
	var mu sync.Mutex
	var acked atomic.Int64
	start := time.Now()
	deadline := start.Add(*burst)
	// loadgen.Load hands out request numbers; those past the deadline return at once.
	_, err := loadgen.Load(*clients, 1<<20, func(c *http.Client, _ int) error {
		if time.Now().After(deadline) {
			return nil
		}
		mu.Lock()
		body := batchOf(g, nil, *batchSize)
		mu.Unlock()
		if err := loadgen.Post(c, p.URL+"/v1/events", "application/x-ndjson", bytes.NewReader(body), http.StatusAccepted); err != nil {
			return err
		}
		acked.Add(int64(*batchSize))
		return nil
	})
	if err == nil {
		err = loadgen.FlushDerived(p.URL)
	}
	if err != nil {
		return 0, fmt.Errorf("measuring the peak: %w", err)
	}
	return float64(acked.Load()) / time.Since(start).Seconds(), nil
}

// steady sends target events/s for *duration and samples the exporter every interval.
func steady(p *loadgen.Proc, gens []*simulate.Generator, target float64, every time.Duration) ([]sample, error) {
	pid := p.Cmd.Process.Pid
	perBatch := time.Duration(float64(time.Second) * float64(*batchSize) / target)
	tokens := make(chan struct{}, len(gens))
	stop := make(chan struct{})
	var mu sync.Mutex
	var cur sample
	var lat []time.Duration
	var wg sync.WaitGroup
	for _, g := range gens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{}
			var body []byte
			for range tokens {
				body = batchOf(g, body[:0], *batchSize)
				t0 := time.Now()
				err := loadgen.Post(client, p.URL+"/v1/events", "application/x-ndjson", bytes.NewReader(body), http.StatusAccepted)
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					cur.failures++
				} else {
					cur.events += int64(*batchSize)
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	// The schedule: one batch every perBatch, whether or not the last one was answered.
	go func() {
		defer close(tokens)
		next := time.Now()
		for {
			next = next.Add(perBatch)
			select {
			case <-stop:
				return
			case <-time.After(time.Until(next)):
			}
			select {
			case tokens <- struct{}{}:
			default:
				mu.Lock()
				cur.missed++
				mu.Unlock()
			}
		}
	}()
	var samples []sample
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for now := range tick.C {
		mu.Lock()
		s := cur
		cur = sample{}
		l := lat
		lat = nil
		mu.Unlock()
		s.at = now.Sub(start)
		s.rss = loadgen.RSS(pid)
		s.heap, _ = loadgen.SumMetric(p.URL, "go_memstats_heap_inuse_bytes")
		s.openFiles = loadgen.OpenFiles(pid)
		s.store = loadgen.DirBytes(p.StorePath())
		if len(l) > 0 {
			slices.Sort(l)
			s.p99 = l[len(l)*99/100]
		}
		samples = append(samples, s)
		fmt.Printf("%8.2f %10.1f %10.1f %8d %12.1f %10.1f %12.0f %9d %7d\n", s.at.Minutes(), float64(s.rss)/(1<<20), s.heap/(1<<20), s.openFiles, float64(s.store)/(1<<20),
			float64(s.p99.Microseconds())/1000, float64(s.events)/every.Seconds(), s.failures, s.missed)
		if s.at >= *duration-every/2 {
			break
		}
	}
	close(stop)
	wg.Wait()
	return samples, nil
}

// batchOf appends n fresh events, timed now, one per line.
func batchOf(g *simulate.Generator, body []byte, n int) []byte {
	now := time.Now()
	for range n {
		body = g.Next(body, now)
		body = append(body, '\n')
	}
	return body
}

// writeResults writes the summary rows to *out (name, value, unit, note: bench/summary's format)
// and every sample to a CSV beside it.
func writeResults(peak, target float64, samples []sample, verdicts []trend) error {
	var b strings.Builder
	fmt.Fprintf(&b, "soak peak\t%.0f\tevents/s\tburst %s\n", peak, *burst)
	fmt.Fprintf(&b, "soak steady load\t%.0f\tevents/s\t%.0f%% of the peak for %s\n", target, 100**share, *duration)
	if len(samples) > 0 {
		first, last := samples[0], samples[len(samples)-1]
		fmt.Fprintf(&b, "soak RSS first/last sample\t%.0f/%.0f\tMiB\theap %.0f/%.0f MiB\n", float64(first.rss)/(1<<20), float64(last.rss)/(1<<20), first.heap/(1<<20), last.heap/(1<<20))
		fmt.Fprintf(&b, "soak store size at the end\t%.0f\tMiB\t%d open files\n", float64(last.store)/(1<<20), last.openFiles)
	}
	for _, t := range verdicts {
		fmt.Fprintf(&b, "soak trend %s\t%+.3f\t%s/min\t%s\n", t.Name, t.Slope, t.Unit, t)
	}
	var c strings.Builder
	c.WriteString("minute,rss_bytes,heap_bytes,open_files,store_bytes,ack_p99_seconds,events,failures,missed\n")
	for _, s := range samples {
		fmt.Fprintf(&c, "%.2f,%d,%.0f,%d,%d,%.4f,%d,%d,%d\n", s.at.Minutes(), s.rss, s.heap, s.openFiles, s.store, s.p99.Seconds(), s.events, s.failures, s.missed)
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(strings.TrimSuffix(*out, filepath.Ext(*out))+"-samples.csv", []byte(c.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(*out, []byte(b.String()), 0o644)
}

// Command cluster benchmarks cluster mode against a single node in the same run, on loopback
// with the real binaries: ingest through two exporter replicas over a three-node NATS JetStream
// cluster (R3, file storage), with the servers fsyncing every write (sync_interval: always, the
// setting cluster mode ships with) and with NATS' default background sync, as a ratio to a
// single node's durable ingest of the same events; acknowledgement latency p50/p99; how long a
// replica takes to catch up after being down; and throughput estimates for 3 and 9 nodes from
// those measured figures. It prints a table and writes bench-results/cluster.tsv.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagemeter/usagemeter/exporter/cluster/clustertest"
	"github.com/usagemeter/usagemeter/simulate"
)

var (
	exporterBin = flag.String("exporter", "bin/usage-exporter", "usage-exporter binary")
	natsBin     = flag.String("nats", "bin/tools/nats-server", "nats-server binary")
	events      = flag.Int("events", 200000, "events per ingest run")
	batchSize   = flag.Int("batch", 1000, "events per request")
	clients     = flag.Int("clients", 8, "concurrent clients")
	down        = flag.Duration("down", 60*time.Second, "how long a replica stays down while the other takes load, before it catches up")
	downRate    = flag.Int("down-rate", 2000, "events/s sent while a replica is down")
	out         = flag.String("out", "bench-results/cluster.tsv", "results file")
)

type result struct{ name, value, unit, note string }

var results []result

func record(name, value, unit, note string) {
	results = append(results, result{name, value, unit, note})
	fmt.Printf("%-52s %12s %-9s %s\n", name, value, unit, note)
}

func main() {
	flag.Parse()
	err := run()
	if len(results) > 0 {
		_ = os.MkdirAll(filepath.Dir(*out), 0o755)
		var b strings.Builder
		for _, r := range results {
			fmt.Fprintf(&b, "%s\t%s\t%s\t%s\n", r.name, r.value, r.unit, r.note)
		}
		if werr := os.WriteFile(*out, []byte(b.String()), 0o644); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-cluster:", err)
		os.Exit(1)
	}
}

// ingest is one run's measurements.
type ingest struct {
	rate   float64
	p50    time.Duration
	p99    time.Duration
	maxSeq uint64
}

func run() error {
	ctx := context.Background()
	fmt.Printf("usagemeter cluster benchmark: %d events per run, batches of %d, %d clients\n\n", *events, *batchSize, *clients)
	work, err := os.MkdirTemp("", "usagemeter-bench-cluster")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bodies := func(seed uint64) [][]byte {
		g := simulate.NewGenerator(200, seed)
		now := time.Now()
		b := make([][]byte, *events / *batchSize)
		for i := range b {
			b[i] = g.Batch(*batchSize, now)
		}
		return b
	}

	// A single node: the baseline, same events, same clients.
	single, err := clustertest.NewReplica(clustertest.ReplicaOptions{Binary: *exporterBin, Name: "single", Dir: work})
	if err != nil {
		return err
	}
	single.Args = withoutCluster(single.Args)
	if err := single.Start(); err != nil {
		return err
	}
	if err := single.WaitReady(ctx); err != nil {
		return err
	}
	base, err := load([]string{single.URL()}, bodies(1))
	single.Stop(30 * time.Second)
	if err != nil {
		return fmt.Errorf("single node: %w", err)
	}
	record("single node ingest", fmt.Sprintf("%.0f", base.rate), "events/s", fmt.Sprintf("%d clients x batches of %d", *clients, *batchSize))
	record("single node ack latency p50 / p99", ms(base.p50)+" / "+ms(base.p99), "ms", "")

	var synced ingest
	for _, always := range []bool{false, true} {
		name := "sync_interval default (2m)"
		if always {
			name = "sync_interval always"
		}
		c, err := startCluster(ctx, filepath.Join(work, fmt.Sprintf("cluster-%v", always)), always, false)
		if err != nil {
			return err
		}
		small, large, err := publishLatency(ctx, c.nats.URLs())
		if err != nil {
			c.stop()
			return fmt.Errorf("JetStream publish (%s): %w", name, err)
		}
		record("JetStream R3 publish ack p50 / p99, 1 event, "+name, ms(small[0])+" / "+ms(small[1]), "ms", "one client, one message at a time: the cost of replication and fsync alone")
		record("JetStream R3 publish ack p50 / p99, 1,000 events, "+name, ms(large[0])+" / "+ms(large[1]), "ms", "70 kB messages, one at a time")
		r, err := load(c.urls(), bodies(2))
		if err == nil {
			var lag time.Duration
			lag, err = c.waitApplied(ctx, r.maxSeq)
			record("cluster ingest, "+name, fmt.Sprintf("%.0f", r.rate), "events/s", "3 NATS (R3), 2 replicas, load split across both")
			record("cluster / single node ingest, "+name, fmt.Sprintf("%.2f", r.rate/base.rate), "ratio", "same events, same run")
			record("cluster ack latency p50 / p99, "+name, ms(r.p50)+" / "+ms(r.p99), "ms", "202 after a quorum holds the message and this replica applied it")
			record("cluster apply lag after the load, "+name, ms(lag), "ms", "until both replicas applied the last acknowledged position")
		}
		if err == nil && always {
			synced = r
			err = c.catchUp(ctx, bodies(3))
			if err == nil {
				err = c.failover(ctx)
			}
		}
		c.stop()
		if err != nil {
			return fmt.Errorf("cluster (%s): %w", name, err)
		}
	}
	// Two tenant partitions, one per replica: each applies half of the events (the simulator's
	// batches span both partitions: multi-partition messages, each replica keeping its tenants').
	c, err := startCluster(ctx, filepath.Join(work, "cluster-partitioned"), true, true)
	if err != nil {
		return err
	}
	r, err := load(c.urls(), bodies(4))
	var lag time.Duration
	if err == nil {
		lag, err = c.waitApplied(ctx, r.maxSeq)
	}
	c.stop()
	if err != nil {
		return fmt.Errorf("partitioned cluster: %w", err)
	}
	applied := float64(*events) / (float64(*events)/r.rate + lag.Seconds())
	record("cluster ingest, 2 partitions (one per replica), sync always", fmt.Sprintf("%.0f", applied), "events/s",
		fmt.Sprintf("acknowledged at %.0f events/s; applied by both owners %s after the load", r.rate, ms(lag)+" ms"))
	record("cluster / single node ingest, 2 partitions", fmt.Sprintf("%.2f", applied/base.rate), "ratio", "until applied: each replica applies half of the events")

	// Estimates from the per-node figures above. One stream orders every write (one Raft
	// leader); partitions split the apply work between replicas, not the ordering.
	record("estimate: 3 nodes (3 NATS, 2 replicas), one partition", fmt.Sprintf("%.0f", synced.rate), "events/s", "measured above: every replica applies every event")
	record("estimate: 3 nodes (3 NATS, 2 replicas), 2 partitions", fmt.Sprintf("%.0f", applied), "events/s", "measured above: each replica applies half")
	record("estimate: 9 nodes (3 NATS, 6 replicas), 6 partitions", fmt.Sprintf("%.0f", 3*applied), "events/s",
		"projection, not measured: 3 x the 2-partition figure, if the stream's one leader keeps up (above that, several streams: not built)")
	record("estimate: 9 nodes (9 NATS), one partition", fmt.Sprintf("%.0f", synced.rate), "events/s", "no gain: more NATS servers add fault tolerance, not throughput")
	return nil
}

func withoutCluster(args []string) []string {
	var out []string
	for _, a := range args {
		if !strings.HasPrefix(a, "--cluster.") {
			out = append(out, a)
		}
	}
	return out
}

type benchCluster struct {
	nats     *clustertest.NATS
	replicas []*clustertest.Replica
}

// startCluster starts three NATS servers and two replicas; partitioned gives each replica one of
// two tenant partitions (docs/cluster.md) instead of all of them.
func startCluster(ctx context.Context, dir string, syncAlways, partitioned bool) (*benchCluster, error) {
	n, err := clustertest.StartNATS(ctx, clustertest.NATSOptions{Binary: *natsBin, Dir: dir, Nodes: 3, SyncAlways: syncAlways})
	if err != nil {
		return nil, err
	}
	c := &benchCluster{nats: n}
	for i := range 2 {
		r, err := clustertest.NewReplica(clustertest.ReplicaOptions{Binary: *exporterBin, Name: fmt.Sprintf("replica-%d", i+1), Dir: dir,
			NATS: n.URLs(), Args: []string{"--log.level=warn"}})
		if err != nil {
			c.stop()
			return nil, err
		}
		c.replicas = append(c.replicas, r)
	}
	for i, r := range c.replicas {
		if partitioned {
			r.Args = append(r.Args, "--cluster.partitions=2", fmt.Sprintf("--cluster.owned=%d", i),
				fmt.Sprintf("--cluster.peer=%s=%d", c.replicas[1-i].URL(), 1-i))
		}
		if err := r.Start(); err != nil {
			c.stop()
			return nil, err
		}
	}
	for _, r := range c.replicas {
		if err := r.WaitReady(ctx); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *benchCluster) urls() []string {
	var u []string
	for _, r := range c.replicas {
		u = append(u, r.URL())
	}
	return u
}

func (c *benchCluster) stop() {
	for _, r := range c.replicas {
		r.Stop(30 * time.Second)
	}
	c.nats.Stop()
}

// waitApplied waits until every replica reflects log position seq and returns how long it took.
func (c *benchCluster) waitApplied(ctx context.Context, seq uint64) (time.Duration, error) {
	start := time.Now()
	for _, r := range c.replicas {
		if err := waitSeq(ctx, r.URL(), seq, 10*time.Minute); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// catchUp stops the second replica, sends load to the first for -down, then starts the second
// again and times its catch-up to the last acknowledged position.
func (c *benchCluster) catchUp(ctx context.Context, bodies [][]byte) error {
	r := c.replicas[1]
	r.Stop(30 * time.Second)
	perBatch := time.Duration(float64(time.Second) * float64(*batchSize) / float64(*downRate))
	var maxSeq uint64
	client := &http.Client{}
	end := time.Now().Add(*down)
	for i := 0; time.Now().Before(end); i++ {
		t0 := time.Now()
		seq, err := post(client, c.replicas[0].URL(), bodies[i%len(bodies)])
		if err != nil {
			return err
		}
		// Past len(bodies) the same events go again: duplicates, still read and applied.
		maxSeq = max(maxSeq, seq)
		time.Sleep(perBatch - time.Since(t0))
	}
	start := time.Now()
	if err := r.Start(); err != nil {
		return err
	}
	if err := waitSeq(ctx, r.URL(), maxSeq, 10*time.Minute); err != nil {
		return err
	}
	took := time.Since(start)
	record("replica catch-up after being down", fmt.Sprintf("%.1f", took.Seconds()), "s",
		fmt.Sprintf("down %s while %d events/s went to the other replica; restart included", *down, *downRate))
	record("replica catch-up rate", fmt.Sprintf("%.0f", float64(*downRate)*down.Seconds()/took.Seconds()), "events/s", "events applied per second of catch-up")
	return nil
}

// failover loads both replicas with small requests, retried until acknowledged as clients must,
// while the stream's leader is SIGKILLed and restarted; it reports the longest acknowledgement
// (the write outage a client sees) and checks that both replicas count every acknowledged event
// once: the fault test's summary, as figures.
func (c *benchCluster) failover(ctx context.Context) error {
	const perRequest = 100
	at := time.Now().UTC()
	var acked, retries atomic.Int64
	var worst atomic.Int64
	var maxSeq atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			for req := 0; ; req++ {
				select {
				case <-stop:
					return
				default:
				}
				var b bytes.Buffer
				for j := range perRequest {
					fmt.Fprintf(&b, `{"specversion":"1.0","id":"f%d-%d-%d","source":"bench-failover","type":"feature.used","time":%q,"data":{"tenant":"bench-failover","user":"u","feature":"f"}}`+"\n",
						w, req, j, at.Format(time.RFC3339Nano))
				}
				t0 := time.Now()
				for attempt := 0; ; attempt++ {
					seq, err := post(client, c.replicas[(w+req+attempt)%len(c.replicas)].URL(), b.Bytes())
					if err == nil {
						for cur := maxSeq.Load(); seq > cur && !maxSeq.CompareAndSwap(cur, seq); cur = maxSeq.Load() {
						}
						break
					}
					retries.Add(1)
					if time.Since(t0) > 2*time.Minute {
						errs <- fmt.Errorf("not acknowledged within 2 minutes: %w", err)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				d := int64(time.Since(t0))
				for cur := worst.Load(); d > cur && !worst.CompareAndSwap(cur, d); cur = worst.Load() {
				}
				acked.Add(perRequest)
			}
		}()
	}
	time.Sleep(3 * time.Second)
	leader, err := c.nats.StreamLeader(ctx, "USAGEMETER")
	if err != nil {
		close(stop)
		wg.Wait()
		return err
	}
	c.nats.Server(leader).Kill()
	time.Sleep(3 * time.Second)
	if err := c.nats.Server(leader).Start(); err != nil {
		close(stop)
		wg.Wait()
		return err
	}
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	for _, r := range c.replicas {
		if err := waitSeq(ctx, r.URL(), maxSeq.Load(), time.Minute); err != nil {
			return err
		}
		got, err := usageCount(ctx, r.URL(), "bench-failover", "feature_uses", at)
		if err != nil {
			return err
		}
		if got != acked.Load() {
			return fmt.Errorf("%s counts %d events of the failover run, %d were acknowledged", r.URL(), got, acked.Load())
		}
	}
	record("failover: longest ack (stream leader SIGKILLed)", ms(time.Duration(worst.Load())), "ms", "retries included: the write outage a client sees")
	record("failover: events acknowledged, counted once on both", strconv.FormatInt(acked.Load(), 10), "events", fmt.Sprintf("%d attempts retried; exact on both replicas", retries.Load()))
	return nil
}

func usageCount(ctx context.Context, url, tenant, meter string, at time.Time) (int64, error) {
	from := at.Add(-time.Hour).Truncate(time.Hour).Format(time.RFC3339)
	to := at.Add(2 * time.Hour).Truncate(time.Hour).Format(time.RFC3339)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/usage?tenant=%s&meter=%s&from=%s&to=%s", url, tenant, meter, from, to), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var u struct {
		Rows []struct {
			Value int64 `json:"value"`
		} `json:"rows"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s/v1/usage: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
		return 0, err
	}
	var n int64
	for _, r := range u.Rows {
		n += r.Value
	}
	return n, nil
}

// publishLatency publishes messages of about one event and of about 1,000 events, one at a time,
// to a stream configured like the ledger's (R3, file storage), and returns each size's ack
// latency p50 and p99.
func publishLatency(ctx context.Context, urls string) (small, large [2]time.Duration, err error) {
	nc, err := nats.Connect(urls)
	if err != nil {
		return small, large, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return small, large, err
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err = js.CreateOrUpdateStream(cctx, jetstream.StreamConfig{Name: "BENCHSYNC", Subjects: []string{"benchsync"}, Storage: jetstream.FileStorage, Replicas: 3})
		cancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return small, large, err
		case <-time.After(200 * time.Millisecond):
		}
	}
	measure := func(size int) ([2]time.Duration, error) {
		const n = 300
		payload := bytes.Repeat([]byte("x"), size)
		lat := make([]time.Duration, n)
		for i := range lat {
			t0 := time.Now()
			if _, err := js.Publish(ctx, "benchsync", payload); err != nil {
				return [2]time.Duration{}, err
			}
			lat[i] = time.Since(t0)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return [2]time.Duration{lat[n/2], lat[n*99/100]}, nil
	}
	if small, err = measure(70); err != nil {
		return small, large, err
	}
	large, err = measure(70000)
	return small, large, err
}

func waitSeq(ctx context.Context, url string, seq uint64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/-/ready", nil)
		req.Header.Set("X-Usagemeter-Min-Seq", strconv.FormatUint(seq, 10))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s did not reach log position %d within %s", url, seq, limit)
}

// load sends every body from *clients clients, spreading requests over the URLs in turn.
func load(urls []string, bodies [][]byte) (ingest, error) {
	lat := make([]time.Duration, len(bodies))
	var next atomic.Int64
	var maxSeq atomic.Uint64
	var mu sync.Mutex
	var failed error
	var wg sync.WaitGroup
	start := time.Now()
	for range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{}
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) {
					return
				}
				t0 := time.Now()
				seq, err := post(client, urls[i%len(urls)], bodies[i])
				lat[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
				for cur := maxSeq.Load(); seq > cur && !maxSeq.CompareAndSwap(cur, seq); cur = maxSeq.Load() {
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed != nil {
		return ingest{}, failed
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return ingest{rate: float64(len(bodies)**batchSize) / elapsed.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], maxSeq: maxSeq.Load()}, nil
}

func post(client *http.Client, url string, body []byte) (uint64, error) {
	resp, err := client.Post(url+"/v1/events", "application/x-ndjson", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("POST %s/v1/events: %s: %s", url, resp.Status, b)
	}
	var acc struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(b, &acc); err != nil {
		return 0, fmt.Errorf("POST %s/v1/events: %w", url, err)
	}
	return acc.Seq, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagemeter/usagemeter/exporter/api"
	"github.com/usagemeter/usagemeter/exporter/cluster"
	"github.com/usagemeter/usagemeter/exporter/cluster/clustertest"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// natsServer finds the pinned nats-server in bin/tools.
func natsServer(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("cluster fault test skipped in -short mode")
	}
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "bin", "tools", "nats-server")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("cluster tests need %s: run `make tools` (make test does it first)", path)
	}
	return path
}

type testCluster struct {
	t        *testing.T
	dir      string
	nats     *clustertest.NATS
	replicas []*clustertest.Replica
}

func startCluster(t *testing.T, ctx context.Context, replicas int, args ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, dir: t.TempDir()}
	var err error
	c.nats, err = clustertest.StartNATS(ctx, clustertest.NATSOptions{Binary: natsServer(t), Dir: c.dir, Nodes: 3, SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.nats.Stop)
	for i := range replicas {
		r, err := clustertest.NewReplica(clustertest.ReplicaOptions{Binary: os.Args[0], Env: []string{"USAGEMETER_TEST_ROLE=usage-exporter"},
			Name: fmt.Sprintf("replica-%d", i+1), Dir: c.dir, NATS: c.nats.URLs(), Args: args})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Stop(10 * time.Second) })
		c.replicas = append(c.replicas, r)
	}
	for _, r := range c.replicas {
		if err := r.WaitReady(ctx); err != nil {
			c.dumpLogs()
			t.Fatal(err)
		}
	}
	return c
}

func (c *testCluster) dumpLogs() {
	for _, r := range c.replicas {
		b, _ := os.ReadFile(r.Log)
		c.t.Logf("=== %s log (tail)\n%s", r.Name, tail(b, 3000))
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// usagectl runs `usagectl ledger <args>` on a stopped replica's store.
func runUsagectl(t *testing.T, r *clustertest.Replica, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"ledger"}, append(args, "--storage.path="+r.Storage)...)...)
	cmd.Env = append(os.Environ(), "USAGEMETER_TEST_ROLE=usagectl")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("usagectl ledger %s on %s: %v\n%s", strings.Join(args, " "), r.Name, err, out)
	}
	return string(out)
}

// load sends ai.tokens events, split across the replicas, and retries every request (the same
// body, on the other replica) until it is acknowledged: what the contract asks of clients.
type load struct {
	replicas []*clustertest.Replica
	client   *http.Client
	start    time.Time

	mu       sync.Mutex
	want     map[string]int64  // tenant → acknowledged tokens
	seqOf    map[string]uint64 // tenant → log position of its last acknowledged write
	events   int               // distinct events acknowledged
	maxSeq   uint64
	dupSent  int
	failures atomic.Int64 // attempts answered with an error (then retried)
	errs     []string
}

const perRequest = 10

func (l *load) body(worker, req int) ([]byte, string, int64) {
	tenant := fmt.Sprintf("tenant-%d", (worker+req)%4)
	var b bytes.Buffer
	b.WriteByte('[')
	var tokens int64
	for j := range perRequest {
		if j > 0 {
			b.WriteByte(',')
		}
		in, out := int64(req%97+j), int64(1+j)
		tokens += in + out
		fmt.Fprintf(&b, `{"specversion":"1.0","id":"w%d-r%d-e%d","source":"faulttest","type":"ai.tokens","time":%q,"data":{"tenant":%q,"user":"u%d","feature":"chat","model":"m1","input_tokens":%d,"output_tokens":%d}}`,
			worker, req, j, l.start.Format(time.RFC3339Nano), tenant, j%3, in, out)
	}
	b.WriteByte(']')
	return b.Bytes(), tenant, tokens
}

// send posts body until a replica acknowledges it, starting with replica first.
func (l *load) send(ctx context.Context, first int, body []byte) (api.Accepted, error) {
	for attempt := 0; ; attempt++ {
		r := l.replicas[(first+attempt)%len(l.replicas)]
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.URL()+"/v1/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := l.client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				var acc api.Accepted
				if err := json.Unmarshal(b, &acc); err != nil {
					return acc, fmt.Errorf("202 with a body that is not an Accepted: %s", b)
				}
				if h := resp.Header.Get(api.HeaderSeq); h != strconv.FormatUint(acc.Seq, 10) {
					return acc, fmt.Errorf("202 with %s %q, body seq %d", api.HeaderSeq, h, acc.Seq)
				}
				return acc, nil
			}
			if resp.StatusCode < 500 {
				return api.Accepted{}, fmt.Errorf("%s answered %d: %s", r.Name, resp.StatusCode, b)
			}
		}
		l.failures.Add(1)
		select {
		case <-ctx.Done():
			return api.Accepted{}, fmt.Errorf("not acknowledged before the deadline: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l *load) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, fmt.Sprintf(format, args...))
}

func (l *load) worker(ctx, stop context.Context, w int) {
	for req := 0; stop.Err() == nil; req++ {
		body, tenant, tokens := l.body(w, req)
		acc, err := l.send(ctx, w+req, body)
		if err != nil {
			l.fail("worker %d request %d: %v", w, req, err)
			return
		}
		// A retried request may have been stored by an attempt that failed to answer: then its
		// events are duplicates now. Either way each counts once.
		if !acc.Unapplied && acc.Accepted+acc.Duplicates != perRequest {
			l.fail("request %d/%d: accepted %d + duplicates %d, want %d in all", w, req, acc.Accepted, acc.Duplicates, perRequest)
		}
		l.mu.Lock()
		l.want[tenant] += tokens
		l.events += perRequest
		l.maxSeq = max(l.maxSeq, acc.Seq)
		if l.seqOf == nil {
			l.seqOf = map[string]uint64{}
		}
		l.seqOf[tenant] = max(l.seqOf[tenant], acc.Seq)
		l.mu.Unlock()
		if req%4 != 0 {
			continue
		}
		// The same request again through the other replica: JetStream's message id drops it.
		// Half of it alone: a different message, that only the ledger's dedupe recognises.
		again := [][]byte{body, halfOf(body)}
		for i, b := range again {
			acc, err := l.send(ctx, w+req+1, b)
			if err != nil {
				l.fail("duplicate of %d/%d: %v", w, req, err)
				return
			}
			if !acc.Unapplied && acc.Accepted != 0 {
				l.fail("duplicate %d of request %d/%d through the other replica: %d events accepted again", i, w, req, acc.Accepted)
			}
			l.mu.Lock()
			l.dupSent++
			l.maxSeq = max(l.maxSeq, acc.Seq)
			l.mu.Unlock()
		}
	}
}

// halfOf keeps the first half of the events of a JSON array body.
func halfOf(body []byte) []byte {
	var evs []json.RawMessage
	_ = json.Unmarshal(body, &evs)
	b, _ := json.Marshal(evs[:len(evs)/2])
	return b
}

// usage sums a tenant's ai_tokens on a replica, reading at least log position seq.
func usage(ctx context.Context, r *clustertest.Replica, tenant string, seq uint64, at time.Time) (int64, uint64, error) {
	from := at.Add(-2 * time.Hour).Truncate(time.Hour)
	to := at.Add(2 * time.Hour).Truncate(time.Hour)
	url := fmt.Sprintf("%s/v1/usage?tenant=%s&meter=ai_tokens&from=%s&to=%s", r.URL(), tenant, from.Format(time.RFC3339), to.Format(time.RFC3339))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set(cluster.HeaderMinSeq, strconv.FormatUint(seq, 10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("%s: %d %s", r.Name, resp.StatusCode, b)
	}
	applied, err := strconv.ParseUint(resp.Header.Get(cluster.HeaderAppliedSeq), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: no %s header: %v", r.Name, cluster.HeaderAppliedSeq, err)
	}
	var u api.UsageResponse
	if err := json.Unmarshal(b, &u); err != nil {
		return 0, 0, err
	}
	var sum int64
	for _, row := range u.Rows {
		sum += row.Value
	}
	return sum, applied, nil
}

func (l *load) checkTotals(t *testing.T, ctx context.Context, label string) {
	t.Helper()
	for _, r := range l.replicas {
		for tenant, want := range l.want {
			got, applied, err := usage(ctx, r, tenant, l.maxSeq, l.start)
			if err != nil {
				t.Fatalf("%s: %v", label, err)
			}
			if applied < l.maxSeq {
				t.Errorf("%s: %s answered at log position %d, asked for at least %d", label, r.Name, applied, l.maxSeq)
			}
			if got != want {
				t.Errorf("%s: %s counts %d tokens for %s, %d were acknowledged", label, r.Name, got, tenant, want)
			}
		}
	}
}

// TestFaults runs concurrent load split across two replicas while a NATS follower, a replica and
// the stream's leader are SIGKILLed and restarted, then a whole-cluster cold restart: every
// acknowledged event is counted exactly once on every replica, and the replicas' ledgers are
// identical.
func TestFaults(t *testing.T) {
	t.Parallel() // each runs its own NATS cluster and replicas on free ports
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, 2)
	defer func() {
		if t.Failed() {
			c.dumpLogs()
		}
	}()
	l := &load{replicas: c.replicas, client: &http.Client{Timeout: 20 * time.Second}, want: map[string]int64{},
		start: time.Now().UTC().Truncate(time.Millisecond)}

	stop, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.worker(ctx, stop, w)
		}()
	}
	pause := func() { time.Sleep(1500 * time.Millisecond) }
	pause()

	leader, err := c.nats.StreamLeader(ctx, "USAGEMETER")
	if err != nil {
		t.Fatal(err)
	}
	var follower *clustertest.NATSServer
	for _, s := range c.nats.Servers {
		if s.ServerName != leader {
			follower = s
		}
	}
	t.Logf("SIGKILL NATS follower %s", follower.ServerName)
	follower.Kill()
	pause()
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	pause()

	t.Logf("SIGKILL %s", c.replicas[1].Name)
	c.replicas[1].Kill()
	pause()
	if err := c.replicas[1].Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.replicas[1].WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	pause()

	leader, err = c.nats.StreamLeader(ctx, "USAGEMETER")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILL the stream leader %s", leader)
	c.nats.Server(leader).Kill()
	pause()
	if err := c.nats.Server(leader).Start(); err != nil {
		t.Fatal(err)
	}
	pause()
	stopLoad()
	wg.Wait()
	if len(l.errs) > 0 {
		t.Fatalf("load: %d errors, first: %s", len(l.errs), l.errs[0])
	}
	t.Logf("acknowledged %d events in %d requests, %d duplicate requests, %d attempts retried, log position %d",
		l.events, l.events/perRequest, l.dupSent, l.failures.Load(), l.maxSeq)
	if l.events == 0 {
		t.Fatal("no event was acknowledged")
	}
	l.checkTotals(t, ctx, "after the faults")

	// Offline: both ledgers verify, and they are identical.
	for _, r := range c.replicas {
		r.Stop(30 * time.Second)
	}
	digests := make([]ledger.Digest, len(c.replicas))
	for i, r := range c.replicas {
		if out := runUsagectl(t, r, "verify"); !strings.Contains(out, "ledger OK") {
			t.Errorf("%s: verify: %s", r.Name, out)
		}
		if err := json.Unmarshal([]byte(runUsagectl(t, r, "digest", "--json")), &digests[i]); err != nil {
			t.Fatal(err)
		}
		if digests[i].Events != l.events {
			t.Errorf("%s holds %d raw events, %d distinct events were acknowledged", r.Name, digests[i].Events, l.events)
		}
	}
	if digests[0].Ledger != digests[1].Ledger {
		t.Errorf("the replicas' ledgers differ:\n%+v\n%+v", digests[0], digests[1])
	}
	if digests[0].Applied["USAGEMETER"] != digests[1].Applied["USAGEMETER"] {
		t.Errorf("the replicas applied different log positions: %v, %v", digests[0].Applied, digests[1].Applied)
	}

	// A whole-cluster cold restart: more load, then every process SIGKILLed at once.
	for _, r := range c.replicas {
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		if err := r.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	stop, stopLoad = context.WithCancel(ctx)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.worker(ctx, stop, 10+w)
		}()
	}
	pause()
	for _, s := range c.nats.Servers {
		s.Kill()
	}
	for _, r := range c.replicas {
		r.Kill()
	}
	stopLoad()
	// Requests cut off by the power cut are retried until acknowledged once the cluster is back.
	for _, s := range c.nats.Servers {
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range c.replicas {
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range c.replicas {
		if err := r.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if len(l.errs) > 0 {
		t.Fatalf("load: %d errors, first: %s", len(l.errs), l.errs[0])
	}
	t.Logf("after the cold restart: %d events acknowledged in all, log position %d", l.events, l.maxSeq)
	l.checkTotals(t, ctx, "after the cold restart")
}

// A replica that needs log messages the stream no longer retains says so and refuses to serve,
// instead of applying what follows and diverging.
func TestBehindRetention(t *testing.T) {
	t.Parallel() // each runs its own NATS cluster and replicas on free ports
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, 1, "--cluster.max-age=1s")
	defer func() {
		if t.Failed() {
			c.dumpLogs()
		}
	}()
	l := &load{replicas: c.replicas, client: &http.Client{Timeout: 20 * time.Second}, want: map[string]int64{}, start: time.Now().UTC()}
	for req := range 3 {
		body, _, _ := l.body(0, req)
		if _, err := l.send(ctx, 0, body); err != nil {
			t.Fatal(err)
		}
	}
	// Billing commands are not replicated yet: refused rather than run on one replica only.
	for _, path := range []string{"/v1/invoices/run", "/v1/tenants/tenant-0/plan", "/v1/payments"} {
		resp, err := http.Post(c.replicas[0].URL()+path, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotImplemented {
			t.Errorf("POST %s in cluster mode: %d, want 501", path, resp.StatusCode)
		}
	}
	// A request larger than one log message may be is refused whole, with 413, not retried.
	var big bytes.Buffer
	pad := strings.Repeat("x", 2000)
	for i := range 5000 {
		fmt.Fprintf(&big, `{"specversion":"1.0","id":"big-%d","source":"faulttest","type":"feature.used","pad":%q,"data":{"tenant":"tenant-0","user":"u","feature":"f"}}`+"\n", i, pad)
	}
	bigResp, err := http.Post(c.replicas[0].URL()+"/v1/events", "application/x-ndjson", &big)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(bigResp.Body)
	bigResp.Body.Close()
	if bigResp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "max_payload") {
		t.Errorf("a request of %d events over the log's message size: %d %s, want 413 naming max_payload", 5000, bigResp.StatusCode, b)
	}
	// Wait until retention removed the messages (the stream starts past them).
	nc, err := nats.Connect(c.nats.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if st, err := js.Stream(ctx, "USAGEMETER"); err == nil {
			if info, err := st.Info(ctx); err == nil && info.State.Msgs == 0 && info.State.FirstSeq > 1 {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("the stream's retention never removed the messages")
		case <-time.After(200 * time.Millisecond):
		}
	}

	late, err := clustertest.NewReplica(clustertest.ReplicaOptions{Binary: os.Args[0], Env: []string{"USAGEMETER_TEST_ROLE=usage-exporter"},
		Name: "late", Dir: c.dir, NATS: c.nats.URLs(), Args: []string{"--cluster.max-age=1s"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := late.Start(); err != nil {
		t.Fatal(err)
	}
	c.replicas = append(c.replicas, late)
	t.Cleanup(func() { late.Stop(10 * time.Second) })
	// It serves HTTP (liveness) but is not ready, and says why in its log.
	if err := clustertest.WaitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", late.Port)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		b, _ := os.ReadFile(late.Log)
		if strings.Contains(string(b), cluster.ErrBehindRetention.Error()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the late replica does not report that it is behind the retention:\n%s", tail(b, 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, err := http.Get(late.URL() + "/-/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/-/ready of a replica behind the retention: %d, want 503", resp.StatusCode)
	}
	body, _, _ := l.body(1, 0)
	resp, err = http.Post(late.URL()+"/v1/events", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("ingest on a replica behind the retention: %d, want 503", resp.StatusCode)
	}
}

// TestJoin: under load, a new replica joins from the start of the log, and another from a copy
// of a stopped replica's store (a cold backup) plus the log after it; a replica wiped while
// down starts again from nothing. All of them end with the same counts and the same ledger.
func TestJoin(t *testing.T) {
	t.Parallel() // each runs its own NATS cluster and replicas on free ports
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := startCluster(t, ctx, 2)
	defer func() {
		if t.Failed() {
			c.dumpLogs()
		}
	}()
	l := &load{replicas: c.replicas[:2], client: &http.Client{Timeout: 20 * time.Second}, want: map[string]int64{},
		start: time.Now().UTC().Truncate(time.Millisecond)}
	stop, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.worker(ctx, stop, w)
		}()
	}
	newReplica := func(name string) *clustertest.Replica {
		r, err := clustertest.NewReplica(clustertest.ReplicaOptions{Binary: os.Args[0], Env: []string{"USAGEMETER_TEST_ROLE=usage-exporter"},
			Name: name, Dir: c.dir, NATS: c.nats.URLs()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Stop(10 * time.Second) })
		c.replicas = append(c.replicas, r)
		return r
	}
	time.Sleep(1500 * time.Millisecond)

	fresh := newReplica("fresh")
	if err := fresh.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)

	// A cold backup: replica-2 stopped, its store copied, started again.
	src := c.replicas[1]
	src.Stop(30 * time.Second)
	restored := newReplica("restored")
	if out, err := exec.Command("cp", "-a", src.Storage, restored.Storage).CombinedOutput(); err != nil {
		t.Fatalf("copying the store: %v: %s", err, out)
	}
	if err := src.Start(); err != nil {
		t.Fatal(err)
	}
	if err := restored.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)

	// replica-1 wiped while down: it replays the whole log.
	wiped := c.replicas[0]
	wiped.Kill()
	if err := os.RemoveAll(wiped.Storage); err != nil {
		t.Fatal(err)
	}
	if err := wiped.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	stopLoad()
	wg.Wait()
	if len(l.errs) > 0 {
		t.Fatalf("load: %d errors, first: %s", len(l.errs), l.errs[0])
	}
	for _, r := range c.replicas {
		if err := r.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("acknowledged %d events, log position %d", l.events, l.maxSeq)
	l.replicas = c.replicas
	l.checkTotals(t, ctx, "after the joins")
	// Each replica exports the position it applied and its backlog.
	for _, r := range c.replicas {
		resp, err := http.Get(r.URL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var applied uint64
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, `usage_exporter_cluster_applied_sequence{stream="USAGEMETER"} `); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				applied = uint64(f)
			}
		}
		if applied < l.maxSeq {
			t.Errorf("%s exports applied sequence %d, it answered reads at %d", r.Name, applied, l.maxSeq)
		}
		if !strings.Contains(string(b), `usage_exporter_cluster_pending_messages{stream="USAGEMETER"}`) {
			t.Errorf("%s does not export its backlog", r.Name)
		}
	}

	for _, r := range c.replicas {
		r.Stop(30 * time.Second)
	}
	var first ledger.Digest
	for i, r := range c.replicas {
		var d ledger.Digest
		if err := json.Unmarshal([]byte(runUsagectl(t, r, "digest", "--json")), &d); err != nil {
			t.Fatal(err)
		}
		if d.Events != l.events {
			t.Errorf("%s holds %d raw events, %d distinct events were acknowledged", r.Name, d.Events, l.events)
		}
		if i == 0 {
			first = d
		} else if d.Ledger != first.Ledger {
			t.Errorf("%s's ledger differs from %s's:\n%+v\n%+v", r.Name, c.replicas[0].Name, d, first)
		}
	}
}

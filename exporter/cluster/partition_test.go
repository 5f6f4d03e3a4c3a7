package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/cluster"
	"github.com/usagemeter/usagemeter/exporter/cluster/clustertest"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// partitionOf is the exporter's tenant partition function (FNV-1a mod N), written again here so
// that the test states which replica must hold which tenant.
func partitionOf(tenant string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(tenant))
	return int(h.Sum32() % uint32(n))
}

// TestPartitions: two replicas each own one of two tenant partitions. Under load sent to both,
// each stores only its own tenants' events, none is lost or stored twice across the cluster
// (requests spanning both partitions included), tenant-scoped reads and quota checks sent to
// the other replica are forwarded to the owner, and /metrics covers the replica's own tenants.
func TestPartitions(t *testing.T) {
	t.Parallel() // each runs its own NATS cluster and replicas on free ports
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	nc, err := clustertest.StartNATS(ctx, clustertest.NATSOptions{Binary: natsServer(t), Dir: dir, Nodes: 3, SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Stop)
	c := &testCluster{t: t, dir: dir, nats: nc}
	for i := range 2 {
		r, err := clustertest.NewReplica(clustertest.ReplicaOptions{Binary: os.Args[0], Env: []string{"USAGEMETER_TEST_ROLE=usage-exporter"},
			Name: fmt.Sprintf("replica-%d", i+1), Dir: dir, NATS: nc.URLs()})
		if err != nil {
			t.Fatal(err)
		}
		c.replicas = append(c.replicas, r)
	}
	for i, r := range c.replicas {
		other := c.replicas[1-i]
		r.Args = append(r.Args, "--cluster.partitions=2", fmt.Sprintf("--cluster.owned=%d", i), fmt.Sprintf("--cluster.peer=%s=%d", other.URL(), 1-i))
		if err := r.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Stop(10 * time.Second) })
	}
	for _, r := range c.replicas {
		if err := r.WaitReady(ctx); err != nil {
			c.dumpLogs()
			t.Fatal(err)
		}
	}
	defer func() {
		if t.Failed() {
			c.dumpLogs()
		}
	}()
	owner := func(tenant string) *clustertest.Replica { return c.replicas[partitionOf(tenant, 2)] }

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
	// Requests spanning every tenant, hence both partitions: one message each.
	for i := range 20 {
		var b bytes.Buffer
		b.WriteByte('[')
		tokens := map[string]int64{}
		for j := range 8 {
			if j > 0 {
				b.WriteByte(',')
			}
			tenant := fmt.Sprintf("tenant-%d", j%4)
			tokens[tenant] += int64(j + 2)
			fmt.Fprintf(&b, `{"specversion":"1.0","id":"multi-%d-%d","source":"faulttest","type":"ai.tokens","time":%q,"data":{"tenant":%q,"user":"u","feature":"chat","model":"m1","input_tokens":%d,"output_tokens":1}}`,
				i, j, l.start.Format(time.RFC3339Nano), tenant, j+1)
		}
		b.WriteByte(']')
		acc, err := l.send(ctx, i, b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		l.mu.Lock()
		for tenant, n := range tokens {
			l.want[tenant] += n
			if l.seqOf == nil {
				l.seqOf = map[string]uint64{}
			}
			l.seqOf[tenant] = max(l.seqOf[tenant], acc.Seq)
		}
		l.events += 8
		l.mu.Unlock()
	}
	time.Sleep(2 * time.Second)
	stopLoad()
	wg.Wait()
	if len(l.errs) > 0 {
		t.Fatalf("load: %d errors, first: %s", len(l.errs), l.errs[0])
	}
	// Every replica answers for every tenant, the owner directly, the other by forwarding, at
	// least at the position of the tenant's last write (read your writes).
	for tenant, want := range l.want {
		for _, r := range c.replicas {
			got, _, err := usage(ctx, r, tenant, l.seqOf[tenant], l.start)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s (owner %s) counts %d tokens for %s, %d were acknowledged", r.Name, owner(tenant).Name, got, tenant, want)
			}
		}
	}

	// A forwarded request is not forwarded again.
	for tenant := range l.want {
		other := c.replicas[1-partitionOf(tenant, 2)]
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, other.URL()+"/v1/usage?meter=ai_tokens&tenant="+tenant, nil)
		req.Header.Set(cluster.HeaderForwarded, "test")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("a forwarded request for %s at %s, which does not own it: %d, want 421", tenant, other.Name, resp.StatusCode)
		}
		// Quota checks are answered by the owner.
		resp, err = http.Post(other.URL()+"/v1/quota/check", "application/json",
			strings.NewReader(fmt.Sprintf(`{"tenant":%q,"meter":"ai_tokens","amount":1}`, tenant)))
		if err != nil {
			t.Fatal(err)
		}
		var qc struct{ Used int64 }
		_ = json.NewDecoder(resp.Body).Decode(&qc)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || qc.Used != l.want[tenant] {
			t.Errorf("quota check for %s through %s: %d, used %d; want 200, used %d", tenant, other.Name, resp.StatusCode, qc.Used, l.want[tenant])
		}
	}
	// /metrics covers the replica's own tenants only.
	for i, r := range c.replicas {
		resp, err := http.Get(r.URL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for tenant := range l.want {
			has := strings.Contains(string(b), `usage_ai_tokens_total{direction="input",feature="chat",model="m1",tenant="`+tenant+`"}`)
			if own := partitionOf(tenant, 2) == i; has != own {
				t.Errorf("%s /metrics has %s: %v, owns it: %v", r.Name, tenant, has, own)
			}
		}
	}

	// Across the cluster every acknowledged event is stored exactly once.
	for _, r := range c.replicas {
		r.Stop(30 * time.Second)
	}
	total := 0
	for _, r := range c.replicas {
		var d ledger.Digest
		if err := json.Unmarshal([]byte(runUsagectl(t, r, "digest", "--json")), &d); err != nil {
			t.Fatal(err)
		}
		if d.Events == 0 {
			t.Errorf("%s holds no event", r.Name)
		}
		total += d.Events
		if out := runUsagectl(t, r, "verify"); !strings.Contains(out, "ledger OK") {
			t.Errorf("%s: verify: %s", r.Name, out)
		}
	}
	if total != l.events {
		t.Errorf("the replicas hold %d raw events together, %d distinct events were acknowledged", total, l.events)
	}
}

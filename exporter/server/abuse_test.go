package server_test

// Fault tests of slow and abusive clients, against the real binary: bodies sent a byte a
// second, idle keep-alive connections past the connection limit, and floods of oversized
// requests without credentials. Each runs healthy clients alongside and checks that every
// event they had acknowledged is counted exactly once. Deadlines in the test config are small;
// every wait is bounded (30 s) and nothing asserts speed.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/auth"
	"github.com/usagemeter/usagemeter/exporter/meter"
	"github.com/usagemeter/usagemeter/internal/testproc"
	"github.com/usagemeter/usagemeter/simulate"
)

// bounded is how long any "eventually" may take.
const bounded = 30 * time.Second

// abuseHTTP are small limits, so that the tests reach them quickly.
const abuseHTTP = `
http:
  read_header_timeout: 1s
  read_timeout: 2s
  write_timeout: 5s
  export_write_timeout: 10s
  idle_timeout: 2s
  max_connections: 16
  max_requests_in_flight: 64
  max_requests_in_flight_per_credential: 32
  denial_audit_rate: 1
  denial_audit_burst: 5
`

// securedExporter is the binary with a platform admin token and the abuse limits.
type securedExporter struct {
	*exporter
	addr, store, config, root string
}

func startSecured(t *testing.T) *securedExporter {
	t.Helper()
	root, hash := auth.NewAPIKey()
	dir := t.TempDir()
	s := &securedExporter{addr: testproc.FreeAddr(t), store: filepath.Join(dir, "data"), config: filepath.Join(dir, "config.yml"), root: root}
	cfg := abuseHTTP + fmt.Sprintf("auth:\n  tokens:\n    - {subject: root, hash: %q, roles: [platform_admin]}\n", hash)
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.restart(t)
	return s
}

func (s *securedExporter) restart(t *testing.T) {
	t.Helper()
	s.exporter = start(t, s.addr, s.store, "--config.file="+s.config)
}

// stop stops the exporter cleanly (SIGTERM, exit 0).
func (s *securedExporter) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, s.log)
	}
}

// get asks with the root token, retrying refusals by a limit (a closed connection, 503, 429).
func (s *securedExporter) get(t *testing.T, path string) []byte {
	t.Helper()
	status, body := s.getStatus(t, path)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	return body
}

// getStatus answers a GET's final status and body, retrying while the exporter sheds load.
func (s *securedExporter) getStatus(t *testing.T, path string) (int, []byte) {
	t.Helper()
	client := &http.Client{Timeout: bounded}
	deadline := time.Now().Add(bounded)
	for {
		req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+s.root)
		resp, err := client.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
				return resp.StatusCode, body
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: no answer within %s: %v\n%s", path, bounded, err, s.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric reads one sample of /metrics, "" labels for an unlabelled metric.
func (s *securedExporter) metric(t *testing.T, name, labels string) float64 {
	t.Helper()
	var m map[string]float64
	deadline := time.Now().Add(bounded)
	for {
		resp, err := http.Get(s.url + "/metrics")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				m = scrape(t, s.url)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics unreachable: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	v, ok := m[name+"{"+labels+"}"]
	if !ok {
		t.Fatalf("%s{%s} is not exposed", name, labels)
	}
	return v
}

// healthyLoad is clients posting batches of simulated events, each retried until
// acknowledged, as a well-behaved client does when shed by a limit.
type healthyLoad struct {
	s      *securedExporter
	totals *simulate.Totals
	now    time.Time

	mu        sync.Mutex
	acked     int
	refusals  map[string]int // how the healthy clients were shed, for the log
	hangs     []string
	wg        sync.WaitGroup
	finishErr []string
}

// runHealthy starts clients posting batches until each has sent its share.
func runHealthy(t *testing.T, s *securedExporter, clients, batches int) *healthyLoad {
	t.Helper()
	h := &healthyLoad{s: s, totals: simulate.NewTotals(meter.Defaults()), now: time.Now().UTC(), refusals: map[string]int{}}
	for c := range clients {
		g := simulate.NewGenerator(20, uint64(100+c))
		work := makeBatches(g, batches, 20, h.now, rand.New(rand.NewPCG(uint64(c), 1)))
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			// Its own connections, which the exporter may close when idle: Idempotency-Key lets
			// the transport resend a request whose connection was closed under it (the events
			// are idempotent anyway).
			client := &http.Client{Timeout: bounded, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for i, b := range work {
				if err := h.post(client, b, fmt.Sprintf("c%d-b%d", c, i)); err != nil {
					h.mu.Lock()
					h.finishErr = append(h.finishErr, err.Error())
					h.mu.Unlock()
					return
				}
			}
		}()
	}
	return h
}

func (h *healthyLoad) post(client *http.Client, b batch, key string) error {
	deadline := time.Now().Add(bounded)
	for {
		req, _ := http.NewRequest(http.MethodPost, h.s.url+"/v1/events", bytes.NewReader(b.body))
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("Authorization", "Bearer "+h.s.root)
		req.Header.Set("Idempotency-Key", key)
		resp, err := client.Do(req)
		reason := ""
		switch {
		case err != nil:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				h.mu.Lock()
				h.hangs = append(h.hangs, err.Error())
				h.mu.Unlock()
			}
			reason = "connection"
		default:
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusAccepted:
				var a ack
				if err := json.Unmarshal(body, &a); err != nil || a.Accepted+a.Duplicates != len(b.events) {
					return fmt.Errorf("ack %s: %+v %v", body, a, err)
				}
				h.mu.Lock()
				defer h.mu.Unlock()
				for _, ev := range b.events {
					if err := h.totals.Add(ev); err != nil {
						return err
					}
				}
				h.acked++
				return nil
			case http.StatusServiceUnavailable, http.StatusTooManyRequests:
				if resp.Header.Get("Retry-After") == "" {
					return fmt.Errorf("%d without Retry-After", resp.StatusCode)
				}
				reason = strconv.Itoa(resp.StatusCode)
			default:
				return fmt.Errorf("POST /v1/events: %d %s", resp.StatusCode, body)
			}
		}
		h.mu.Lock()
		h.refusals[reason]++
		h.mu.Unlock()
		if time.Now().After(deadline) {
			return fmt.Errorf("batch %s not acknowledged within %s (last: %s %v)", key, bounded, reason, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finish waits for the clients, then checks that none hung and that every acknowledged event
// is counted exactly once by /v1/usage.
func (h *healthyLoad) finish(t *testing.T, wantBatches int) {
	t.Helper()
	h.wg.Wait()
	if len(h.finishErr) > 0 {
		t.Fatalf("healthy clients failed: %v", h.finishErr)
	}
	if len(h.hangs) > 0 {
		t.Errorf("healthy requests hung until the client's %s timeout: %v", bounded, h.hangs)
	}
	if h.acked != wantBatches {
		t.Fatalf("%d batches acknowledged, want %d", h.acked, wantBatches)
	}
	t.Logf("healthy clients: %d batches (%d events) acknowledged; shed on the way: %v", h.acked, h.totals.Events(), h.refusals)
	from := h.now.Add(-40 * 24 * time.Hour).Truncate(time.Hour).Format(time.RFC3339)
	to := h.now.Truncate(time.Hour).Add(2 * time.Hour).Format(time.RFC3339)
	checked := 0
	for _, tenant := range h.totals.Tenants() {
		for _, d := range meter.Defaults() {
			if d.Aggregation == meter.UniqueCount {
				continue
			}
			var body struct{ Rows []struct{ Value int64 } }
			if err := json.Unmarshal(h.s.get(t, fmt.Sprintf("/v1/usage?tenant=%s&meter=%s&from=%s&to=%s", tenant, d.Name, url2(from), url2(to))), &body); err != nil {
				t.Fatal(err)
			}
			var got int64
			for _, r := range body.Rows {
				got += r.Value
			}
			if want := h.totals.Value(tenant, d.Name); got != want {
				t.Errorf("/v1/usage %s %s = %d, want %d", tenant, d.Name, got, want)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("nothing was checked")
	}
}

// rawConn is a client speaking HTTP/1.1 by hand.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, r: bufio.NewReader(c)}
}

// closedByServer waits, within bounded, for the server to close the connection; any answer
// read on the way is returned.
func (c *rawConn) closedByServer() (answer []byte, closed bool) {
	c.SetReadDeadline(time.Now().Add(bounded))
	b, err := io.ReadAll(c.r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return b, false
	}
	return b, true // EOF or reset: closed
}

// TestSlowBodiesAreCutOff: bodies sent a byte a second are cut off at http.read_timeout with
// 408 and the connection closed; nothing of them is stored; healthy clients keep being served.
func TestSlowBodiesAreCutOff(t *testing.T) {
	s := startSecured(t)
	load := runHealthy(t, s, 3, 15)

	slowEvent := `{"specversion":"1.0","id":"slow-1","source":"slowpoke","type":"feature.used","data":{"tenant":"slowpoke","user":"u1","feature":"chat"}}`
	type slowResult struct {
		answer []byte
		closed bool
		sent   int
	}
	send := func(auth string) slowResult {
		c := dialRaw(t, s.addr)
		fmt.Fprintf(c, "POST /v1/events HTTP/1.1\r\nHost: test\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", auth, len(slowEvent))
		stop := make(chan struct{})
		sent := make(chan int, 1)
		go func() {
			n := 0
			defer func() { sent <- n }()
			for ; n < len(slowEvent); n++ {
				if _, err := c.Write([]byte{slowEvent[n]}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
			}
		}()
		answer, closed := c.closedByServer()
		close(stop)
		return slowResult{answer, closed, <-sent}
	}
	var wg sync.WaitGroup
	results := make([]slowResult, 6)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			header := "Authorization: Bearer " + s.root + "\r\n"
			if i%3 == 2 {
				header = "" // no credentials: refused before the body is read, then cut off too
			}
			results[i] = send(header)
		}()
	}
	wg.Wait()
	authenticated := 0
	for i, r := range results {
		if !r.closed {
			t.Errorf("slow client %d: connection still open after %s", i, bounded)
			continue
		}
		if r.sent >= len(slowEvent) {
			t.Errorf("slow client %d sent its whole body (%d bytes) before being cut off", i, r.sent)
		}
		want := "HTTP/1.1 408 "
		if i%3 == 2 {
			want = "HTTP/1.1 401 "
		} else {
			authenticated++
		}
		if !bytes.HasPrefix(r.answer, []byte(want)) {
			t.Errorf("slow client %d got %q, want %s", i, r.answer, want)
		}
		if want == "HTTP/1.1 408 " && !bytes.Contains(r.answer, []byte("http.read_timeout")) {
			t.Errorf("slow client %d: the answer does not say which limit: %q", i, r.answer)
		}
	}
	load.finish(t, 3*15)

	// Nothing of the slow bodies was stored: the tenant they name was never seen, so a read of
	// it answers the unknown-tenant problem, which only a tenant without one stored event gets.
	for _, d := range meter.Defaults() {
		if status, body := s.getStatus(t, "/v1/usage?tenant=slowpoke&meter="+d.Name); status != http.StatusNotFound || !bytes.Contains(body, []byte("unknown-tenant")) {
			t.Errorf("slowpoke %s: %d %s, want the unknown-tenant problem (nothing stored)", d.Name, status, body)
		}
	}
	if got := s.metric(t, "usage_exporter_events_rejected_total", "reason=body_timeout"); got != float64(authenticated) {
		t.Errorf("usage_exporter_events_rejected_total{reason=body_timeout} = %v, want %d", got, authenticated)
	}
	s.stop(t)
	if !strings.Contains(s.log.String(), "request body not received in time") {
		t.Errorf("no log line tells the operator about the slow bodies:\n%s", s.log)
	}
}

// TestIdleConnectionsPastTheLimit: far more idle keep-alive connections than
// http.max_connections cannot lock healthy clients out: the oldest idle connections give way
// to new ones, the rest are closed at http.idle_timeout, and healthy clients are served.
// Connections that send nothing are refused past the limit and closed at
// http.read_header_timeout; healthy clients shed meanwhile retry and are served.
func TestIdleConnectionsPastTheLimit(t *testing.T) {
	s := startSecured(t)
	load := runHealthy(t, s, 3, 15)

	// Silent connections (nothing sent) cannot be reclaimed: past the limit new connections are
	// closed at once rather than queued, and the silent ones at http.read_header_timeout. The
	// healthy clients, just started, are shed meanwhile and retry.
	var silent []*rawConn
	for range 40 {
		silent = append(silent, dialRaw(t, s.addr))
	}

	const idle = 100 // the limit is 16
	var conns []*rawConn
	for i := range idle {
		deadline := time.Now().Add(bounded)
		for {
			c := dialRaw(t, s.addr)
			c.SetDeadline(time.Now().Add(bounded))
			io.WriteString(c, "GET /-/healthy HTTP/1.1\r\nHost: test\r\n\r\n")
			resp, err := http.ReadResponse(c.r, nil)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				c.SetDeadline(time.Time{})
				conns = append(conns, c)
				break
			}
			c.Close() // refused while the silent connections hold every place
			if time.Now().After(deadline) {
				t.Fatalf("keep-alive connection %d never served: %v", i, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i, c := range silent {
		if _, closed := c.closedByServer(); !closed {
			t.Fatalf("silent connection %d still open after %s", i, bounded)
		}
	}
	if open := s.metric(t, "usage_exporter_http_connections_open", ""); open > 16 {
		t.Errorf("%v connections open, past the limit of 16", open)
	}
	// Every idle connection is closed by the server: reclaimed for a newer one, or at the
	// idle timeout.
	for i, c := range conns {
		if _, closed := c.closedByServer(); !closed {
			t.Fatalf("idle connection %d still open after %s", i, bounded)
		}
	}
	load.finish(t, 3*15)
	if got := s.metric(t, "usage_exporter_http_limit_rejections_total", "limit=connections"); got == 0 {
		t.Error("40 silent connections past a limit of 16, but no connection refused")
	}
	if got := s.metric(t, "usage_exporter_http_connections_reclaimed_total", ""); got < idle-16 {
		t.Errorf("usage_exporter_http_connections_reclaimed_total = %v, want at least %d", got, idle-16)
	}
	if got := s.metric(t, "usage_exporter_http_limit", "limit=connections"); got != 16 {
		t.Errorf("usage_exporter_http_limit{limit=connections} = %v", got)
	}
	s.stop(t)
	if !strings.Contains(s.log.String(), "limit reached") || !strings.Contains(s.log.String(), "limit=connections") {
		t.Errorf("no log line tells the operator that connections were refused:\n%s", s.log)
	}
}

// flood sends oversized requests without valid credentials from workers goroutines, n each;
// it returns the refusals (401, 403) answered and the bytes sent.
func flood(t *testing.T, s *securedExporter, workers, n int) (refused, sent int, statuses map[int]int) {
	t.Helper()
	big := func(c byte, size int) string { return strings.Repeat(string(c), size) }
	kinds := []func(i int) (method, target string, header http.Header, body string){
		func(i int) (string, string, http.Header, string) { // huge tenant in the path
			return "GET", "/v1/tenants/" + big('t', 20<<10) + strconv.Itoa(i) + "/quotas", nil, ""
		},
		func(i int) (string, string, http.Header, string) { // huge query string
			return "GET", "/v1/usage?meter=ai_tokens&tenant=" + big('q', 20<<10) + "&x=" + big('y', 8<<10), nil, ""
		},
		func(i int) (string, string, http.Header, string) { // huge bad credential and user agent
			return "GET", "/v1/audit", http.Header{"Authorization": {"Bearer " + big('k', 8<<10)}, "User-Agent": {big('u', 16<<10)}}, ""
		},
		func(i int) (string, string, http.Header, string) { // bad API key, body never read
			return "POST", "/v1/events?tenant=" + big('e', 16<<10), http.Header{"X-Api-Key": {"um_" + big('z', 4<<10)}, "Content-Type": {"application/json"}}, big('b', 64<<10)
		},
		func(i int) (string, string, http.Header, string) { // headers past http.max_header_bytes: 431
			return "GET", "/v1/meters", http.Header{"X-Junk": {big('j', 40<<10)}}, ""
		},
	}
	statuses = map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: bounded, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for i := range n {
				method, target, header, body := kinds[(w+i)%len(kinds)](i)
				req, _ := http.NewRequest(method, s.url+target, strings.NewReader(body))
				for k, v := range header {
					req.Header[k] = v
				}
				size := len(target) + len(body)
				for _, v := range header {
					size += len(v[0])
				}
				status := 0
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				mu.Lock()
				statuses[status]++
				sent += size
				if status == http.StatusUnauthorized || status == http.StatusForbidden {
					refused++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return refused, sent, statuses
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// auditedRefusals counts the audit entries of requests without a valid credential.
func (s *securedExporter) auditedRefusals(t *testing.T) (n, longest int) {
	t.Helper()
	after := uint64(0)
	for {
		var page struct {
			Entries []struct {
				Seq                uint64
				Kind, Path, Tenant string
				Reason             string
			}
		}
		if err := json.Unmarshal(s.get(t, fmt.Sprintf("/v1/audit?after=%d&limit=1000", after)), &page); err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Entries {
			after = e.Seq
			if e.Kind == "none" {
				n++
				longest = max(longest, len(e.Path), len(e.Tenant), len(e.Reason))
			}
		}
		// Reading the trail is audited too: a short page is the end, not the entry of the
		// previous read.
		if len(page.Entries) < 1000 {
			return n, longest
		}
	}
}

// TestUnauthenticatedFloodIsBounded: oversized requests without credentials (huge paths,
// query strings, headers, credentials, tenants) grow the store by a small bounded amount: each
// value is cut before it is audited, and refusals past http.denial_audit_rate are counted in
// usage_exporter_audit_denials_suppressed_total instead of written. Healthy clients sending
// at the same time have every acknowledged event counted once.
func TestUnauthenticatedFloodIsBounded(t *testing.T) {
	s := startSecured(t)
	s.stop(t)
	before := dirSize(t, s.store)

	// The flood alone, between two clean stops, so that the growth is the flood's.
	s.restart(t)
	began := time.Now()
	refused, sent, statuses := flood(t, s, 8, 50)
	elapsed := time.Since(began)
	audited, longest := s.auditedRefusals(t)
	suppressed := s.metric(t, "usage_exporter_audit_denials_suppressed_total", "")
	t.Logf("flood: %d requests, %d MiB sent, statuses %v; %d refusals audited, %v counted, in %s", 8*50, sent>>20, statuses, audited, suppressed, elapsed.Round(time.Millisecond))
	if statuses[http.StatusRequestHeaderFieldsTooLarge] == 0 {
		t.Errorf("no request was refused for its headers' size: %v", statuses)
	}
	if audited+int(suppressed) != refused {
		t.Errorf("%d refusals answered, but %d audited + %v suppressed", refused, audited, suppressed)
	}
	// A token bucket of burst 5 at 1/s admits at most 5 + 1 per second elapsed.
	if limit := 5 + int(time.Since(began).Seconds()) + 1; audited > limit {
		t.Errorf("%d refusals audited, past the bucket's %d", audited, limit)
	}
	if longest > 256+64 {
		t.Errorf("an audited value of %d bytes", longest)
	}
	s.stop(t)
	grown := dirSize(t, s.store) - before
	t.Logf("store: %d bytes before, grown by %d bytes for %d bytes of junk sent", before, grown, sent)
	if grown > 512<<10 {
		t.Errorf("the store grew by %d bytes", grown)
	}
	if !strings.Contains(s.log.String(), "http.denial_audit_rate") {
		t.Errorf("no log line tells the operator that refusals are being counted, not audited:\n%s", s.log)
	}

	// The flood again, with healthy clients alongside.
	s.restart(t)
	load := runHealthy(t, s, 3, 15)
	refused, _, _ = flood(t, s, 8, 25)
	load.finish(t, 3*15)
	if got := s.metric(t, "usage_exporter_audit_denials_suppressed_total", ""); got == 0 || got > float64(refused) {
		t.Errorf("usage_exporter_audit_denials_suppressed_total = %v after %d refusals", got, refused)
	}
	s.stop(t)
}

package limit

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/usagemeter/usagemeter/exporter/api/problem"
)

var quiet = slog.New(slog.DiscardHandler)

// serve runs h on 127.0.0.1 behind a connection limit of max.
func serve(t *testing.T, max int, h http.Handler) (string, *Conns, *prometheus.Registry) {
	t.Helper()
	m := NewMetrics(quiet)
	c := NewConns(max, m)
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ConnState: c.ConnState, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: time.Hour}
	go srv.Serve(c.Listener(l))
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), c, reg
}

// client is one raw keep-alive connection.
type client struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{Conn: c, r: bufio.NewReader(c)}
}

// get sends one request and reads its answer, within 30 s.
func (c *client) get(path string) (*http.Response, error) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, err
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestConnsReclaimIdle: at the limit, a new connection takes the place of the connection idle
// the longest, which is closed; the others stay usable.
func TestConnsReclaimIdle(t *testing.T) {
	addr, c, reg := serve(t, 3, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	var idle []*client
	for range 3 {
		cl := dial(t, addr)
		if _, err := cl.get("/"); err != nil {
			t.Fatal(err)
		}
		idle = append(idle, cl)
		time.Sleep(2 * time.Millisecond) // distinct idle times
	}
	waitFor(t, "three idle connections", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.idle) == 3 })
	fresh := dial(t, addr)
	if resp, err := fresh.get("/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("new connection at the limit: %v %v", resp, err)
	}
	// The oldest was closed: reading from it ends.
	idle[0].SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := idle[0].r.ReadByte(); err == nil {
		t.Error("the oldest idle connection is still open")
	}
	for _, cl := range idle[1:] {
		if resp, err := cl.get("/"); err != nil || resp.StatusCode != 200 {
			t.Errorf("a younger idle connection: %v %v", resp, err)
		}
	}
	if c.Open() != 3 {
		t.Errorf("%d open connections, want 3", c.Open())
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP usage_exporter_http_connections_reclaimed_total Idle keep-alive connections closed to make room for a new connection at http.max_connections.
# TYPE usage_exporter_http_connections_reclaimed_total counter
usage_exporter_http_connections_reclaimed_total 1
# HELP usage_exporter_http_connections_open Open HTTP connections (at most http.max_connections).
# TYPE usage_exporter_http_connections_open gauge
usage_exporter_http_connections_open 3
`), "usage_exporter_http_connections_reclaimed_total", "usage_exporter_http_connections_open"); err != nil {
		t.Error(err)
	}
}

// TestConnsRefuseWhenAllBusy: with every connection serving a request, a new connection is
// closed at once (the client sees it end, it does not wait), and counted.
func TestConnsRefuseWhenAllBusy(t *testing.T) {
	unblock := make(chan struct{})
	var entered sync.WaitGroup
	addr, c, reg := serve(t, 2, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			entered.Done()
			<-unblock
		}
	}))
	var done sync.WaitGroup
	for range 2 {
		cl := dial(t, addr)
		entered.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			if _, err := cl.get("/block"); err != nil {
				t.Error(err)
			}
		}()
	}
	entered.Wait()
	refused := dial(t, addr)
	if _, err := refused.get("/"); err == nil {
		t.Error("a connection past the limit was served")
	}
	close(unblock)
	done.Wait()
	// Once the busy connections are idle, they give way.
	waitFor(t, "idle connections", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.idle) == 2 })
	if resp, err := dial(t, addr).get("/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the requests finished: %v %v", resp, err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP usage_exporter_http_limit_rejections_total Connections and requests refused because a limit was reached, by limit (connections: closed at accept; requests_in_flight: 503; requests_in_flight_per_credential: 429).
# TYPE usage_exporter_http_limit_rejections_total counter
usage_exporter_http_limit_rejections_total{limit="connections"} 1
usage_exporter_http_limit_rejections_total{limit="requests_in_flight"} 0
usage_exporter_http_limit_rejections_total{limit="requests_in_flight_per_credential"} 0
`), "usage_exporter_http_limit_rejections_total"); err != nil {
		t.Error(err)
	}
}

// TestRequestsOverallLimit: past the limit, 503 with Retry-After as a problem document,
// probes exempt; slots come back when requests finish.
func TestRequestsOverallLimit(t *testing.T) {
	m := NewMetrics(quiet)
	q := NewRequests(2, 2, m)
	unblock := make(chan struct{})
	entered := make(chan struct{})
	h := q.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			entered <- struct{}{}
			<-unblock
		}
	}), func(r *http.Request) bool { return r.URL.Path == "/-/healthy" })
	do := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); do("/block") }()
		<-entered
	}
	rec := do("/v1/usage")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" || rec.Header().Get("Content-Type") != problem.ContentType ||
		!strings.Contains(rec.Body.String(), "http.max_requests_in_flight") {
		t.Errorf("past the limit: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	if rec := do("/-/healthy"); rec.Code != 200 {
		t.Errorf("probe: %d", rec.Code)
	}
	if got := q.inFlight.Load(); got != 2 {
		t.Errorf("in flight %d, want 2", got)
	}
	close(unblock)
	wg.Wait()
	if rec := do("/v1/usage"); rec.Code != 200 {
		t.Errorf("after: %d", rec.Code)
	}
	if q.inFlight.Load() != 0 {
		t.Errorf("in flight %d after every request finished", q.inFlight.Load())
	}
}

// TestAcquireReleasesOnce: a caller's entry disappears with its last request, and a release
// called twice gives back one slot only.
func TestAcquireReleasesOnce(t *testing.T) {
	q := NewRequests(10, 2, NewMetrics(quiet))
	r1, ok1 := q.Acquire(nil, "a")
	r2, ok2 := q.Acquire(nil, "a")
	if !ok1 || !ok2 {
		t.Fatal("refused below the limit")
	}
	r1()
	r1()
	if q.callers["a"] != 1 {
		t.Errorf("a has %d in flight, want 1", q.callers["a"])
	}
	r2()
	if len(q.callers) != 0 {
		t.Errorf("callers left: %v", q.callers)
	}
}

func TestThrottle(t *testing.T) {
	th := &throttle{every: time.Minute}
	now := time.Unix(1000, 0)
	if n, ok := th.tick(now); !ok || n != 1 {
		t.Fatalf("first tick: %d %v", n, ok)
	}
	for i := range 5 {
		if _, ok := th.tick(now.Add(time.Duration(i) * time.Second)); ok {
			t.Fatal("ticked within the period")
		}
	}
	if n, ok := th.tick(now.Add(time.Minute)); !ok || n != 6 {
		t.Errorf("after the period: %d %v, want 6 true", n, ok)
	}
}

// TestWriteDeadline: a handler answering after the server's write timeout loses its answer,
// unless WriteDeadline gave it longer; the deadline reaches the connection through wrappers
// that unwrap (the guard's status recorder).
func TestWriteDeadline(t *testing.T) {
	late := func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Second)
		io.WriteString(w, "report")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/plain", late)
	extended := WriteDeadline(time.Minute, late)
	mux.HandleFunc("/export", func(w http.ResponseWriter, r *http.Request) { extended(unwrapper{w}, r) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, WriteTimeout: 100 * time.Millisecond}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	get := func(path string) (string, error) {
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get("http://" + l.Addr().String() + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := get("/export"); err != nil || body != "report" {
		t.Errorf("export: %q %v", body, err)
	}
	if body, err := get("/plain"); err == nil && body == "report" {
		t.Error("an ordinary answer outlived the write timeout")
	}
}

type unwrapper struct{ http.ResponseWriter }

func (u unwrapper) Unwrap() http.ResponseWriter { return u.ResponseWriter }

// Package stripemock starts the real stripe-mock (github.com/stripe/stripe-mock, pinned in
// mk/tools.mk) for tests, on a free 127.0.0.1 port, and puts a recording reverse proxy in
// front of it.
//
// stripe-mock validates every request against Stripe's OpenAPI specification and answers with
// fixtures, but it is stateless: it remembers no object and does not enforce idempotency keys.
// What the recorder proves is what our code sends (which requests, with which idempotency
// keys); that Stripe answers a repeated key with the first object is Stripe's documented
// contract, which no local process can prove.
package stripemock

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binary finds stripe-mock: $STRIPE_MOCK, bin/tools/stripe-mock above the working directory,
// or $PATH. It returns "" when there is none.
func Binary() string {
	if p := os.Getenv("STRIPE_MOCK"); p != "" {
		return p
	}
	if dir, err := os.Getwd(); err == nil {
		for ; ; dir = filepath.Dir(dir) {
			p := filepath.Join(dir, "bin", "tools", "stripe-mock")
			if _, err := os.Stat(p); err == nil {
				return p
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p
	}
	return ""
}

// Start runs stripe-mock until the test ends and returns its base URL. The test is skipped
// with a clear message when the binary is missing (`make tools` installs it).
func Start(t testing.TB) string {
	t.Helper()
	bin := Binary()
	if bin == "" {
		t.Skip("stripe-mock not found: run `make tools` (bin/tools/stripe-mock) or set STRIPE_MOCK")
	}
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start stripe-mock: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "Listening for HTTP at address: "); ok {
				addr <- a
			}
		}
	}()
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("stripe-mock did not start listening within 30 s")
		return ""
	}
}

// Request is one request the proxy forwarded.
type Request struct {
	Method, Path, IdempotencyKey string
	Form                         url.Values
}

// Recorder is a reverse proxy that records every request on its way to stripe-mock.
type Recorder struct {
	URL  string
	mu   sync.Mutex
	reqs []Request
	// dropAfter, when it matches a request, forwards it and then drops the connection instead
	// of answering: the provider acted, the caller never learns it (a crash's view).
	dropAfter func(Request) bool
}

// NewRecorder starts a recording proxy in front of target until the test ends.
func NewRecorder(t testing.TB, target string) *Recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rec := &Recorder{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_ = r.Body.Close()
		form, _ := url.ParseQuery(string(body))
		req := Request{Method: r.Method, Path: r.URL.Path, IdempotencyKey: r.Header.Get("Idempotency-Key"), Form: form}
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, req)
		drop := rec.dropAfter != nil && rec.dropAfter(req)
		rec.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		if !drop {
			proxy.ServeHTTP(w, r)
			return
		}
		proxy.ServeHTTP(httptest.NewRecorder(), r) // stripe-mock handles it; the answer is lost
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}))
	t.Cleanup(srv.Close)
	rec.URL = srv.URL
	return rec
}

// DropAfter makes every request match selects (nil: none) be forwarded and its answer lost,
// until it is called again. It drops every matching request, not only the first: Go's HTTP
// transport itself resends a request carrying an Idempotency-Key once when the connection
// closes before an answer, with the same key.
func (r *Recorder) DropAfter(match func(Request) bool) {
	r.mu.Lock()
	r.dropAfter = match
	r.mu.Unlock()
}

// Requests returns the requests recorded so far.
func (r *Recorder) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// Reset forgets the recorded requests.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.reqs = nil
	r.mu.Unlock()
}

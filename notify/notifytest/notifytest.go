// Package notifytest runs the real components the notification tests deliver to: a mailpit
// process (SMTP in, messages read back over its HTTP API) and a webhook receiver that verifies
// every request's Standard Webhooks signature.
package notifytest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// RepoRoot is the repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// FreePort returns a free loopback address.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Mailpit is a running mailpit: its SMTP address and HTTP API address.
type Mailpit struct {
	SMTP, API string
}

// StartMailpit runs bin/tools/mailpit (make tools) on free loopback ports with extra flags; it
// stops with the test. It skips the test when mailpit is not installed.
func StartMailpit(t testing.TB, extra ...string) Mailpit {
	t.Helper()
	bin := filepath.Join(RepoRoot(), "bin", "tools", "mailpit")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("mailpit not installed (%v): run make tools", err)
	}
	m := Mailpit{SMTP: FreePort(t), API: FreePort(t)}
	args := append([]string{"--smtp", m.SMTP, "--listen", m.API, "--database", filepath.Join(t.TempDir(), "mailpit.db"),
		"--disable-version-check", "--smtp-disable-rdns", "--quiet"}, extra...)
	cmd := exec.Command(bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + m.API + "/api/v1/messages")
		if err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", m.SMTP); err == nil {
				c.Close()
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailpit did not start: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Address is a mailpit address.
type Address struct {
	Address string `json:"Address"`
}

// Message is a message as mailpit's API gives it.
type Message struct {
	ID        string    `json:"ID"`
	MessageID string    `json:"MessageID"`
	Subject   string    `json:"Subject"`
	To        []Address `json:"To"`
	Text      string    `json:"Text"`
	HTML      string    `json:"HTML"`
}

// Messages reads back every message mailpit holds, with their bodies.
func (m Mailpit) Messages(t testing.TB) []Message {
	t.Helper()
	var list struct {
		Messages []Message `json:"messages"`
	}
	GetJSON(t, "http://"+m.API+"/api/v1/messages", &list)
	out := make([]Message, 0, len(list.Messages))
	for _, s := range list.Messages {
		var full Message
		GetJSON(t, "http://"+m.API+"/api/v1/message/"+s.ID, &full)
		out = append(out, full)
	}
	return out
}

// GetJSON decodes the answer of a GET, which must be 200.
func GetJSON(t testing.TB, url string, into any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// Verifier checks a request's signature against a secret (notify.Verify with a tolerance).
type Verifier func(secret string, h http.Header, body []byte, now time.Time) error

// Receiver is a webhook receiver: a real HTTP server that verifies every request's signature
// with the secrets it trusts and answers with the status its policy says.
type Receiver struct {
	*httptest.Server
	verify   Verifier
	mu       sync.Mutex
	secrets  []string
	got      []Received
	rejected int
	calls    int // verified requests so far, numbering them for the status policy
	status   func(n int, id string) int
	arrived  chan struct{}
}

// Received is one verified request.
type Received struct {
	ID     string
	At     time.Time
	Body   map[string]any
	Status int
}

// NewReceiver starts a receiver answering 200 until told otherwise; it stops with the test.
func NewReceiver(t testing.TB, verify Verifier) *Receiver {
	r := &Receiver{verify: verify, status: func(int, string) int { return 200 }, arrived: make(chan struct{}, 1)}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	at := time.Now()
	r.mu.Lock()
	secrets, policy := r.secrets, r.status
	r.mu.Unlock()
	verified := false
	for _, s := range secrets {
		if r.verify(s, req.Header, body, at) == nil {
			verified = true
		}
	}
	if !verified {
		r.mu.Lock()
		r.rejected++
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	n := r.calls // numbered on arrival: concurrent requests never share a number
	r.calls++
	r.mu.Unlock()
	st := policy(n, id)
	r.mu.Lock()
	r.got = append(r.got, Received{ID: id, At: at, Body: m, Status: st})
	r.mu.Unlock()
	select {
	case r.arrived <- struct{}{}:
	default:
	}
	w.WriteHeader(st)
	fmt.Fprintln(w, http.StatusText(st))
}

// Trust adds a secret the receiver accepts signatures of.
func (r *Receiver) Trust(secret string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets = append(r.secrets, secret)
}

// SetStatus sets the answer policy: the status of the n-th verified request (from 0, in order
// of arrival). The policy may block (a receiver holding requests in flight).
func (r *Receiver) SetStatus(f func(n int, id string) int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = f
}

// Received returns the verified requests so far, in order.
func (r *Receiver) Received() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Received(nil), r.got...)
}

// Rejected counts the requests whose signature did not verify.
func (r *Receiver) Rejected() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rejected
}

// Eventually polls cond until it holds or the deadline passes (then the test fails with what).
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not so after %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

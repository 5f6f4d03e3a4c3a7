package notify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
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

	"github.com/cockroachdb/pebble/v2"
	"gopkg.in/yaml.v3"
)

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// openDB opens a Pebble database in a temporary directory, closed at the end of the test.
func openDB(t testing.TB, dir string) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// mailpit is a running mailpit: its SMTP address and HTTP API.
type mailpit struct {
	SMTP, API string
}

// startMailpit runs bin/tools/mailpit (make tools) on free loopback ports, with extra flags.
func startMailpit(t testing.TB, extra ...string) mailpit {
	t.Helper()
	bin := filepath.Join(repoRoot(t), "bin", "tools", "mailpit")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("mailpit not installed (%v): run make tools", err)
	}
	m := mailpit{SMTP: freePort(t), API: freePort(t)}
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

type mailpitAddr struct {
	Address string `json:"Address"`
}

type mailpitMessage struct {
	ID        string        `json:"ID"`
	MessageID string        `json:"MessageID"`
	Subject   string        `json:"Subject"`
	To        []mailpitAddr `json:"To"`
	Text      string        `json:"Text"`
	HTML      string        `json:"HTML"`
}

// messages reads back every message mailpit holds, with their bodies.
func (m mailpit) messages(t testing.TB) []mailpitMessage {
	t.Helper()
	var list struct {
		Messages []mailpitMessage `json:"messages"`
	}
	getJSON(t, "http://"+m.API+"/api/v1/messages", &list)
	out := make([]mailpitMessage, 0, len(list.Messages))
	for _, s := range list.Messages {
		var full mailpitMessage
		getJSON(t, "http://"+m.API+"/api/v1/message/"+s.ID, &full)
		out = append(out, full)
	}
	return out
}

func getJSON(t testing.TB, url string, into any) {
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

// receiver is a webhook receiver that verifies every request's signature with the secrets it
// knows, and answers with the status its policy says.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	secrets  []string
	got      []received // verified requests, in order
	rejected int        // requests whose signature did not verify
	status   func(n int, id string) int
	// tolerance of the timestamp check; tests on a simulated clock widen it.
	tolerance time.Duration
}

type received struct {
	ID     string
	Body   map[string]any
	Status int
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{status: func(int, string) int { return 200 }, tolerance: 5 * time.Minute}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		secrets, policy, tolerance := r.secrets, r.status, r.tolerance
		r.mu.Unlock()
		verified := false
		for _, s := range secrets {
			if Verify(s, req.Header, body, time.Now(), tolerance) == nil {
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
			http.Error(w, err.Error(), 400)
			return
		}
		id := req.Header.Get("webhook-id")
		r.mu.Lock()
		n := len(r.got)
		r.mu.Unlock()
		st := policy(n, id)
		r.mu.Lock()
		r.got = append(r.got, received{ID: id, Body: m, Status: st})
		r.mu.Unlock()
		w.WriteHeader(st)
		fmt.Fprintln(w, http.StatusText(st))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) trust(secret string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secrets = append(r.secrets, secret)
}

func (r *receiver) setStatus(f func(n int, id string) int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = f
}

func (r *receiver) received() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := writeFile(certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// yamlNode parses a YAML document for ParseConfig.
type yamlNode struct{ doc yaml.Node }

func (n *yamlNode) parse(s string) error { return yaml.Unmarshal([]byte(s), &n.doc) }
func (n *yamlNode) node() *yaml.Node     { return n.doc.Content[0] }

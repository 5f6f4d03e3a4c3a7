package webserve

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/crypto/bcrypt"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "usagemeter test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "tls.crt"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	write(t, filepath.Join(dir, "tls.key"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})))
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func bcryptOf(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// webConfigFile writes a toolkit web config with relative certificate paths (resolved against
// the file's directory, as the toolkit does).
func webConfigFile(t *testing.T, dir string, users map[string]string) string {
	t.Helper()
	body := "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n"
	for u, pw := range users {
		body += fmt.Sprintf("  %s: %s\n", u, bcryptOf(t, pw))
	}
	path := filepath.Join(dir, "web.yml")
	write(t, path, body)
	return path
}

func app() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up 1\n") })
	// The API sees its own Authorization header untouched.
	mux.HandleFunc("GET /v1/usage", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Header.Get("Authorization")) })
	return mux
}

// start serves app() on a free loopback port and returns its address and a stop function that
// returns Serve's result.
func start(t *testing.T, configFile string) (string, func() error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeListeners(ctx, []net.Listener{l}, &http.Server{Handler: app()}, configFile, slog.New(slog.DiscardHandler))
	}()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { _ = stop() })
	return l.Addr().String(), stop
}

func get(t *testing.T, c *http.Client, url, user, pass, bearer string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestTLSAndBasicAuthOnMetricsOnly(t *testing.T) {
	dir := t.TempDir()
	pool := selfSigned(t, dir)
	cfg := webConfigFile(t, dir, map[string]string{"prometheus": "s3cret"})
	addr, stop := start(t, cfg)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + addr

	resp, _ := get(t, client, base+"/metrics", "", "", "")
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("/metrics without credentials: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp, _ := get(t, client, base+"/metrics", "prometheus", "wrong", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics with a wrong password: %d", resp.StatusCode)
	}
	if resp, _ := get(t, client, base+"/metrics", "nobody", "s3cret", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics with an unknown user: %d", resp.StatusCode)
	}
	for range 2 { // the second time from the cache
		resp, body := get(t, client, base+"/metrics", "prometheus", "s3cret", "")
		if resp.StatusCode != http.StatusOK || body != "up 1\n" {
			t.Errorf("/metrics with credentials: %d %q", resp.StatusCode, body)
		}
		if resp.TLS == nil || resp.Header.Get("X-Frame-Options") != "deny" {
			t.Errorf("TLS %v, X-Frame-Options %q", resp.TLS != nil, resp.Header.Get("X-Frame-Options"))
		}
	}
	// The API is not behind basic auth: its bearer token reaches the handler.
	resp, body := get(t, client, base+"/v1/usage", "", "", "um_token")
	if resp.StatusCode != http.StatusOK || body != "Bearer um_token" {
		t.Errorf("/v1/usage: %d %q", resp.StatusCode, body)
	}
	// Plain HTTP on the TLS port gets nowhere.
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP served /metrics")
		}
		resp.Body.Close()
	}
	// An untrusting client refuses the certificate.
	if _, err := http.Get(base + "/metrics"); err == nil {
		t.Error("certificate accepted without its CA")
	}

	// Users are re-read when the file changes.
	write(t, cfg, "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  grafana: "+bcryptOf(t, "other")+"\n")
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(cfg, future, future); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(t, client, base+"/metrics", "prometheus", "s3cret", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("removed user still accepted: %d", resp.StatusCode)
	}
	if resp, _ := get(t, client, base+"/metrics", "grafana", "other", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("added user refused: %d", resp.StatusCode)
	}

	if err := stop(); err != nil {
		t.Errorf("Serve after shutdown: %v", err)
	}
	if _, err := client.Get(base + "/metrics"); err == nil {
		t.Error("still serving after shutdown")
	}
}

func TestNoWebConfigIsPlainHTTP(t *testing.T) {
	addr, stop := start(t, "")
	resp, body := get(t, http.DefaultClient, "http://"+addr+"/metrics", "", "", "")
	if resp.StatusCode != http.StatusOK || body != "up 1\n" {
		t.Errorf("plain /metrics: %d %q", resp.StatusCode, body)
	}
	if err := stop(); err != nil {
		t.Error(err)
	}
}

func TestBadWebConfig(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"unknown field":  "tls_server_config:\n  certfile: x\n",
		"missing cert":   "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
		"plain password": "basic_auth_users:\n  prometheus: s3cret\n",
	} {
		path := filepath.Join(dir, "web.yml")
		write(t, path, body)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		err = ServeListeners(context.Background(), []net.Listener{l}, &http.Server{}, path, slog.New(slog.DiscardHandler))
		if err == nil {
			t.Errorf("%s: served", name)
		}
	}
}

func TestServeListensOnFlags(t *testing.T) {
	// Find a free port, then hand it to Serve through the toolkit's flag struct.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	addrs, cfg := []string{addr}, ""
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, &http.Server{Handler: app()}, &web.FlagConfig{WebListenAddresses: &addrs, WebConfigFile: &cfg}, slog.New(slog.DiscardHandler))
	}()
	// Retry until the listener is up (bounded by the test timeout, not by a clock).
	var resp *http.Response
	for {
		if resp, err = http.Get("http://" + addr + "/metrics"); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Serve returned early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := Serve(context.Background(), &http.Server{}, &web.FlagConfig{}, nil); err == nil {
		t.Error("Serve without addresses")
	}
}

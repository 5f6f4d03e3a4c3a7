package server

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/usagemeter/usagemeter/exporter/api/route"
)

// TestHTTPLimitsFromConfig: the HTTP server takes the config's timeouts and header limit,
// every export route gets the export deadline, and a reload that changes the http section is
// refused (the server was built with the old one).
func TestHTTPLimitsFromConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yml")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("http:\n  read_header_timeout: 3s\n  read_timeout: 7s\n  write_timeout: 11s\n  idle_timeout: 13s\n  max_header_bytes: 20000\n")
	addrs := []string{"127.0.0.1:0"}
	srv, err := Build(context.Background(), Options{Web: &web.FlagConfig{WebListenAddresses: &addrs}, StoragePath: filepath.Join(dir, "data"), ConfigFile: file, Log: &promslog.Config{}},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := srv.httpServer(slog.New(slog.DiscardHandler))
	if hs.ReadHeaderTimeout != 3*time.Second || hs.ReadTimeout != 7*time.Second || hs.WriteTimeout != 11*time.Second ||
		hs.IdleTimeout != 13*time.Second || hs.MaxHeaderBytes != 20000 || hs.ConnState == nil {
		t.Errorf("http.Server %+v does not carry the config", hs)
	}
	exports := 0
	for _, rt := range srv.Routes {
		if rt.Action == route.ActionReportsExport {
			exports++
			if !rt.Streams {
				t.Errorf("%s %s exports but does not get the export write deadline", rt.Method, rt.Pattern)
			}
		}
	}
	if exports == 0 {
		t.Fatal("no export route found")
	}
	write("http:\n  read_header_timeout: 3s\n  read_timeout: 7s\n  write_timeout: 11s\n  idle_timeout: 13s\n  max_header_bytes: 20000\n  max_connections: 5\n")
	if err := srv.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Errorf("reload with other http limits: %v", err)
	}
}

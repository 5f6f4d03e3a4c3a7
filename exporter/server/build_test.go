package server

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// TestBuildFailureAfterOpeningReleasesTheStore: a failure late in Build (here the archive key
// is missing) returns the error, and whatever Build opened is closed again.
func TestBuildFailureAfterOpeningReleasesTheStore(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yml")
	os.WriteFile(cfg, []byte("retention:\n  raw_events: 400d\n  key_env: USAGEMETER_TEST_MISSING_KEY\n"), 0o600)
	os.Unsetenv("USAGEMETER_TEST_MISSING_KEY")
	addrs := []string{"127.0.0.1:0"}
	store := filepath.Join(dir, "data")
	_, err := Build(context.Background(), Options{Web: &web.FlagConfig{WebListenAddresses: &addrs}, StoragePath: store, ConfigFile: cfg, Log: &promslog.Config{}},
		slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "USAGEMETER_TEST_MISSING_KEY") {
		t.Fatalf("err = %v, want the missing key named", err)
	}
	// The store's lock was released: it opens again.
	s, err := ledger.Open(context.Background(), ledger.Options{Path: store})
	if err != nil {
		t.Fatalf("the store is still locked: %v", err)
	}
	s.Close()
}

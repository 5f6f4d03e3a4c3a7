package simulate

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/usagemeter/usagemeter/exporter/server"
)

// TestRerunWithTheSameSeedWarns: a second run with the same seed sends the same event ids; the
// exporter acknowledges them as duplicates, and the simulator says so instead of silently
// counting nothing (issue #19: the README's backfill dropped 100,000 events).
func TestRerunWithTheSameSeedWarns(t *testing.T) {
	addrs := []string{"127.0.0.1:0"}
	srv, err := server.Build(context.Background(), server.Options{Web: &web.FlagConfig{WebListenAddresses: &addrs},
		StoragePath: filepath.Join(t.TempDir(), "data"), Log: &promslog.Config{}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ts := httptest.NewServer(srv.Handler)
	t.Cleanup(ts.Close)
	run := func(seed uint64) (Stats, string) {
		var logs bytes.Buffer
		st, err := Run(context.Background(), NewGenerator(5, seed), nil, Options{URL: ts.URL, Events: 2000, Batch: 500,
			Concurrency: 2, Log: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return st, logs.String()
	}
	if st, logs := run(1); st.Duplicates != 0 || strings.Contains(logs, "already stored") {
		t.Fatalf("first run: %+v\n%s", st, logs)
	}
	if st, logs := run(1); st.Accepted != 0 || st.Duplicates != 2000 || !strings.Contains(logs, "already_stored=2000") || !strings.Contains(logs, "--seed") {
		t.Fatalf("the same seed again: %+v, want 2000 duplicates and a warning naming --seed\n%s", st, logs)
	}
	if st, logs := run(2); st.Accepted != 2000 || strings.Contains(logs, "already stored") {
		t.Fatalf("another seed: %+v\n%s", st, logs)
	}
}

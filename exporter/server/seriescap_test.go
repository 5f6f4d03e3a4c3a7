package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"
)

// TestEveryTenantMetricObeysTheSeriesCap: with a tiny metrics.series_limit and events of every
// type for many tenants, every metric family of /metrics that has a tenant label holds at most
// the cap of series plus its __overflow__ series (one, or one per window of a windowed gauge),
// and its folded series are counted in usage_exporter_series_overflow_total{metric}. The
// families are enumerated from the scrape itself, so a metric added later is covered without
// touching this test.
func TestEveryTenantMetricObeysTheSeriesCap(t *testing.T) {
	const limit, tenants = 4, 25
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "user.key")
	if err := os.WriteFile(keyFile, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
plans:
  - {name: pro, enforcement: soft, limits: {ai_tokens: 100000, documents: 100, storage_bytes: 100000}}
default_plan: pro
metrics:
  series_limit: %d
  per_user_labels: true
  user_label_key_file: %s
tenants:
  - {id: configured-only}
`, limit, keyFile)
	file := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := []string{"127.0.0.1:0"}
	srv, err := Build(context.Background(), Options{Web: &web.FlagConfig{WebListenAddresses: &addrs},
		StoragePath: filepath.Join(dir, "data"), ConfigFile: file, Log: &promslog.Config{}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ts := httptest.NewServer(srv.Handler)
	t.Cleanup(ts.Close)

	// Every event type of the contract, for every tenant, with several values of each label.
	at := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	var b strings.Builder
	n := 0
	ev := func(typ, data string) {
		n++
		fmt.Fprintf(&b, `{"specversion":"1.0","id":"e%d","source":"cap","type":%q,"time":%q,"data":%s}`+"\n", n, typ, at, data)
	}
	for i := range tenants {
		tn := fmt.Sprintf("t%02d", i)
		for j := range 2 {
			u := fmt.Sprintf("u%d", j)
			ev("document.created", fmt.Sprintf(`{"tenant":%q,"user":%q,"document_id":"d%d","doc_type":"type%d","bytes":10}`, tn, u, j, j))
			ev("document.deleted", fmt.Sprintf(`{"tenant":%q,"user":%q,"document_id":"d%d","doc_type":"type%d","bytes":10}`, tn, u, j, j))
			ev("storage.measured", fmt.Sprintf(`{"tenant":%q,"storage_class":"class%d","bytes":100}`, tn, j))
			ev("ai.tokens", fmt.Sprintf(`{"tenant":%q,"user":%q,"feature":"f%d","model":"m%d","input_tokens":5,"output_tokens":7}`, tn, u, j, j))
			ev("ingest.completed", fmt.Sprintf(`{"tenant":%q,"source":"s%d","bytes":10,"records":2,"user":%q,"duration_ms":5}`, tn, j, u))
			ev("user.login", fmt.Sprintf(`{"tenant":%q,"user":%q,"session_seconds":60}`, tn, u))
			ev("feature.used", fmt.Sprintf(`{"tenant":%q,"user":%q,"feature":"f%d"}`, tn, u, j))
		}
	}
	resp, err := http.Post(ts.URL+"/v1/events", "application/x-ndjson", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("ingest: %d", resp.StatusCode)
	}

	// Twice: admission must hold across scrapes, not only on the first.
	for scrape := range 2 {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/metrics", nil)
		req.Header.Set("Accept", "text/plain; version=0.0.4")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		overflowCount := map[string]float64{}
		if mf := mfs["usage_exporter_series_overflow_total"]; mf != nil {
			for _, m := range mf.Metric {
				for _, l := range m.Label {
					if l.GetName() == "metric" {
						overflowCount[l.GetValue()] = m.GetCounter().GetValue()
					}
				}
			}
		}
		var checked []string
		for name, mf := range mfs {
			capped, overflowSets := 0, map[string]bool{}
			hasTenant := false
			for _, m := range mf.Metric {
				var tenant string
				var rest []string
				for _, l := range m.Label {
					switch l.GetName() {
					case "tenant":
						hasTenant, tenant = true, l.GetValue()
					case "window":
					default:
						rest = append(rest, l.GetName()+"="+l.GetValue())
					}
				}
				if tenant == "__overflow__" {
					sort.Strings(rest)
					overflowSets[strings.Join(rest, ",")] = true
				} else {
					capped++
				}
			}
			if !hasTenant {
				continue
			}
			checked = append(checked, name)
			if capped > limit {
				t.Errorf("scrape %d: %s has %d series under the cap of %d", scrape, name, capped, limit)
			}
			if len(overflowSets) != 1 {
				t.Errorf("scrape %d: %s has %d __overflow__ label sets (apart from window), want 1", scrape, name, len(overflowSets))
			}
			if overflowCount[name] <= 0 {
				t.Errorf("scrape %d: %s folded series but usage_exporter_series_overflow_total{metric=%q} is %v", scrape, name, name, overflowCount[name])
			}
		}
		sort.Strings(checked)
		for _, must := range []string{"usage_active_users", "usage_ai_tokens_total", "usage_quota_used", "usage_quota_limit", "usage_tenant_info"} {
			if sort.SearchStrings(checked, must) == len(checked) || checked[sort.SearchStrings(checked, must)] != must {
				t.Errorf("scrape %d: %s is not in the scrape (checked %v)", scrape, must, checked)
			}
		}
	}
}

package dashboards

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/exporter/api"
	"github.com/usagemeter/usagemeter/exporter/meter"
	"github.com/usagemeter/usagemeter/exporter/quota"
)

// builtinSeries are written by the rest of the stack, not the exporter: vmalert's alert state
// and the scraper's target health.
var builtinSeries = []string{"ALERTS", "ALERTS_FOR_STATE", "up"}

var (
	fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)
)

// knownMetrics returns every series name a dashboard may query: the exporter's metrics, taken
// from its meter definitions and its real quota and self-metric collectors (so a metric renamed
// in the exporter breaks this test), the recording rules' names from rules/*.yml, and the
// builtins.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	for _, n := range builtinSeries {
		known[n] = true
	}

	// Usage metrics: the default meters' metric names (exporter/meter), and the two series the
	// usage collector writes about itself (docs/architecture.md). The collector is not run here:
	// its constructor is internal wiring that changes more often than the names it exposes.
	for _, d := range meter.Defaults() {
		if d.Metric != nil {
			known[d.Metric.Name] = true
		}
	}
	for _, n := range []string{"usage_exporter_series", "usage_exporter_series_overflow_total"} {
		known[n] = true
	}

	// Quota metrics: their descriptions (Describe reads no state, so no evaluator is needed).
	descs := make(chan *prometheus.Desc, 16)
	go func() {
		quota.NewCollector(nil).Describe(descs)
		close(descs)
	}()
	for d := range descs {
		m := fqNameRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the metric name of %s", d)
		}
		known[m[1]] = true
	}

	// The exporter's own metrics always have a value, so gathering them gives their types too:
	// histograms are queried through their _bucket, _sum and _count series.
	reg := prometheus.NewRegistry()
	api.NewSelfMetrics(reg, func() float64 { return 0 })
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		known[f.GetName()] = true
		if f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				known[f.GetName()+s] = true
			}
		}
	}

	for name := range recordedNames(t, filepath.Join("..", "rules")) {
		known[name] = true
	}
	return known
}

// recordedNames reads the `record:` names of the rule files in dir, if the directory exists.
func recordedNames(t *testing.T, dir string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	files, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Groups []struct {
				Rules []struct {
					Record string `yaml:"record"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					names[r.Record] = true
				}
			}
		}
	}
	return names
}

func TestKnownMetricsComeFromTheExporter(t *testing.T) {
	known := knownMetrics(t)
	// A sample across the sources read from the exporter: meter metrics, quota metrics, self
	// metrics, a histogram series. If one disappears the list is no longer what dashboards need.
	for _, name := range []string{
		"usage_ai_tokens_total", "usage_active_users", "usage_quota_limit", "usage_tenant_info",
		"usage_exporter_events_accepted_total", "usage_exporter_commit_duration_seconds_bucket",
	} {
		if !known[name] {
			t.Errorf("%s missing from the exporter's metrics", name)
		}
	}
	if _, err := os.Stat(filepath.Join("..", "rules")); err == nil && !known["tenant_meter:usage_quota_used_per_limit:ratio"] {
		t.Errorf("recording rules under rules/ were not read")
	}
	if known["usage_ai_token_total"] {
		t.Errorf("a misspelt name is known")
	}
}

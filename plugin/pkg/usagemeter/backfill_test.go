package usagemeter

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// anomalyRecords are the recording rules behind the anomalies panel: the z-score, and the hourly
// rate it is computed from.
var anomalyRecords = []string{"tenant_meter:usage:rate1h", zscoreRecord}

// backfillRules writes the recorded series of some rules of rules/usage.yml over [from, to] the
// way VictoriaMetrics users backfill recording rules: vmalert's replay mode. The rules are
// evaluated hourly (the resolution of the imported history; live vmalert evaluates them every
// minute or five). Chained rules: each group is replayed by its own vmalert run, in file order,
// and VictoriaMetrics is flushed in between, so a group reads what the groups before it wrote.
// It returns the replay's duration.
func (s *stack) backfillRules(tb testing.TB, from, to time.Time, records ...string) time.Duration {
	tb.Helper()
	start := time.Now()
	vmalert := filepath.Join(repoRoot(), "bin", "tools", "vmalert")
	if _, err := os.Stat(vmalert); err != nil {
		tb.Fatalf("vmalert is missing (%v): run `make tools`", err)
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(), "rules", "usage.yml"))
	if err != nil {
		tb.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name     string           `yaml:"name"`
			Interval string           `yaml:"interval,omitempty"`
			Rules    []map[string]any `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		tb.Fatalf("rules/usage.yml: %v", err)
	}
	dir := tb.TempDir()
	found := map[string]bool{}
	for i, g := range file.Groups {
		g.Rules = slices.DeleteFunc(g.Rules, func(r map[string]any) bool {
			rec, _ := r["record"].(string)
			found[rec] = found[rec] || slices.Contains(records, rec)
			return !slices.Contains(records, rec)
		})
		if len(g.Rules) == 0 {
			continue
		}
		g.Interval = "1h"
		out, err := yaml.Marshal(map[string]any{"groups": []any{g}})
		if err != nil {
			tb.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("%02d-%s.yml", i, g.Name))
		if err := os.WriteFile(path, out, 0o600); err != nil {
			tb.Fatal(err)
		}
		// A week of hourly points per request: VictoriaMetrics bounds a query's duration, and
		// the z-score reads a week per point.
		cmd := exec.Command(vmalert, "-rule="+path, "-datasource.url="+s.VM, "-remoteWrite.url="+s.VM,
			"-replay.timeFrom="+from.UTC().Format(time.RFC3339), "-replay.timeTo="+to.UTC().Format(time.RFC3339),
			"-replay.maxDatapointsPerQuery=168", "-replay.rulesDelay=0", "-replay.disableProgressBar", "-loggerLevel=WARN")
		dieWithTest(cmd)
		if log, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("vmalert replay of %s: %v\n%s", g.Name, err, tail(string(log), 3000))
		}
		vmGet(tb, s.VM+"/internal/force_flush")
	}
	for _, r := range records {
		if !found[r] {
			tb.Fatalf("rules/usage.yml has no recording rule %s", r)
		}
	}
	// Range queries before the backfill may have cached answers without the new series.
	vmGet(tb, s.VM+"/internal/resetRollupResultCache")
	return time.Since(start)
}

func vmGet(tb testing.TB, url string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		tb.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
}

// importText posts Prometheus text with timestamps to VictoriaMetrics and makes it searchable.
func (s *stack) importText(tb testing.TB, r io.Reader) {
	tb.Helper()
	resp, err := http.Post(s.VM+"/api/v1/import/prometheus", "text/plain", r)
	if err != nil {
		tb.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		tb.Fatalf("VictoriaMetrics import: %d", resp.StatusCode)
	}
	// Searchable now rather than at the next background flush.
	vmGet(tb, s.VM+"/internal/force_flush")
}

package rules

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const runbookPrefix = "https://github.com/usagemeter/usagemeter/blob/main/docs/runbooks/"

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type testFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTests []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		MetricsqlExprTests []struct {
			Expr       string `yaml:"expr"`
			ExpSamples []any  `yaml:"exp_samples"`
		} `yaml:"metricsql_expr_test"`
	} `yaml:"tests"`
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Not strict: vmalert and vmalert-tool validate the full schema; this reads what it checks.
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// levelMetricOps is the recording rule naming convention: level:metric:operations.
var levelMetricOps = regexp.MustCompile(`^[a-z][a-z_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$`)

// TestConventions checks what vmalert cannot: every recording rule is named level:metric:operations,
// every alert has a known severity, a summary, a description and a runbook that exists, and every
// rule is exercised by the vmalert-tool tests (alerts both firing and not firing).
func TestConventions(t *testing.T) {
	ruleFiles, err := filepath.Glob("*.yml")
	if err != nil || len(ruleFiles) == 0 {
		t.Fatalf("no rule files: %v", err)
	}
	records := map[string]bool{}
	alerts := map[string]bool{}
	for _, f := range ruleFiles {
		var rf ruleFile
		readYAML(t, f, &rf)
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				switch {
				case r.Record != "":
					records[r.Record] = true
					if !levelMetricOps.MatchString(r.Record) {
						t.Errorf("%s: recording rule %q is not named level:metric:operations", f, r.Record)
					}
				case r.Alert != "":
					alerts[r.Alert] = true
					checkAlert(t, f, r.Alert, r.Labels, r.Annotations)
				default:
					t.Errorf("%s: group %s has a rule that neither records nor alerts", f, g.Name)
				}
			}
		}
	}

	testFiles, err := filepath.Glob("tests/*_test.yml")
	if err != nil || len(testFiles) == 0 {
		t.Fatalf("no rule test files: %v", err)
	}
	tested := map[string]bool{}
	firing := map[string]bool{}
	silent := map[string]bool{}
	recorded := map[string]bool{}
	for _, f := range testFiles {
		var tf testFile
		readYAML(t, f, &tf)
		for _, rf := range tf.RuleFiles {
			tested[filepath.Base(rf)] = true
		}
		for _, tg := range tf.Tests {
			for _, at := range tg.AlertRuleTests {
				if len(at.ExpAlerts) > 0 {
					firing[at.Alertname] = true
				} else {
					silent[at.Alertname] = true
				}
			}
			for _, mt := range tg.MetricsqlExprTests {
				if len(mt.ExpSamples) == 0 {
					continue
				}
				for name := range records {
					if strings.Contains(mt.Expr, name) {
						recorded[name] = true
					}
				}
			}
		}
	}
	for _, f := range ruleFiles {
		if !tested[f] {
			t.Errorf("rule file %s is not loaded by any test in tests/", f)
		}
	}
	for _, a := range sortedKeys(alerts) {
		if !firing[a] {
			t.Errorf("alert %s has no test where it fires", a)
		}
		if !silent[a] {
			t.Errorf("alert %s has no test where it stays silent", a)
		}
	}
	for _, r := range sortedKeys(records) {
		if !recorded[r] {
			t.Errorf("recording rule %s has no metricsql_expr_test with expected samples", r)
		}
	}
}

func checkAlert(t *testing.T, file, name string, labels, annotations map[string]string) {
	t.Helper()
	if sev := labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, sev) {
		t.Errorf("%s: alert %s: severity %q, want critical, warning or info", file, name, sev)
	}
	for _, a := range []string{"summary", "description", "runbook_url"} {
		if strings.TrimSpace(annotations[a]) == "" {
			t.Errorf("%s: alert %s has no %s annotation", file, name, a)
		}
	}
	want := runbookPrefix + name + ".md"
	if annotations["runbook_url"] != want {
		t.Errorf("%s: alert %s: runbook_url %q, want %q", file, name, annotations["runbook_url"], want)
	}
	if _, err := os.Stat(filepath.Join("..", "docs", "runbooks", name+".md")); err != nil {
		t.Errorf("%s: alert %s: runbook missing: %v", file, name, err)
	}
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

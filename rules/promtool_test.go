package rules

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The rule unit tests in tests/ are written once, in vmalert-tool's format, and run by both
// engines: vmalert-tool (make test-rules) and Prometheus's promtool, here. vmalert-tool's format is
// promtool's with metricsql_expr_test for promql_expr_test, so promtool's copy is derived from the
// one kept by hand rather than kept as a second copy.

// promtoolFormat turns a vmalert-tool test file into promtool's format: metricsql_expr_test
// becomes promql_expr_test, and rule_files point at the rule files by absolute path (the copy is
// written elsewhere). Anything else the file holds is carried over as it is, and promtool, which
// reads its files strictly, refuses what it does not know.
func promtoolFormat(src []byte, dir string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a YAML mapping")
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "rule_files" {
			continue
		}
		for _, f := range root.Content[i+1].Content {
			abs, err := filepath.Abs(filepath.Join(dir, f.Value))
			if err != nil {
				return nil, err
			}
			f.Value = abs
		}
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "metricsql_expr_test" {
					n.Content[i].Value = "promql_expr_test"
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(root)
	return yaml.Marshal(&doc)
}

// promtool finds the pinned promtool: bin/tools (make tools installs it there), else PATH.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := filepath.Abs(filepath.Join("..", "bin", "tools", "promtool")); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	t.Skip("promtool is not installed: run `make tools` (make test does it first)")
	return ""
}

// TestPromtoolRunsTheRuleUnitTests runs every rule unit test of tests/ under Prometheus's
// promtool: the same rules, the same input series and the same expected samples and alerts as
// under vmalert-tool, so the one rule set is held to both engines' results.
func TestPromtoolRunsTheRuleUnitTests(t *testing.T) {
	bin := promtool(t)
	files, err := filepath.Glob(filepath.Join("tests", "*_test.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule test files: %v", err)
	}
	out := t.TempDir()
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		conv, err := promtoolFormat(src, filepath.Dir(f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		dst := filepath.Join(out, filepath.Base(f))
		if err := os.WriteFile(dst, conv, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yml"), func(t *testing.T) {
			cmd := exec.Command(bin, "test", "rules", dst)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("promtool test rules %s (from %s): %v\n%s", dst, f, err, b)
			}
		})
	}
}

// TestPromtoolFormat: the conversion renames every expression test, at any depth, and resolves
// the rule files; it leaves the rest alone.
func TestPromtoolFormat(t *testing.T) {
	src := []byte("rule_files: [../quota.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    metricsql_expr_test:\n      - expr: a\n        eval_time: 1m\n")
	got, err := promtoolFormat(src, "tests")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("quota.yml")
	for _, want := range []string{"promql_expr_test:", abs, "evaluation_interval: 1m", "eval_time: 1m"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("converted file lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(string(got), "metricsql") {
		t.Errorf("metricsql_expr_test left:\n%s", got)
	}
	if _, err := promtoolFormat([]byte("- a\n"), "."); err == nil {
		t.Error("a YAML list converted")
	}
}

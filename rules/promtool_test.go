package rules

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The rule unit tests in tests/ are written once, in vmalert-tool's format, and run by both
// engines: vmalert-tool (make test-rules) and Prometheus's promtool, here. vmalert-tool's format is
// promtool's with metricsql_expr_test for promql_expr_test, so promtool's copy is derived from the
// one kept by hand rather than kept as a second copy.

// vmalertToolEpoch is where vmalert-tool's test clock starts (2000-01-01T00:00:00Z); promtool's
// starts at 0. Input series holding Unix times (*_timestamp_seconds) are shifted by it.
const vmalertToolEpoch = 946684800

// skipMark, in a comment just above an expression or alert test, keeps that test from promtool:
// the engines differ there by design (the comment says why), and vmalert-tool alone runs it.
const skipMark = "promtool: skip"

// promtoolFormat turns a vmalert-tool test file into promtool's format: metricsql_expr_test
// becomes promql_expr_test, alert tests lose their groupname, Unix times in input series move
// to promtool's clock, tests marked "promtool: skip" are left out (their count is returned), and
// rule_files point at the rule files by absolute path (the copy is written elsewhere). Anything
// else the file holds is carried over as it is, and promtool, which reads its files strictly,
// refuses what it does not know.
func promtoolFormat(src []byte, dir string) ([]byte, int, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, 0, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, 0, errors.New("not a YAML mapping")
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "rule_files" {
			continue
		}
		for _, f := range root.Content[i+1].Content {
			abs, err := filepath.Abs(filepath.Join(dir, f.Value))
			if err != nil {
				return nil, 0, err
			}
			f.Value = abs
		}
	}
	skipped := 0
	var shiftErr error
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				key, val := n.Content[i], n.Content[i+1]
				switch key.Value {
				case "metricsql_expr_test", "alert_rule_test":
					key.Value = strings.Replace(key.Value, "metricsql", "promql", 1)
					kept := val.Content[:0]
					for _, test := range val.Content {
						if strings.Contains(test.HeadComment, skipMark) || (len(test.Content) > 0 && strings.Contains(test.Content[0].HeadComment, skipMark)) {
							skipped++
							continue
						}
						kept = append(kept, test)
					}
					val.Content = kept
				case "groupname":
					// vmalert-tool names the group of an alert test; promtool finds the
					// alert in any group.
					n.Content = slices.Delete(n.Content, i, i+2)
					i -= 2
				case "series":
					if i+3 < len(n.Content) && n.Content[i+2].Value == "values" && strings.Contains(strings.SplitN(val.Value, "{", 2)[0], "_timestamp_seconds") {
						shifted, err := shiftValues(n.Content[i+3].Value, -vmalertToolEpoch)
						if err != nil && shiftErr == nil {
							shiftErr = fmt.Errorf("series %s: %w", val.Value, err)
						}
						n.Content[i+3].Value = shifted
					}
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(root)
	if shiftErr != nil {
		return nil, 0, shiftErr
	}
	out, err := yaml.Marshal(&doc)
	return out, skipped, err
}

// shiftValues adds d to the start of every term of an input series' expanding notation ("a",
// "axn", "a+bxn", "a-bxn"; "_" and "stale" stay as they are).
func shiftValues(values string, d int64) (string, error) {
	terms := strings.Fields(values)
	for i, term := range terms {
		if strings.HasPrefix(term, "_") || term == "stale" {
			continue
		}
		end := strings.IndexAny(term[1:], "+-x")
		if end < 0 {
			end = len(term)
		} else {
			end++
		}
		v, err := strconv.ParseInt(term[:end], 10, 64)
		if err != nil {
			return "", fmt.Errorf("%q: only whole Unix times can move to promtool's clock", term)
		}
		terms[i] = strconv.FormatInt(v+d, 10) + term[end:]
	}
	return strings.Join(terms, " "), nil
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
		conv, skipped, err := promtoolFormat(src, filepath.Dir(f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if skipped > 0 {
			t.Logf("%s: %d test(s) marked %q run under vmalert-tool only", f, skipped, skipMark)
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
	src := []byte("rule_files: [../quota.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    metricsql_expr_test:\n      - expr: a\n        eval_time: 1m\n" +
		"    alert_rule_test:\n      - eval_time: 1m\n        groupname: g\n        alertname: A\n")
	got, _, err := promtoolFormat(src, "tests")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("quota.yml")
	for _, want := range []string{"promql_expr_test:", abs, "evaluation_interval: 1m", "eval_time: 1m"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("converted file lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(string(got), "metricsql") || strings.Contains(string(got), "groupname") || !strings.Contains(string(got), "alertname: A") {
		t.Errorf("vmalert-tool's fields left:\n%s", got)
	}
	if _, _, err := promtoolFormat([]byte("- a\n"), "."); err == nil {
		t.Error("a YAML list converted")
	}
}

// TestPromtoolFormatSkipsAndShifts: a marked test is left out and counted; Unix times move to
// promtool's clock, increments and gaps untouched.
func TestPromtoolFormatSkipsAndShifts(t *testing.T) {
	src := []byte(`rule_files: [../quota.yml]
tests:
  - interval: 1m
    input_series:
      - series: 'usage_quota_period_end_timestamp_seconds{tenant="a"}'
        values: '946771200x10 _x2 946684800+60x3'
      - series: 'usage_quota_used{tenant="a"}'
        values: '946771200x10'
    metricsql_expr_test:
      # promtool: skip (the engines differ here)
      - expr: a
        eval_time: 1m
      - expr: b
        eval_time: 1m
`)
	got, skipped, err := promtoolFormat(src, "tests")
	if err != nil {
		t.Fatal(err)
	}
	if skipped != 1 || strings.Contains(string(got), "expr: a") || !strings.Contains(string(got), "expr: b") {
		t.Errorf("skipped %d:\n%s", skipped, got)
	}
	if !strings.Contains(string(got), "86400x10 _x2 0+60x3") || !strings.Contains(string(got), "values: '946771200x10'") {
		t.Errorf("times not shifted, or the wrong series shifted:\n%s", got)
	}
	if v, err := shiftValues("1-2x3", 10); err != nil || v != "11-2x3" {
		t.Errorf("shiftValues(1-2x3) = %q, %v", v, err)
	}
}

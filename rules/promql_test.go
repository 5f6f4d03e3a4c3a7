package rules

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// promQL is the PromQL parser as Prometheus runs it by default: no experimental functions, legacy
// metric and label names (what Thanos and Mimir accept too).
var promQL = parser.NewParser(parser.Options{})

// ruleFiles are the rule files every engine loads: rules/*.yml. A rule that only VictoriaMetrics
// can run would go in rules/victoriametrics/, whose files say so; there is none today.
func ruleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files: %v", err)
	}
	return files
}

// TestRuleFilesLoadInPrometheus parses every rule file with Prometheus's own rule-file parser,
// strictly (an unknown field is an error), which also parses every expression with the PromQL
// parser and every annotation and label template. A MetricsQL-only function or syntax fails here.
// Prometheus, Thanos Ruler and Mimir's ruler load rule files with this parser.
func TestRuleFilesLoadInPrometheus(t *testing.T) {
	for _, f := range ruleFiles(t) {
		groups, errs := rulefmt.ParseFile(f, false, model.LegacyValidation, promQL, slog.New(slog.DiscardHandler))
		for _, err := range errs {
			t.Errorf("%s: Prometheus refuses it: %v", f, err)
		}
		if groups == nil {
			continue
		}
		n := 0
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				n++
				name := r.Record + r.Alert
				if _, err := promQL.ParseExpr(r.Expr); err != nil {
					t.Errorf("%s: group %s, rule %s: not PromQL: %v", f, g.Name, name, err)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s: no rules", f)
		}
	}
}

// TestPromQLParserRefusesMetricsQL: the check above can fail. MetricsQL's own functions and
// shorthands, which VictoriaMetrics accepts, are refused.
func TestPromQLParserRefusesMetricsQL(t *testing.T) {
	for _, expr := range []string{
		`range_median(usage_quota_used)`,
		`rate(usage_ai_tokens_total)`,
		`sum(rate(usage_ai_tokens_total[5m])) by (tenant) keep_metric_names`,
		`histogram_quantiles("q", 0.5, 0.9, x)`,
		`limit_offset(1, 1, x)`,
	} {
		if _, err := promQL.ParseExpr(expr); err == nil {
			t.Errorf("%s parsed as PromQL", expr)
		}
	}
	bad := []byte("groups:\n  - name: g\n    rules:\n      - record: a:b:c\n        expr: range_median(x)\n")
	if _, errs := rulefmt.Parse(bad, false, model.LegacyValidation, promQL, slog.New(slog.DiscardHandler)); len(errs) == 0 ||
		!strings.Contains(errs[0].Error(), "range_median") {
		t.Errorf("a MetricsQL rule file loaded: %v", errs)
	}
}

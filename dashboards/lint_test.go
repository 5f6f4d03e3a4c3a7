package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metricsql"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/usagemeter/usagemeter/exporter/meter"
)

// The linter works on the committed JSON, generically (maps, not the SDK's types): it checks what
// Grafana will load, whatever produced it.

type lintCtx struct {
	known map[string]bool // series names that exist
}

// lint returns every problem of one dashboard.
func (c *lintCtx) lint(dash map[string]any) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	vars := map[string]map[string]any{}
	templating, _ := dash["templating"].(map[string]any)
	list, _ := templating["list"].([]any)
	for _, v := range list {
		vm, _ := v.(map[string]any)
		name, _ := vm["name"].(string)
		vars[name] = vm
	}
	checkDSVar := func(name, pluginType string) bool {
		v, ok := vars[name]
		if !ok {
			return false
		}
		if v["type"] != "datasource" || v["query"] != pluginType {
			bad("variable %s must be a datasource variable of type %s, is %v/%v", name, pluginType, v["type"], v["query"])
		}
		return true
	}
	if !checkDSVar(DatasourceVar, PrometheusType) {
		bad("no %q template variable", DatasourceVar)
	}
	hasPluginVar := checkDSVar(PluginDatasourceVar, PluginType)

	// Variables listing label values must name a series that exists.
	for _, v := range list {
		vm, _ := v.(map[string]any)
		if q, ok := vm["query"].(string); ok && strings.HasPrefix(q, "label_values(") {
			c.checkLabelValues(vm["name"], q, bad)
		}
	}

	ids := map[float64]bool{}
	for _, p := range allPanels(dash) {
		title, _ := p["title"].(string)
		if id, ok := p["id"].(float64); ok {
			if ids[id] {
				bad("panel %q: duplicate id %v", title, id)
			}
			ids[id] = true
		}
		if p["type"] == "row" {
			continue
		}
		if title == "" {
			bad("a %v panel has no title", p["type"])
			title = fmt.Sprintf("%v", p["id"])
		}
		if d, _ := p["description"].(string); d == "" {
			bad("panel %q has no description", title)
		}
		fc, _ := p["fieldConfig"].(map[string]any)
		defaults, _ := fc["defaults"].(map[string]any)
		if u, _ := defaults["unit"].(string); u == "" {
			bad("panel %q has no unit", title)
		}

		ds, _ := p["datasource"].(map[string]any)
		dsType, _ := ds["type"].(string)
		dsUID, _ := ds["uid"].(string)
		switch {
		case dsType == PrometheusType && isVarRef(dsUID, DatasourceVar):
		case dsType == PluginType && isVarRef(dsUID, PluginDatasourceVar):
			if !hasPluginVar {
				bad("panel %q uses the plugin but there is no %q variable", title, PluginDatasourceVar)
			}
		default:
			bad("panel %q: datasource %v/%v is neither $%s (prometheus) nor $%s (%s)", title, dsType, dsUID, DatasourceVar, PluginDatasourceVar, PluginType)
		}

		targets, _ := p["targets"].([]any)
		if len(targets) == 0 {
			bad("panel %q has no query", title)
		}
		for i, raw := range targets {
			tm, _ := raw.(map[string]any)
			if tds, ok := tm["datasource"].(map[string]any); ok {
				if tds["type"] != dsType || tds["uid"] != dsUID {
					bad("panel %q query %d: datasource %v/%v differs from the panel's", title, i, tds["type"], tds["uid"])
				}
			}
			switch dsType {
			case PrometheusType:
				expr, _ := tm["expr"].(string)
				for _, err := range c.checkExpr(expr, vars) {
					bad("panel %q query %d: %v", title, i, err)
				}
			case PluginType:
				if err := checkPluginQuery(tm, vars); err != nil {
					bad("panel %q query %d: %v", title, i, err)
				}
			}
		}
	}
	return problems
}

// allPanels flattens rows: collapsed rows hold their panels inside.
func allPanels(dash map[string]any) []map[string]any {
	var out []map[string]any
	ps, _ := dash["panels"].([]any)
	for _, raw := range ps {
		p, _ := raw.(map[string]any)
		out = append(out, p)
		inner, _ := p["panels"].([]any)
		for _, r := range inner {
			ip, _ := r.(map[string]any)
			out = append(out, ip)
		}
	}
	return out
}

func isVarRef(s, name string) bool { return s == "$"+name || s == "${"+name+"}" }

var (
	varRefRE = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}?`)
	// Values substituted for Grafana's builtins before parsing; any duration does.
	builtinValues = map[string]string{
		"__rate_interval": "5m", "__interval": "1m", "__range": "1d",
		"__interval_ms": "60000", "__range_s": "86400", "__range_ms": "86400000",
	}
)

// substitute replaces template variables with plausible values: durations for Grafana's
// builtins, a tenant-like string for the dashboard's own. It reports undefined variables.
func substitute(s string, vars map[string]map[string]any) (string, []error) {
	var errs []error
	out := varRefRE.ReplaceAllStringFunc(s, func(ref string) string {
		name := varRefRE.FindStringSubmatch(ref)[1]
		if v, ok := builtinValues[name]; ok {
			return v
		}
		if _, ok := vars[name]; !ok {
			errs = append(errs, fmt.Errorf("uses $%s, which is not a template variable", name))
		}
		return "x"
	})
	return out, errs
}

// promQL is Prometheus's PromQL parser with its defaults (no experimental functions).
var promQL = parser.NewParser(parser.Options{})

// checkExpr parses an expression as MetricsQL and as PromQL, so that the dashboards run on
// VictoriaMetrics and on Prometheus, Thanos or Mimir alike, and checks every series name in it
// exists.
func (c *lintCtx) checkExpr(expr string, vars map[string]map[string]any) []error {
	if strings.TrimSpace(expr) == "" {
		return []error{fmt.Errorf("empty expression")}
	}
	s, errs := substitute(expr, vars)
	if _, err := promQL.ParseExpr(s); err != nil {
		errs = append(errs, fmt.Errorf("%q does not parse as PromQL (Prometheus, Thanos and Mimir could not run it): %w", expr, err))
	}
	e, err := metricsql.Parse(s)
	if err != nil {
		return append(errs, fmt.Errorf("%q does not parse: %w", expr, err))
	}
	for _, name := range metricNames(e) {
		if !c.known[name] {
			errs = append(errs, fmt.Errorf("%q: metric %s is neither exported nor recorded", expr, name))
		}
	}
	return errs
}

func (c *lintCtx) checkLabelValues(name any, q string, bad func(string, ...any)) {
	m := regexp.MustCompile(`^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$`).FindStringSubmatch(q)
	if m == nil {
		bad("variable %v: cannot read %q", name, q)
		return
	}
	for _, err := range c.checkExpr(m[1], nil) {
		bad("variable %v: %v", name, err)
	}
}

// metricNames returns the series names an expression selects.
func metricNames(e metricsql.Expr) []string {
	var names []string
	metricsql.VisitAll(e, func(x metricsql.Expr) {
		me, ok := x.(*metricsql.MetricExpr)
		if !ok {
			return
		}
		for _, group := range me.LabelFilterss {
			for _, lf := range group {
				if lf.Label == "__name__" && !lf.IsRegexp && !lf.IsNegative && !slices.Contains(names, lf.Value) {
					names = append(names, lf.Value)
				}
			}
		}
	})
	return names
}

// checkPluginQuery decodes a plugin target strictly into the query model and validates it.
func checkPluginQuery(target map[string]any, vars map[string]map[string]any) error {
	raw, err := json.Marshal(target)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var q PluginQuery
	if err := dec.Decode(&q); err != nil {
		return fmt.Errorf("not a usagemeter query: %w", err)
	}
	if err := q.Validate(); err != nil {
		return err
	}
	for _, field := range []string{q.Tenant, q.Meter, q.GroupBy, q.Period} {
		if _, errs := substitute(field, vars); len(errs) > 0 {
			return errs[0]
		}
	}
	return nil
}

func readCommitted(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("json", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no dashboards under json/: run `make dashboards`")
	}
	out := map[string]map[string]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

func TestDashboardsPassTheLinter(t *testing.T) {
	c := &lintCtx{known: knownMetrics(t)}
	for name, d := range readCommitted(t) {
		for _, p := range c.lint(d) {
			t.Errorf("%s: %s", name, p)
		}
	}
}

func TestEveryPluginQueryTypeHasAPanel(t *testing.T) {
	used := map[string]bool{}
	for _, d := range readCommitted(t) {
		for _, p := range allPanels(d) {
			targets, _ := p["targets"].([]any)
			for _, raw := range targets {
				tm, _ := raw.(map[string]any)
				if qt, ok := tm["queryType"].(string); ok {
					used[qt] = true
				}
			}
		}
	}
	for _, qt := range QueryTypes {
		if !used[qt] {
			t.Errorf("no panel uses plugin query type %s", qt)
		}
	}
}

// TestLinterCatchesBrokenDashboards breaks a generated dashboard in each way the linter must
// catch and checks that it says so.
func TestLinterCatchesBrokenDashboards(t *testing.T) {
	c := &lintCtx{known: knownMetrics(t)}
	files, err := Render()
	if err != nil {
		t.Fatal(err)
	}
	fresh := func(file string) map[string]any {
		var d map[string]any
		if err := json.Unmarshal(files[file], &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// firstPanel returns the first non-row panel whose datasource has the given type.
	firstPanel := func(d map[string]any, dsType string) map[string]any {
		for _, p := range allPanels(d) {
			if ds, ok := p["datasource"].(map[string]any); ok && ds["type"] == dsType {
				return p
			}
		}
		t.Fatalf("no %s panel", dsType)
		return nil
	}
	firstTarget := func(p map[string]any) map[string]any {
		return p["targets"].([]any)[0].(map[string]any)
	}
	cases := []struct {
		name, file, want string
		breakIt          func(d map[string]any)
	}{
		{"no datasource variable", "usage-overview.json", `no "datasource" template variable`, func(d map[string]any) {
			tl := d["templating"].(map[string]any)
			tl["list"] = slices.DeleteFunc(tl["list"].([]any), func(v any) bool { return v.(map[string]any)["name"] == DatasourceVar })
		}},
		{"no plugin variable", "billing.json", `there is no "plugin_datasource" variable`, func(d map[string]any) {
			tl := d["templating"].(map[string]any)
			tl["list"] = slices.DeleteFunc(tl["list"].([]any), func(v any) bool { return v.(map[string]any)["name"] == PluginDatasourceVar })
		}},
		{"panel without unit", "ai-tokens.json", "has no unit", func(d map[string]any) {
			delete(firstPanel(d, PrometheusType)["fieldConfig"].(map[string]any)["defaults"].(map[string]any), "unit")
		}},
		{"panel without description", "ai-tokens.json", "has no description", func(d map[string]any) {
			firstPanel(d, PrometheusType)["description"] = ""
		}},
		{"panel without title", "ai-tokens.json", "has no title", func(d map[string]any) {
			delete(firstPanel(d, PrometheusType), "title")
		}},
		{"hard-coded datasource", "usage-overview.json", "is neither", func(d map[string]any) {
			firstPanel(d, PrometheusType)["datasource"] = map[string]any{"type": "prometheus", "uid": "victoriametrics"}
		}},
		{"metric panel on the plugin variable", "usage-overview.json", "is neither", func(d map[string]any) {
			firstPanel(d, PrometheusType)["datasource"] = map[string]any{"type": "prometheus", "uid": "${plugin_datasource}"}
		}},
		{"query on another datasource", "tenant.json", "differs from the panel's", func(d map[string]any) {
			firstTarget(firstPanel(d, PrometheusType))["datasource"] = map[string]any{"type": "prometheus", "uid": "other"}
		}},
		{"misspelt metric", "ai-tokens.json", "usage_ai_token_total is neither exported nor recorded", func(d map[string]any) {
			tg := firstTarget(firstPanel(d, PrometheusType))
			tg["expr"] = strings.Replace(tg["expr"].(string), "usage_ai_tokens_total", "usage_ai_token_total", 1)
		}},
		{"misspelt recording rule", "ai-tokens.json", "is neither exported nor recorded", func(d map[string]any) {
			firstTarget(firstPanel(d, PrometheusType))["expr"] = `tenant_feature:usage_ai_tokens:rate1m`
		}},
		{"expression that does not parse", "ai-tokens.json", "does not parse", func(d map[string]any) {
			firstTarget(firstPanel(d, PrometheusType))["expr"] = `sum by (tenant (rate(usage_ai_tokens_total[5m]))`
		}},
		{"unknown function", "ai-tokens.json", "does not parse", func(d map[string]any) {
			firstTarget(firstPanel(d, PrometheusType))["expr"] = `rates(usage_ai_tokens_total[5m])`
		}},
		{"MetricsQL-only function", "ai-tokens.json", "does not parse as PromQL", func(d map[string]any) {
			firstTarget(firstPanel(d, PrometheusType))["expr"] = `range_median(sum(rate(usage_ai_tokens_total[5m])))`
		}},
		{"undefined variable", "ai-tokens.json", "$team, which is not a template variable", func(d map[string]any) {
			firstTarget(firstPanel(d, PrometheusType))["expr"] = `sum(usage_ai_tokens_total{tenant=~"$team"})`
		}},
		{"unknown plugin query type", "billing.json", "is not one of", func(d map[string]any) {
			firstTarget(firstPanel(d, PluginType))["queryType"] = "revenue"
		}},
		{"unknown plugin query field", "billing.json", "not a usagemeter query", func(d map[string]any) {
			firstTarget(firstPanel(d, PluginType))["tenants"] = "$tenant"
		}},
		{"misspelt tenant variable metric", "tenant.json", "usage_tenant_infos is neither", func(d map[string]any) {
			for _, v := range d["templating"].(map[string]any)["list"].([]any) {
				if vm := v.(map[string]any); vm["name"] == "tenant" {
					vm["query"] = "label_values(usage_tenant_infos, tenant)"
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := fresh(tc.file)
			if problems := c.lint(d); len(problems) > 0 {
				t.Fatalf("the unbroken %s already fails: %v", tc.file, problems)
			}
			tc.breakIt(d)
			problems := c.lint(d)
			for _, p := range problems {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("want a problem containing %q, got %q", tc.want, problems)
		})
	}
}

// TestOverviewCoversEveryMeter: the SRE overview shows every default meter that has a metric.
func TestOverviewCoversEveryMeter(t *testing.T) {
	d := readCommitted(t)["usage-overview.json"]
	var exprs []string
	for _, p := range allPanels(d) {
		targets, _ := p["targets"].([]any)
		for _, raw := range targets {
			if e, ok := raw.(map[string]any)["expr"].(string); ok {
				exprs = append(exprs, e)
			}
		}
	}
	all := strings.Join(exprs, "\n")
	for _, m := range meter.Defaults() {
		if m.Metric != nil && !regexp.MustCompile(`\b`+m.Metric.Name+`\b`).MatchString(all) {
			t.Errorf("the overview has no panel for meter %s (%s)", m.Name, m.Metric.Name)
		}
	}
}

// Package dashboards generates usagemeter's Grafana dashboards from Go with
// grafana-foundation-sdk. The JSON is committed under json/ (Grafana provisions it from there);
// `make dashboards` regenerates it, and a test fails when the committed files are stale.
//
// Metric panels query VictoriaMetrics through the Prometheus datasource chosen in the `datasource`
// template variable; billing, report and audit panels query the usagemeter plugin through the
// `plugin_datasource` variable.
package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Template variable names. The linter test checks every panel against them.
const (
	DatasourceVar       = "datasource"
	PluginDatasourceVar = "plugin_datasource"
	// PrometheusType is the datasource type VictoriaMetrics is provisioned as.
	PrometheusType = "prometheus"
)

// Spec is one dashboard: the file it is written to under json/, and how to build it.
type Spec struct {
	File  string
	Build func() (dashboard.Dashboard, error)
}

// All returns every dashboard, in a fixed order.
func All() []Spec {
	return []Spec{
		{"usage-overview.json", overview},
		{"tenant.json", tenantDrilldown},
		{"ai-tokens.json", aiTokens},
		{"storage-documents.json", storageDocuments},
		{"ingestion.json", ingestion},
		{"quotas-alerts.json", quotasAlerts},
		{"billing.json", billing},
		{"executive.json", executive},
		{"compliance.json", compliance},
	}
}

// Render builds every dashboard and returns its JSON by file name.
func Render() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, s := range All() {
		d, err := s.Build()
		if err != nil {
			return nil, fmt.Errorf("building %s: %w", s.File, err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		// PromQL comparisons (>, <) stay readable in the committed JSON.
		enc.SetEscapeHTML(false)
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("encoding %s: %w", s.File, err)
		}
		out[s.File] = buf.Bytes()
	}
	return out, nil
}

// Write renders every dashboard into dir and removes JSON files there that are no longer
// generated, so a renamed dashboard does not linger in Grafana.
func Write(dir string) error {
	files, err := Render()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	for _, p := range old {
		if _, keep := files[filepath.Base(p)]; !keep {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// --- datasources and variables ---

func vmRef() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr(PrometheusType), Uid: cog.ToPtr("${" + DatasourceVar + "}")}
}

func pluginRef() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr(PluginType), Uid: cog.ToPtr("${" + PluginDatasourceVar + "}")}
}

func datasourceVar() cog.Builder[dashboard.VariableModel] {
	return dashboard.NewDatasourceVariableBuilder(DatasourceVar).
		Label("VictoriaMetrics").
		Description("The VictoriaMetrics (Prometheus API) datasource the metric panels query.").
		Type(PrometheusType)
}

func pluginDatasourceVar() cog.Builder[dashboard.VariableModel] {
	return dashboard.NewDatasourceVariableBuilder(PluginDatasourceVar).
		Label("usagemeter").
		Description("The usagemeter plugin datasource the billing, report and audit panels query.").
		Type(PluginType)
}

// tenantMode says how many tenants a dashboard's tenant variable selects.
type tenantMode int

const (
	// oneTenant: exactly one (drill-down); queries match tenant="$tenant".
	oneTenant tenantMode = iota
	// oneOrAll: one tenant or All (".*"); metric queries match tenant=~"$tenant", and plugin
	// queries get one tenant id or ".*" for every tenant.
	oneOrAll
	// manyTenants: any set of tenants, or All; only for dashboards without plugin panels.
	manyTenants
)

// tenantVar lists the tenants the exporter knows (usage_tenant_info has one series per tenant).
func tenantVar(mode tenantMode) cog.Builder[dashboard.VariableModel] {
	b := dashboard.NewQueryVariableBuilder("tenant").
		Label("Tenant").
		Description("Tenants known to the exporter (usage_tenant_info).").
		Datasource(vmRef()).
		Query(dashboard.StringOrMap{String: cog.ToPtr("label_values(usage_tenant_info, tenant)")}).
		Definition("label_values(usage_tenant_info, tenant)").
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
	if mode != oneTenant {
		// ".*" rather than Grafana's list of every value: a regex of thousands of tenants would
		// make every query slow.
		b = b.IncludeAll(true).AllValue(".*")
	}
	if mode == manyTenants {
		b = b.Multi(true)
	}
	return b
}

// meterVar offers the default meters that have a metric (exporter/meter), for plugin panels
// that take one meter: the plugin reads their series from VictoriaMetrics.
func meterVar() cog.Builder[dashboard.VariableModel] {
	var names []string
	for _, d := range meter.Defaults() {
		if d.Metric != nil {
			names = append(names, d.Name)
		}
	}
	return dashboard.NewCustomVariableBuilder("meter").
		Label("Meter").
		Description("The meter the usage, forecast and top-user panels show.").
		Values(dashboard.StringOrMap{String: cog.ToPtr(strings.Join(names, ","))}).
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr("ai_tokens")},
			Value: dashboard.StringOrArrayOfString{String: cog.ToPtr("ai_tokens")},
		})
}

// periodVar is the aggregation window of plugin panels, the values of /v1/usage's window.
func periodVar() cog.Builder[dashboard.VariableModel] {
	return dashboard.NewCustomVariableBuilder("period").
		Label("Period").
		Description("Aggregation window of the plugin panels: hour, day or month.").
		Values(dashboard.StringOrMap{String: cog.ToPtr("day,hour,month")}).
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr("day")},
			Value: dashboard.StringOrArrayOfString{String: cog.ToPtr("day")},
		})
}

// --- panels ---

type kind int

const (
	timeseriesKind kind = iota
	statKind
	tableKind
	bargaugeKind
)

// target is one query of a panel: a MetricsQL expression for VictoriaMetrics, or a plugin query.
type target struct {
	expr    string
	legend  string
	instant bool
	plugin  *PluginQuery
}

func q(expr, legend string) target       { return target{expr: expr, legend: legend} }
func instant(expr, legend string) target { return target{expr: expr, legend: legend, instant: true} }
func pq(p PluginQuery) target            { return target{plugin: &p} }

// panel is what every panel of these dashboards declares: the linter's rules (title,
// description, unit, datasource) are required fields here, so forgetting one fails the build.
type panel struct {
	kind              kind
	title, desc, unit string
	w, h              uint32
	targets           []target
	stacked           bool
	// ratio panels (quotas) get 0..max and warning/critical thresholds.
	thresholds []float64
	max        *float64
	// id is assigned by board.
	id uint32
	// showName: a stat shows the series name (its legend) instead of the value, e.g. the plan.
	showName bool
}

// panelBuilder is what the SDK's per-visualization panel builders have in common.
type panelBuilder[T any] interface {
	cog.Builder[dashboard.Panel]
	Id(uint32) T
	Title(string) T
	Description(string) T
	Unit(string) T
	Datasource(common.DataSourceRef) T
	Height(uint32) T
	Span(uint32) T
	Min(float64) T
	Max(float64) T
	Thresholds(cog.Builder[dashboard.ThresholdsConfig]) T
	WithTarget(cog.Builder[variants.Dataquery]) T
	WithTransformation(dashboard.DataTransformerConfig) T
}

// errPanel carries an error through the SDK's builder chain.
type errPanel struct{ err error }

func (e errPanel) Build() (dashboard.Panel, error) {
	return dashboard.Panel{}, cog.MakeBuildErrors("panel", e.err)
}

func configure[T panelBuilder[T]](b T, p panel) cog.Builder[dashboard.Panel] {
	// Unique ids: Grafana keys panel state (edit, view, links) on them.
	b.Id(p.id)
	if p.title == "" || p.desc == "" || p.unit == "" {
		return errPanel{fmt.Errorf("panel %q: title, description and unit are required", p.title)}
	}
	if len(p.targets) == 0 {
		return errPanel{fmt.Errorf("panel %q has no query", p.title)}
	}
	plugin := p.targets[0].plugin != nil
	b.Title(p.title)
	b.Description(p.desc)
	b.Unit(p.unit)
	b.Height(p.h)
	b.Span(p.w)
	ref := vmRef()
	if plugin {
		ref = pluginRef()
	}
	b.Datasource(ref)
	tableFormat := p.kind == tableKind
	for i, t := range p.targets {
		refID := string(rune('A' + i))
		if (t.plugin != nil) != plugin {
			return errPanel{fmt.Errorf("panel %q mixes plugin and metric queries", p.title)}
		}
		if t.plugin != nil {
			query := *t.plugin
			query.RefID = refID
			query.Datasource = &ref
			b.WithTarget(pluginQueryBuilder{query})
			continue
		}
		mq := prometheus.NewDataqueryBuilder().
			RefId(refID).
			Datasource(ref).
			Expr(t.expr).
			LegendFormat(t.legend)
		if t.instant {
			mq.Instant()
		} else {
			mq.Range()
		}
		if tableFormat {
			mq.Format(prometheus.PromQueryFormatTable)
		}
		b.WithTarget(mq)
	}
	if tableFormat && !plugin && len(p.targets) > 1 {
		// One row per label set, a column per query.
		b.WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}})
	}
	if len(p.thresholds) > 0 {
		steps := []dashboard.Threshold{{Color: "green"}}
		colors := []string{"orange", "red"}
		for i, v := range p.thresholds {
			steps = append(steps, dashboard.Threshold{Value: cog.ToPtr(v), Color: colors[min(i, len(colors)-1)]})
		}
		b.Thresholds(dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps))
	}
	if p.unit == "percentunit" && len(p.thresholds) > 0 {
		// Ratios of a limit start at 0; other thresholded values (z-scores) can be negative.
		b.Min(0)
	}
	if p.max != nil {
		b.Max(*p.max)
	}
	return b
}

func build(p panel) cog.Builder[dashboard.Panel] {
	if p.w == 0 {
		p.w = 12
	}
	if p.h == 0 {
		p.h = 8
	}
	last := common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)
	switch p.kind {
	case statKind:
		b := stat.NewPanelBuilder().ReduceOptions(last).GraphMode(common.BigValueGraphModeArea).
			Orientation(common.VizOrientationAuto)
		if p.showName {
			b.TextMode(common.BigValueTextModeName).GraphMode(common.BigValueGraphModeNone)
		}
		return configure(b, p)
	case tableKind:
		b := table.NewPanelBuilder().
			Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"sum"}))
		return configure(b, p)
	case bargaugeKind:
		b := bargauge.NewPanelBuilder().ReduceOptions(last).
			DisplayMode(common.BarGaugeDisplayModeGradient).Orientation(common.VizOrientationHorizontal)
		return configure(b, p)
	default:
		b := timeseries.NewPanelBuilder().FillOpacity(10).
			Legend(common.NewVizLegendOptionsBuilder().ShowLegend(true).
				DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom)).
			Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
		if p.stacked {
			b.FillOpacity(40).Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))
		}
		return configure(b, p)
	}
}

// board assembles a dashboard. rows: a title followed by its panels.
type row struct {
	title  string
	panels []panel
}

func board(uid, title, desc string, tags []string, vars []cog.Builder[dashboard.VariableModel], rows ...row) (dashboard.Dashboard, error) {
	b := dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(desc).
		Tags(append([]string{"usagemeter"}, tags...)).
		Editable().
		Refresh("1m").
		Time("now-24h", "now").
		Timezone("utc").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(topLink{dashboard.NewDashboardLinkBuilder("usagemeter").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"usagemeter"}).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true)})
	for _, v := range vars {
		b.WithVariable(v)
	}
	id := uint32(0)
	for _, r := range rows {
		id++
		b.WithRow(dashboard.NewRowBuilder(r.title).Id(id))
		for _, p := range r.panels {
			id++
			p.id = id
			b.WithPanel(build(p))
		}
	}
	return b.Build()
}

// topLink shows a dashboard link above the panels: the SDK defaults links to Grafana's
// controls menu, where they are easy to miss.
type topLink struct {
	b cog.Builder[dashboard.DashboardLink]
}

func (l topLink) Build() (dashboard.DashboardLink, error) {
	link, err := l.b.Build()
	link.Placement = nil
	return link, err
}

// vars lists the variables a dashboard needs: always the VictoriaMetrics datasource (it also
// feeds the tenant list), the plugin datasource when plugin panels are present.
func vars(plugin bool, more ...cog.Builder[dashboard.VariableModel]) []cog.Builder[dashboard.VariableModel] {
	v := []cog.Builder[dashboard.VariableModel]{datasourceVar()}
	if plugin {
		v = append(v, pluginDatasourceVar())
	}
	return append(v, more...)
}

// ptr is a float pointer for panel.max.
func ptr(f float64) *float64 { return &f }

// Package report builds usagemeter's reports: the usage report (any period, any tenant or all,
// every meter), the executive summary (one PDF page of KPIs, trends, top movers, a forecast and
// insights) and the compliance report (data held, retention, the access audit and the
// verification of its chain), in CSV, JSON, PDF and XLSX. A report definition (YAML or JSON)
// chooses the meters, groupings, period and filters.
package report

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/exporter/api/timeparse"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// Kinds of report.
const (
	KindUsage      = "usage"
	KindExecutive  = "executive"
	KindCompliance = "compliance"
)

// Period is a report's time range: explicit From/To (RFC 3339, on hours), a calendar Month
// ("2026-10"), or Last ("24h", "7d", "30d", "90d", "365d", "month": the last complete calendar
// month, "mtd": the current month to date, "ytd").
type Period struct {
	From  time.Time `yaml:"from,omitempty" json:"from,omitzero"`
	To    time.Time `yaml:"to,omitempty" json:"to,omitzero"`
	Month string    `yaml:"month,omitempty" json:"month,omitempty"`
	Last  string    `yaml:"last,omitempty" json:"last,omitempty"`
}

// Definition customises a report.
type Definition struct {
	Name   string `yaml:"name" json:"name"`
	Kind   string `yaml:"kind" json:"kind"`     // usage (default), executive, compliance
	Format string `yaml:"format" json:"format"` // csv (default), json, pdf, xlsx
	// Tenants to include; empty means every tenant with usage in the period.
	Tenants []string `yaml:"tenants" json:"tenants"`
	// Meters to include; empty means every meter.
	Meters []string `yaml:"meters" json:"meters"`
	// GroupBy lists dimensions (e.g. model, user); a meter is grouped by those it has.
	GroupBy []string `yaml:"group_by" json:"group_by"`
	// Window is hour, day, month (default) or none (one row for the whole period).
	Window string `yaml:"window" json:"window"`
	Period Period `yaml:"period" json:"period"`
	// Filters keep only rows whose dimension takes one of the values. A meter without a
	// filtered dimension is left out of the report.
	Filters map[string][]string `yaml:"filters" json:"filters"`
}

// Parse reads a definition in YAML or JSON (JSON is YAML), rejecting unknown fields.
func Parse(data []byte) (Definition, error) {
	var d Definition
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&d); err != nil {
		return d, fmt.Errorf("report definition: %w", timeparse.Explain(err))
	}
	return d, d.Check()
}

// Check validates the definition's fields that do not need the ledger.
func (d *Definition) Check() error {
	if d.Kind == "" {
		d.Kind = KindUsage
	}
	switch d.Kind {
	case KindUsage, KindExecutive, KindCompliance:
	default:
		return fmt.Errorf("report definition: kind %q must be usage, executive or compliance", d.Kind)
	}
	if d.Format == "" {
		d.Format = CSV
		if d.Kind == KindExecutive {
			d.Format = PDF
		}
	}
	if err := CheckFormat(d.Format); err != nil {
		return fmt.Errorf("report definition: %w", err)
	}
	switch d.Window {
	case "":
		d.Window = ledger.WindowMonth
	case WindowNone, ledger.WindowHour, ledger.WindowDay, ledger.WindowMonth:
	default:
		return fmt.Errorf("report definition: window %q must be hour, day, month or none", d.Window)
	}
	for k, vs := range d.Filters {
		if len(vs) == 0 {
			return fmt.Errorf("report definition: filter %q lists no values", k)
		}
	}
	return nil
}

// WindowNone asks for one row for the whole period.
const WindowNone = "none"

// ledgerWindow is the ledger's name of a report window.
func ledgerWindow(w string) string {
	if w == WindowNone {
		return ledger.WindowNone
	}
	return w
}

// Resolve turns the period into [from, to) on hour boundaries, relative to now.
func (p Period) Resolve(now time.Time) (time.Time, time.Time, error) {
	now = now.UTC()
	hour := now.Truncate(time.Hour)
	monthStart := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	var from, to time.Time
	switch {
	case !p.From.IsZero() || !p.To.IsZero():
		from, to = p.From.UTC(), p.To.UTC()
		if to.IsZero() {
			to = hour.Add(time.Hour)
		}
	case p.Month != "":
		m, err := time.Parse("2006-01", p.Month)
		if err != nil {
			return from, to, fmt.Errorf("period.month %q: want YYYY-MM", p.Month)
		}
		from, to = m, m.AddDate(0, 1, 0)
	case p.Last == "" || p.Last == "month":
		from, to = monthStart.AddDate(0, -1, 0), monthStart
	case p.Last == "mtd":
		from, to = monthStart, hour.Add(time.Hour)
	case p.Last == "ytd":
		from, to = time.Date(now.Year(), 1, 1, 0, 0, 0, 0, time.UTC), hour.Add(time.Hour)
	default:
		var n int
		var unit string
		if _, err := fmt.Sscanf(p.Last, "%d%s", &n, &unit); err != nil || n <= 0 || (unit != "h" && unit != "d") {
			return from, to, fmt.Errorf("period.last %q: want Nh, Nd, month, mtd or ytd", p.Last)
		}
		step := time.Hour
		if unit == "d" {
			step = 24 * time.Hour
		}
		to = hour.Add(time.Hour)
		if unit == "d" {
			to = now.Truncate(24 * time.Hour)
		}
		from = to.Add(-time.Duration(n) * step)
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("period: from %s must be before to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if from.Truncate(time.Hour) != from || to.Truncate(time.Hour) != to {
		return from, to, fmt.Errorf("period: from and to must lie on hour boundaries (usage is rolled up hourly)")
	}
	return from, to, nil
}

// meterPlan is how one meter is queried for a report.
type meterPlan struct {
	name, unit, kind string
	groupBy          []string // report groupings the meter has
	query            []string // groupBy plus filtered dimensions
	filters          map[string]map[string]bool
	unique           bool
}

// plan resolves the meters of a definition against the ledger's.
func (d *Definition) plan(st *ledger.Store) ([]meterPlan, error) {
	names := d.Meters
	if len(names) == 0 {
		for _, m := range st.Meters() {
			names = append(names, m.Name)
		}
	}
	var out []meterPlan
	for _, n := range names {
		def, ok := st.Meter(n)
		if !ok {
			return nil, fmt.Errorf("report definition: unknown meter %q", n)
		}
		mp := meterPlan{name: n, unit: def.Unit, kind: string(def.Kind), unique: def.Aggregation == "unique_count", filters: map[string]map[string]bool{}}
		for _, g := range d.GroupBy {
			if slices.Contains(def.Dimensions, g) {
				mp.groupBy = append(mp.groupBy, g)
			}
		}
		mp.query = slices.Clone(mp.groupBy)
		skip := false
		keys := make([]string, 0, len(d.Filters))
		for k := range d.Filters {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !slices.Contains(def.Dimensions, k) {
				skip = true
				break
			}
			set := map[string]bool{}
			for _, v := range d.Filters[k] {
				set[v] = true
			}
			mp.filters[k] = set
			if !slices.Contains(mp.query, k) {
				if mp.unique {
					// Distinct counts cannot be added up across filtered groups: keep the
					// filtered dimension as a grouping of its own.
					mp.groupBy = append(mp.groupBy, k)
				}
				mp.query = append(mp.query, k)
			}
		}
		if !skip {
			out = append(out, mp)
		}
	}
	return out, nil
}

// Columns of the usage report for a definition: fixed columns, then every grouping.
func (d *Definition) columns() []string {
	cols := []string{"tenant", "meter", "unit", "kind", "window_start", "window_end"}
	cols = append(cols, d.GroupBy...)
	for k := range d.Filters {
		if !slices.Contains(d.GroupBy, k) {
			// unique_count meters keep filtered dimensions as groups: give them a column.
			cols = append(cols, k)
		}
	}
	sort.Strings(cols[6+len(d.GroupBy):])
	return append(cols, "value")
}

// UsesUsers says whether the report exposes per-user detail.
func (d *Definition) UsesUsers() bool {
	return slices.Contains(d.GroupBy, "user") || d.Filters["user"] != nil
}

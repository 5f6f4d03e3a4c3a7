package report

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// Source is what reports read.
type Source struct {
	Store *ledger.Store
	// Workers bounds the tenants read concurrently (default GOMAXPROCS).
	Workers int
	// TenantName is a tenant's display name (config tenants[].name), "" when it has none. Reports
	// people read (the executive summary) show it instead of the id. May be nil.
	TenantName func(tenant string) string
}

// tenants returns the definition's tenants, or every tenant the ledger knows (flow usage in the
// period, or any level ever held).
func (s *Source) tenants(ctx context.Context, d *Definition, from, to time.Time) ([]string, error) {
	if len(d.Tenants) > 0 {
		out := slices.Clone(d.Tenants)
		sort.Strings(out)
		return slices.Compact(out), nil
	}
	ts, err := s.Store.Tenants(ctx, from, to)
	if err != nil {
		return nil, err
	}
	ts = append(ts, s.Store.KnownTenants()...)
	sort.Strings(ts)
	return slices.Compact(ts), nil
}

type usageRow struct {
	meter       *meterPlan
	start, end  time.Time
	groupValues []string // by report column order of groupings
	value       int64
}

// UsageStats counts the rows and tenants of a usage report run.
type UsageStats struct {
	Tenants, Rows int
}

// Usage writes the usage report of a definition: one row per tenant, meter, window and group.
// Tenants are read concurrently and written in order as soon as each is complete, so the first
// rows reach the client while later tenants are still being read.
func (s *Source) Usage(ctx context.Context, d Definition, now time.Time, t Tables) (UsageStats, error) {
	var stats UsageStats
	if err := d.Check(); err != nil {
		return stats, err
	}
	from, to, err := d.Period.Resolve(now)
	if err != nil {
		return stats, err
	}
	plans, err := d.plan(s.Store)
	if err != nil {
		return stats, err
	}
	tenants, err := s.tenants(ctx, &d, from, to)
	if err != nil {
		return stats, err
	}
	cols := d.columns()
	groupCols := cols[6 : len(cols)-1]
	notes := []string{fmt.Sprintf("period %s to %s; window %s; %d tenants; flow meters: usage inside each window; stock meters: level at each window's end; unique_count: distinct users in each window",
		from.Format(time.RFC3339), to.Format(time.RFC3339), windowName(d.Window), len(tenants))}
	if len(d.Filters) > 0 {
		var fs []string
		for k, v := range d.Filters {
			fs = append(fs, k+" in ("+strings.Join(v, ", ")+")")
		}
		sort.Strings(fs)
		notes = append(notes, "filters: "+strings.Join(fs, "; "))
	}
	if err := t.Begin("Usage", cols, notes...); err != nil {
		return stats, err
	}
	months, err := s.monthTotals(ctx, plans, &d, from, to)
	if err != nil {
		return stats, err
	}
	workers := s.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		rows []usageRow
		err  error
	}
	results := make([]chan result, len(tenants))
	for i := range results {
		results[i] = make(chan result, 1)
	}
	// At most 2×workers tenants are read ahead of the writer: memory stays bounded when the
	// client reads slowly.
	ahead := make(chan struct{}, 2*workers)
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range tenants {
			select {
			case ahead <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range workers {
		go func() {
			for i := range next {
				rows, err := s.tenantRows(ctx, tenants[i], plans, groupCols, &d, from, to, months)
				results[i] <- result{rows, err}
			}
		}()
	}
	// Every tenant and meter repeats the same window bounds: box each time.Time once.
	boxes := map[time.Time]any{}
	boxed := func(t time.Time) any {
		b, ok := boxes[t]
		if !ok {
			if len(boxes) > 1<<16 {
				clear(boxes)
			}
			b = t
			boxes[t] = b
		}
		return b
	}
	vals := make([]any, len(cols))
	for i, tenant := range tenants {
		var r result
		select {
		case r = <-results[i]:
		case <-ctx.Done():
			return stats, ctx.Err()
		}
		<-ahead
		if r.err != nil {
			return stats, fmt.Errorf("usage report, tenant %s: %w", tenant, r.err)
		}
		stats.Tenants++
		for _, row := range r.rows {
			vals[0], vals[1], vals[2], vals[3] = tenant, row.meter.name, row.meter.unit, row.meter.kind
			vals[4], vals[5] = boxed(row.start), boxed(row.end)
			for j, g := range row.groupValues {
				vals[6+j] = g
			}
			vals[len(vals)-1] = row.value
			if err := t.Row(vals...); err != nil {
				return stats, err
			}
			stats.Rows++
		}
	}
	return stats, nil
}

func windowName(w string) string {
	if w == WindowNone {
		return "none (whole period)"
	}
	return w
}

func isMonthStart(t time.Time) bool {
	return t.Day() == 1 && t.Hour() == 0 && t.Minute() == 0 && t.Second() == 0 && t.Nanosecond() == 0
}

// monthTotal reports whether a meter's rows come from the ledger's month totals: whole calendar
// months of a flow meter, ungrouped and unfiltered.
func monthTotal(mp *meterPlan, d *Definition, from, to time.Time) bool {
	return mp.kind == "flow" && !mp.unique && len(mp.query) == 0 && d.Window == ledger.WindowMonth && isMonthStart(from) && isMonthStart(to)
}

// monthTotals reads, once for all tenants, the month totals the report needs: month →
// meter\0tenant → value (nil when no meter needs them).
func (s *Source) monthTotals(ctx context.Context, plans []meterPlan, d *Definition, from, to time.Time) (map[time.Time]map[string]int64, error) {
	need := map[string]bool{}
	for i := range plans {
		if monthTotal(&plans[i], d, from, to) {
			need[plans[i].name] = true
		}
	}
	if len(need) == 0 {
		return nil, nil
	}
	out := map[time.Time]map[string]int64{}
	for m := from; m.Before(to); m = m.AddDate(0, 1, 0) {
		vals := map[string]int64{}
		err := s.Store.MonthTotals(ctx, m, func(meterName, tenant string, v int64) {
			if need[meterName] {
				vals[meterName+"\x00"+tenant] = v
			}
		})
		if err != nil {
			return nil, fmt.Errorf("reading month totals of %s: %w", m.Format("2006-01"), err)
		}
		out[m] = vals
	}
	return out, nil
}

// tenantRows reads every meter of one tenant.
func (s *Source) tenantRows(ctx context.Context, tenant string, plans []meterPlan, groupCols []string, d *Definition, from, to time.Time, months map[time.Time]map[string]int64) ([]usageRow, error) {
	var out []usageRow
	for pi := range plans {
		mp := &plans[pi]
		// Whole calendar months of a flow meter, ungrouped: from the month totals read once for
		// every tenant, instead of a scan of hourly rollups.
		if monthTotal(mp, d, from, to) {
			for m := from; m.Before(to); m = m.AddDate(0, 1, 0) {
				if v := months[m][mp.name+"\x00"+tenant]; v != 0 {
					out = append(out, usageRow{meter: mp, start: m, end: m.AddDate(0, 1, 0), groupValues: make([]string, len(groupCols)), value: v})
				}
			}
			continue
		}
		q := ledger.Query{Meter: mp.name, Tenant: tenant, From: from, To: to, GroupBy: mp.query, Window: ledgerWindow(d.Window)}
		var rows []ledger.Row
		var err error
		if len(q.GroupBy) == 0 {
			rows, err = s.Store.UngroupedUsage(ctx, q) // same rows as Usage, cheaper
		} else {
			rows, err = s.Store.Usage(ctx, q)
		}
		if err != nil {
			return nil, err
		}
		if len(mp.query) == len(mp.groupBy) && len(mp.filters) == 0 {
			for _, r := range rows {
				out = append(out, usageRow{meter: mp, start: r.WindowStart, end: r.WindowEnd, groupValues: groupValues(r.Group, mp.groupBy, groupCols), value: r.Value})
			}
			continue
		}
		// Filter, then add up the rows that differ only in filtered dimensions.
		idx := map[string]int{}
		for _, r := range rows {
			keep := true
			for k, set := range mp.filters {
				if !set[r.Group[k]] {
					keep = false
					break
				}
			}
			if !keep {
				continue
			}
			gv := groupValues(r.Group, mp.groupBy, groupCols)
			key := r.WindowStart.String() + "\x00" + strings.Join(gv, "\x00")
			if i, ok := idx[key]; ok {
				out[i].value += r.Value
				continue
			}
			idx[key] = len(out)
			out = append(out, usageRow{meter: mp, start: r.WindowStart, end: r.WindowEnd, groupValues: gv, value: r.Value})
		}
	}
	return out, nil
}

// groupValues places a row's groups in the report's grouping columns ("" where the meter lacks
// the dimension).
func groupValues(g map[string]string, have, cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		if slices.Contains(have, c) {
			out[i] = g[c]
		}
	}
	return out
}

// Validate checks a usage report definition against the ledger without reading any usage, so
// that an HTTP handler can answer 400 before it starts streaming.
func (s *Source) Validate(d *Definition, now time.Time) error {
	if err := d.Check(); err != nil {
		return err
	}
	if _, _, err := d.Period.Resolve(now); err != nil {
		return err
	}
	_, err := d.plan(s.Store)
	return err
}

package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Windows of /v1/usage.
const (
	WindowNone  = ""
	WindowHour  = "hour"
	WindowDay   = "day"
	WindowMonth = "month"
)

// Query asks for a meter's exact usage by one tenant.
type Query struct {
	Meter, Tenant string
	From, To      time.Time // [From, To), on hour boundaries: rollups are hourly
	GroupBy       []string  // meter dimensions
	Window        string    // WindowNone: one row per group for the whole range
	// Where keeps only usage whose dimensions have these values (e.g. {"user": "alice"}).
	Where map[string]string
	// Location is the time zone whose calendar day and month windows follow, so that a tenant
	// sees its own days; nil is UTC. Rows carry their windows in it. Its day boundaries must fall
	// on UTC hours, the rollups' grain: zones offset by a fraction of an hour are refused.
	Location *time.Location
}

// Row is one answer row.
type Row struct {
	WindowStart time.Time         `json:"window_start"`
	WindowEnd   time.Time         `json:"window_end"`
	Group       map[string]string `json:"group"`
	Value       int64             `json:"value"`
}

// QueryError is a query the caller got wrong.
type QueryError struct{ Field, Msg string }

func (e *QueryError) Error() string { return e.Field + ": " + e.Msg }

// Meter returns the definition of a meter.
func (s *Store) Meter(name string) (*meter.Def, bool) {
	cm, ok := s.byName[name]
	if !ok {
		return nil, false
	}
	return &cm.Def, true
}

func (s *Store) checkQuery(q *Query) (*cmeter, error) {
	cm, ok := s.byName[q.Meter]
	if !ok {
		return nil, &QueryError{"meter", fmt.Sprintf("unknown meter %q", q.Meter)}
	}
	if q.Tenant == "" {
		return nil, &QueryError{"tenant", "required"}
	}
	if !q.From.Before(q.To) {
		return nil, &QueryError{"from", "must be before to"}
	}
	if q.From.Unix()%hourSecs != 0 || q.From.Nanosecond() != 0 {
		return nil, &QueryError{"from", "must be on an hour boundary (usage is rolled up hourly)"}
	}
	if q.To.Unix()%hourSecs != 0 || q.To.Nanosecond() != 0 {
		return nil, &QueryError{"to", "must be on an hour boundary (usage is rolled up hourly)"}
	}
	for _, g := range q.GroupBy {
		if !slices.Contains(cm.Dimensions, g) {
			return nil, &QueryError{"group_by", fmt.Sprintf("%q is not a dimension of meter %s (it keeps %s)", g, cm.Name, strings.Join(cm.Dimensions, ", "))}
		}
	}
	for d := range q.Where {
		if !slices.Contains(cm.Dimensions, d) {
			return nil, &QueryError{"where", fmt.Sprintf("%q is not a dimension of meter %s", d, cm.Name)}
		}
	}
	switch q.Window {
	case WindowNone, WindowHour, WindowDay, WindowMonth:
	default:
		return nil, &QueryError{"window", fmt.Sprintf("%q must be hour, day or month", q.Window)}
	}
	if q.Location != nil && (q.Window == WindowDay || q.Window == WindowMonth) {
		for _, end := range windowBoundaries(q.Window, q.From, q.To, q.Location) {
			if end.Unix()%hourSecs != 0 {
				return nil, &QueryError{"tz", fmt.Sprintf("%s: a %s begins at %s, which is not on a UTC hour; usage is rolled up by the hour, so %s windows need a zone whose offset is whole hours",
					q.Location, q.Window, end.Format(time.RFC3339), q.Window)}
			}
		}
	}
	return cm, nil
}

// locationOf is a query's time zone: UTC unless it names one.
func locationOf(q *Query) *time.Location {
	if q.Location == nil {
		return time.UTC
	}
	return q.Location
}

// windowOf returns the window [start, end) containing t, clipped to [from, to), in loc: days and
// months are loc's calendar days and months (23 or 25 hours long across a daylight saving change).
func windowOf(window string, t, from, to time.Time, loc *time.Location) (time.Time, time.Time) {
	var start, end time.Time
	lt := t.In(loc)
	switch window {
	case WindowHour:
		start = t.Truncate(time.Hour)
		end = start.Add(time.Hour)
	case WindowDay:
		start = time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, loc)
		end = time.Date(lt.Year(), lt.Month(), lt.Day()+1, 0, 0, 0, 0, loc)
	case WindowMonth:
		start = time.Date(lt.Year(), lt.Month(), 1, 0, 0, 0, 0, loc)
		end = time.Date(lt.Year(), lt.Month()+1, 1, 0, 0, 0, 0, loc)
	default:
		return from.In(loc), to.In(loc)
	}
	if start.Before(from) {
		start = from
	}
	if end.After(to) {
		end = to
	}
	return start.In(loc), end.In(loc)
}

type cell struct {
	hour uint32
	dims []string
	st   meter.State
}

// Usage answers a query exactly from the rollups. Flow meters answer the aggregate inside each
// window; stock meters the level at the end of each window; unique_count meters the number of
// distinct identities inside each window.
func (s *Store) Usage(ctx context.Context, q Query) ([]Row, error) {
	cm, err := s.checkQuery(&q)
	if err != nil {
		return nil, err
	}
	if err := s.Flush(ctx); err != nil {
		return nil, err
	}
	q.From, q.To = q.From.UTC(), q.To.UTC()
	loc := locationOf(&q)
	groupIdx := make([]int, len(q.GroupBy))
	for i, g := range q.GroupBy {
		groupIdx[i] = slices.Index(cm.Dimensions, g)
	}
	type cond struct {
		idx   int
		value string
	}
	var where []cond
	for d, v := range q.Where {
		where = append(where, cond{slices.Index(cm.Dimensions, d), v})
	}
	keep := func(dims []string) bool {
		for _, c := range where {
			if dims[c.idx] != c.value {
				return false
			}
		}
		return true
	}
	groupKey := func(dims []string) string {
		var b strings.Builder
		for _, i := range groupIdx {
			b.WriteString(dims[i])
			b.WriteByte(0)
		}
		return b.String()
	}
	type acc struct {
		start, end time.Time
		group      string
		st         meter.State
		idents     map[string]struct{}
	}
	rows := map[string]*acc{}
	get := func(start, end time.Time, group string) *acc {
		k := start.Format(time.RFC3339) + "|" + group
		a := rows[k]
		if a == nil {
			a = &acc{start: start, end: end, group: group, st: meter.State{Agg: cm.tag}}
			rows[k] = a
		}
		return a
	}
	prefix := cellPrefix(pRollup, cm.Name, q.Tenant)
	hi := appendU32(slices.Clone(prefix), hourOf(q.To))

	switch {
	case cm.Aggregation == meter.UniqueCount:
		up := cellPrefix(pUnique, cm.Name, q.Tenant)
		lo := appendU32(slices.Clone(up), hourOf(q.From))
		err = s.scanRange(ctx, lo, appendU32(slices.Clone(up), hourOf(q.To)), func(k, _ []byte) error {
			rest := k[len(up):]
			hour := binary.BigEndian.Uint32(rest[:4])
			parts := strings.Split(string(rest[4:]), sep)
			if len(parts) != len(cm.Dimensions)+1 {
				return fmt.Errorf("unique key %q does not match meter %s", k, cm.Name)
			}
			if !keep(parts) {
				return nil
			}
			start, end := windowOf(q.Window, time.Unix(int64(hour)*hourSecs, 0).UTC(), q.From, q.To, loc)
			a := get(start, end, groupKey(parts))
			if a.idents == nil {
				a.idents = map[string]struct{}{}
			}
			a.idents[parts[len(parts)-1]] = struct{}{}
			return nil
		})
		for _, a := range rows {
			a.st.Value = int64(len(a.idents))
		}
	case cm.Kind == meter.Flow:
		lo := appendU32(slices.Clone(prefix), hourOf(q.From))
		err = s.scanCells(ctx, prefix, lo, hi, len(cm.Dimensions), func(c cell) {
			if !keep(c.dims) {
				return
			}
			start, end := windowOf(q.Window, time.Unix(int64(c.hour)*hourSecs, 0).UTC(), q.From, q.To, loc)
			a := get(start, end, groupKey(c.dims))
			a.st.Merge(c.st)
		})
	default:
		// Stock: levels per series (full dimensions), carried from the beginning of time and
		// reported at every window end; a group's level is the sum of its series' levels.
		type ser struct {
			dims  []string
			st    meter.State
			group string
		}
		levels := map[string]*ser{}
		var order []string
		windowEnds := windowBoundaries(q.Window, q.From, q.To, loc)
		wi := 0
		emit := func(end time.Time) {
			start, _ := windowOf(q.Window, end.Add(-time.Nanosecond), q.From, q.To, loc)
			for _, k := range order {
				sr := levels[k]
				a := get(start, end, sr.group)
				a.st.Value += sr.st.Value
			}
		}
		err = s.scanCells(ctx, prefix, prefix, hi, len(cm.Dimensions), func(c cell) {
			if !keep(c.dims) {
				return
			}
			t := time.Unix(int64(c.hour)*hourSecs, 0).UTC()
			for wi < len(windowEnds) && !t.Before(windowEnds[wi]) {
				emit(windowEnds[wi])
				wi++
			}
			k := strings.Join(c.dims, sep)
			sr := levels[k]
			if sr == nil {
				sr = &ser{dims: c.dims, st: meter.State{Agg: cm.tag}, group: groupKey(c.dims)}
				levels[k] = sr
				order = append(order, k)
			}
			if sr.st.Agg == 'L' && sr.st.Time == 0 {
				sr.st = c.st
			} else {
				sr.st.Merge(c.st)
			}
		})
		for ; err == nil && wi < len(windowEnds); wi++ {
			emit(windowEnds[wi])
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading usage of %s for %s: %w", cm.Name, q.Tenant, err)
	}
	out := make([]Row, 0, len(rows))
	for _, a := range rows {
		r := Row{WindowStart: a.start, WindowEnd: a.end, Value: a.st.Value, Group: map[string]string{}}
		parts := strings.Split(a.group, sep)
		for i, g := range q.GroupBy {
			r.Group[g] = parts[i]
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].WindowStart.Equal(out[j].WindowStart) {
			return out[i].WindowStart.Before(out[j].WindowStart)
		}
		return groupString(out[i].Group, q.GroupBy) < groupString(out[j].Group, q.GroupBy)
	})
	return out, nil
}

func groupString(g map[string]string, keys []string) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(g[k])
		b.WriteByte(0)
	}
	return b.String()
}

// windowBoundaries lists the ends of the windows covering [from, to), in loc.
func windowBoundaries(window string, from, to time.Time, loc *time.Location) []time.Time {
	var ends []time.Time
	for t := from; t.Before(to); {
		_, end := windowOf(window, t, from, to, loc)
		ends = append(ends, end)
		t = end
	}
	return ends
}

func (s *Store) scanCells(ctx context.Context, prefix, lo, hi []byte, ndims int, fn func(cell)) error {
	return s.scanRange(ctx, lo, hi, func(k, v []byte) error {
		if !bytes.HasPrefix(k, prefix) || len(k) < len(prefix)+4 {
			return nil
		}
		rest := k[len(prefix):]
		st, err := meter.Decode(v)
		if err != nil {
			return fmt.Errorf("rollup %q: %w", k, err)
		}
		dims := splitZero(rest[4:])
		for len(dims) < ndims {
			dims = append(dims, "")
		}
		fn(cell{hour: binary.BigEndian.Uint32(rest[:4]), dims: dims, st: st})
		return nil
	})
}

// Total is the exact aggregate of a meter for one tenant over [from, to): for flow meters the
// aggregate inside the window, for stock meters the level at to, for unique_count meters the
// distinct identities. Whole calendar months of flow meters are read from the month totals.
func (s *Store) Total(ctx context.Context, tenant, meterName string, from, to time.Time) (int64, error) {
	cm, ok := s.byName[meterName]
	if !ok {
		return 0, &QueryError{"meter", fmt.Sprintf("unknown meter %q", meterName)}
	}
	from, to = from.UTC(), to.UTC()
	if cm.Kind == meter.Flow && cm.Aggregation != meter.UniqueCount && from.Equal(monthStart(monthOf(from))) && to.Equal(from.AddDate(0, 1, 0)) {
		if err := s.Flush(ctx); err != nil {
			return 0, err
		}
		v, closer, err := s.db.Get([]byte(periodKey(monthOf(from), cm.Name, tenant)))
		if errors.Is(err, pebble.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("reading month total: %w", err)
		}
		defer closer.Close()
		st, err := meter.Decode(v)
		return st.Value, err
	}
	rows, err := s.Usage(ctx, Query{Meter: meterName, Tenant: tenant, From: from, To: to})
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, r := range rows {
		sum += r.Value
	}
	return sum, nil
}

// Tenants lists the tenants with any usage in the calendar months overlapping [from, to).
func (s *Store) Tenants(ctx context.Context, from, to time.Time) ([]string, error) {
	if err := s.Flush(ctx); err != nil {
		return nil, err
	}
	seen := map[string]struct{}{}
	for m := monthOf(from); m <= monthOf(to.Add(-time.Nanosecond)); m++ {
		p := appendU32([]byte(pPeriod), m)
		err := s.scan(ctx, p, func(k, _ []byte) error {
			parts := strings.SplitN(string(k[len(p):]), sep, 2)
			if len(parts) == 2 {
				seen[parts[1]] = struct{}{}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]string, 0, len(seen))
	for t := range seen {
		out = append(out, t)
	}
	sort.Strings(out)
	return out, nil
}

// Current is a meter's exact usage by a tenant for quotas, from memory: the current calendar
// month for flow meters, the level for stock meters, and for unique_count meters the distinct
// identities active in the current month.
func (s *Store) Current(meterName, tenant string, now time.Time) (int64, bool) {
	cm, ok := s.byName[meterName]
	if !ok {
		return 0, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch {
	case cm.Aggregation == meter.UniqueCount:
		since := monthStart(monthOf(now)).UnixNano()
		var n int64
		for _, t := range s.mirror.active[cm.Name+sep+tenant] {
			if t >= since {
				n++
			}
		}
		return n, true
	case cm.Kind == meter.Flow:
		if pt := s.mirror.periods[hashKey(periodKey(monthOf(now), cm.Name, tenant))]; pt != nil {
			return pt.state.Value, true
		}
		return 0, true
	default:
		var sum int64
		for _, ser := range s.mirror.byTenant[cm.Name+sep+tenant] {
			sum += ser.State.Value
		}
		return sum, true
	}
}

// MonthEnd is the end of the calendar month (UTC) containing t: when flow quotas reset.
func MonthEnd(t time.Time) time.Time { return monthStart(monthOf(t) + 1) }

// KnownTenants lists every tenant with a total in memory.
func (s *Store) KnownTenants() []string {
	s.mu.RLock()
	seen := map[string]struct{}{}
	for _, ser := range s.mirror.series {
		seen[ser.Tenant] = struct{}{}
	}
	for mt := range s.mirror.active {
		if i := strings.IndexByte(mt, 0); i >= 0 {
			seen[mt[i+1:]] = struct{}{}
		}
	}
	s.mu.RUnlock()
	out := make([]string, 0, len(seen))
	for t := range seen {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// SeriesSnapshot calls fn for every metric series under the read lock; fn must not block.
func (s *Store) SeriesSnapshot(fn func(*Series)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, ser := range s.mirror.series {
		fn(ser)
	}
}

// UserLabel reports whether a meter's metric series carry a user label (per-user labels on).
func (s *Store) UserLabel(meterName string) bool {
	cm, ok := s.byName[meterName]
	return ok && cm.userLabel
}

// MetricSeries calls fn with every series of a metric under the read lock; fn must not block.
func (s *Store) MetricSeries(metric string, fn func([]*Series)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(s.mirror.byMetric[metric])
}

// SeriesLimit is the cap of each metric's series (Options.SeriesLimit).
func (s *Store) SeriesLimit() int { return s.opts.SeriesLimit }

// Folded returns, per metric, how many series were folded into __overflow__.
func (s *Store) Folded() map[string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int, len(s.mirror.folded))
	for k, v := range s.mirror.folded {
		out[k] = v
	}
	return out
}

// ActiveCounts counts, per tenant, the identities of a unique_count meter active since each
// cut-off (unix nanos).
func (s *Store) ActiveCounts(meterName string, cutoffs []int64) map[string][]int64 {
	prefix := meterName + sep
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string][]int64{}
	for mt, users := range s.mirror.active {
		if !strings.HasPrefix(mt, prefix) {
			continue
		}
		counts := make([]int64, len(cutoffs))
		for _, t := range users {
			for i, c := range cutoffs {
				if t >= c {
					counts[i]++
				}
			}
		}
		out[mt[len(prefix):]] = counts
	}
	return out
}

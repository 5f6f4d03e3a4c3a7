package ledger

// Read-only queries for the analytics packages (analytics/...): raw events by time range (content
// hashes are not kept in rollups), the durable last activity of every identity (the in-memory
// mirror only keeps 32 days, inactive seats need older activity) and every tenant's month totals
// in one scan. Reads of derived keys flush the pending derived changes first, as Usage does.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// RawEvents calls fn with every stored raw event whose time lies in [from, to), in time order.
// A zero from means the beginning of time; a zero to means the end of time. fn must not keep ev.
func (s *Store) RawEvents(ctx context.Context, from, to time.Time, fn func(ev *event.Event) error) error {
	dec := s.decoder
	return s.scanRange(ctx, rawBound(from, pEvent), rawUpper(to), func(k, v []byte) error {
		if len(k) < 10 {
			return nil
		}
		ev, err := dec.DecodeStored(v, eventTime(k))
		if err != nil {
			return fmt.Errorf("stored event %x: %w", k, err)
		}
		return fn(&ev)
	})
}

// RawEventsOfTypes is RawEvents for some event types only. Decoding is most of the cost of a scan
// of raw events, so an event is decoded only when its stored JSON contains one of the type
// names (or a \u escape, which could spell one); its decoded type is then checked exactly.
func (s *Store) RawEventsOfTypes(ctx context.Context, from, to time.Time, types []string, fn func(ev *event.Event) error) error {
	return s.RawEventsOfTypesKeyed(ctx, from, to, types, func(_ EventKey, ev *event.Event) error { return fn(ev) })
}

// RawEventsOfTypesKeyed is RawEventsOfTypes telling each event's key: readers that keep state
// derived from raw events order the events they learn of later (Changes) among those scanned.
func (s *Store) RawEventsOfTypesKeyed(ctx context.Context, from, to time.Time, types []string, fn func(k EventKey, ev *event.Event) error) error {
	f := newTypeFilter(types)
	dec := s.decoder
	return s.scanRange(ctx, rawBound(from, pEvent), rawUpper(to), func(k, v []byte) error {
		ek, ok := eventKeyOf(k)
		if !ok || !f.mayMatch(v) {
			return nil
		}
		ev, err := dec.DecodeStored(v, eventTime(k))
		if err != nil {
			return fmt.Errorf("stored event %x: %w", k, err)
		}
		if !f.want[ev.Type] {
			return nil
		}
		return fn(ek, &ev)
	})
}

// typeFilter tells from a stored event, without decoding it, whether it may be of one of some
// types.
type typeFilter struct {
	want  map[string]bool
	names [][]byte
}

func newTypeFilter(types []string) typeFilter {
	f := typeFilter{want: make(map[string]bool, len(types)), names: make([][]byte, len(types))}
	for i, t := range types {
		f.want[t] = true
		f.names[i] = []byte(t)
	}
	return f
}

var unicodeEscape = []byte(`\u`)

func (f typeFilter) mayMatch(raw []byte) bool {
	if typ, ok := event.StoredType(raw); ok {
		return f.want[typ]
	}
	// JSON text is searched for the names; anything else (a damaged event) is decoded, which
	// says what is wrong with it.
	if len(raw) > 0 && !strings.ContainsRune(" \t\r\n{", rune(raw[0])) {
		return true
	}
	if bytes.Contains(raw, unicodeEscape) {
		return true
	}
	for _, n := range f.names {
		if bytes.Contains(raw, n) {
			return true
		}
	}
	return false
}

// rawBound is the first e/ key at or after from (the prefix itself for a zero from).
func rawBound(from time.Time, prefix string) []byte {
	if from.IsZero() || from.UnixNano() <= 0 {
		return []byte(prefix)
	}
	lo := make([]byte, 10)
	copy(lo, prefix)
	putU64(lo[2:], uint64(from.UnixNano()))
	return lo
}

// rawUpper is the first e/ key at or after to (past every event for a zero to).
func rawUpper(to time.Time) []byte {
	if to.IsZero() {
		return prefixEnd([]byte(pEvent))
	}
	return rawBound(to, pEvent)
}

// LastSeen returns the last activity of every identity of a unique_count meter (active_users:
// every user) for a tenant, read from the store: all time, not only the mirror's horizon.
func (s *Store) LastSeen(ctx context.Context, meterName, tenant string) (map[string]time.Time, error) {
	cm, ok := s.byName[meterName]
	if !ok || cm.Aggregation != meter.UniqueCount {
		return nil, &QueryError{"meter", fmt.Sprintf("%q is not a unique_count meter", meterName)}
	}
	if err := s.Flush(ctx); err != nil {
		return nil, err
	}
	p := cellPrefix(pActive, cm.Name, tenant)
	out := map[string]time.Time{}
	err := s.scan(ctx, p, func(k, v []byte) error {
		st, err := meter.Decode(v)
		if err != nil {
			return fmt.Errorf("activity %q: %w", k, err)
		}
		out[string(k[len(p):])] = time.Unix(0, st.Value).UTC()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading last activity of %s: %w", tenant, err)
	}
	return out, nil
}

// MonthTotals calls fn with the calendar-month total (UTC) of every flow meter and tenant for
// the month containing month, in one scan of the month totals: a report over every tenant reads
// them without one point lookup per tenant, meter and month.
func (s *Store) MonthTotals(ctx context.Context, month time.Time, fn func(meterName, tenant string, value int64)) error {
	if err := s.Flush(ctx); err != nil {
		return err
	}
	p := appendU32([]byte(pPeriod), monthOf(month))
	return s.scan(ctx, p, func(k, v []byte) error {
		parts := strings.SplitN(string(k[len(p):]), sep, 2)
		if len(parts) != 2 {
			return nil
		}
		st, err := meter.Decode(v)
		if err != nil {
			return fmt.Errorf("month total %q: %w", k, err)
		}
		fn(parts[0], parts[1], st.Value)
		return nil
	})
}

// UngroupedUsage answers Usage(Query{Meter, Tenant, From, To, Window}) with no GroupBy, with the
// same rows (but a nil Group), at a fraction of the cost: reports read every meter of every tenant, and without
// groups a window needs one accumulator (flow), one running level (stock) or one identity set
// (unique_count) rather than per-cell maps keyed by formatted times.
func (s *Store) UngroupedUsage(ctx context.Context, q Query) ([]Row, error) {
	q.GroupBy = nil
	cm, err := s.checkQuery(&q)
	if err != nil {
		return nil, err
	}
	if err := s.Flush(ctx); err != nil {
		return nil, err
	}
	from, to := q.From.UTC(), q.To.UTC()
	loc := locationOf(&q)
	ends := fastBoundaries(q.Window, from, to, loc)
	starts := make([]time.Time, len(ends))
	for i := range ends {
		if i == 0 {
			starts[i] = from
		} else {
			starts[i] = ends[i-1]
		}
	}
	// windowIdx finds the window holding an hour: the first whose end is after it.
	last := -1
	windowIdx := func(hour uint32) int {
		t := time.Unix(int64(hour)*hourSecs, 0)
		if last >= 0 && t.Before(ends[last]) && !t.Before(starts[last]) {
			return last
		}
		lo, hi := 0, len(ends)
		for lo < hi {
			m := (lo + hi) / 2
			if ends[m].After(t) {
				hi = m
			} else {
				lo = m + 1
			}
		}
		last = lo
		return lo
	}
	rows := func(vals []int64, have []bool) []Row {
		var out []Row
		for i, ok := range have {
			if ok {
				out = append(out, Row{WindowStart: starts[i].In(loc), WindowEnd: ends[i].In(loc), Value: vals[i]})
			}
		}
		return out
	}
	vals := make([]int64, len(ends))
	have := make([]bool, len(ends))
	prefix := cellPrefix(pRollup, cm.Name, q.Tenant)
	hi := appendU32(append([]byte(nil), prefix...), hourOf(to))
	switch {
	case cm.Aggregation == meter.UniqueCount:
		up := cellPrefix(pUnique, cm.Name, q.Tenant)
		lo := appendU32(append([]byte(nil), up...), hourOf(from))
		sets := make([]map[string]struct{}, len(ends))
		err = s.scanRange(ctx, lo, appendU32(append([]byte(nil), up...), hourOf(to)), func(k, _ []byte) error {
			rest := k[len(up):]
			if len(rest) < 4 {
				return fmt.Errorf("unique key %q is too short", k)
			}
			ident := rest[4:]
			if i := bytesLastZero(ident); i >= 0 {
				ident = ident[i+1:]
			}
			w := windowIdx(binary.BigEndian.Uint32(rest[:4]))
			if sets[w] == nil {
				sets[w] = map[string]struct{}{}
			}
			if _, ok := sets[w][string(ident)]; !ok {
				sets[w][string(ident)] = struct{}{}
			}
			have[w] = true
			return nil
		})
		for i, set := range sets {
			vals[i] = int64(len(set))
		}
	case cm.Kind == meter.Flow:
		acc := make([]meter.State, len(ends))
		for i := range acc {
			acc[i] = meter.State{Agg: cm.tag}
		}
		lo := appendU32(append([]byte(nil), prefix...), hourOf(from))
		err = s.scanRange(ctx, lo, hi, func(k, v []byte) error {
			if len(k) < len(prefix)+4 {
				return nil
			}
			st, err := meter.Decode(v)
			if err != nil {
				return fmt.Errorf("rollup %q: %w", k, err)
			}
			w := windowIdx(binary.BigEndian.Uint32(k[len(prefix):]))
			acc[w].Merge(st)
			have[w] = true
			return nil
		})
		for i := range acc {
			vals[i] = acc[i].Value
		}
	default:
		// Stock: every series' level from the beginning of time; the tenant's level is their
		// sum, kept as a running total and read at each window end.
		levels := map[string]*meter.State{}
		var total int64
		wi := 0
		emit := func(t time.Time) {
			for wi < len(ends) && !t.Before(ends[wi]) {
				if len(levels) > 0 {
					vals[wi], have[wi] = total, true
				}
				wi++
			}
		}
		err = s.scanRange(ctx, prefix, hi, func(k, v []byte) error {
			if len(k) < len(prefix)+4 {
				return nil
			}
			st, err := meter.Decode(v)
			if err != nil {
				return fmt.Errorf("rollup %q: %w", k, err)
			}
			emit(time.Unix(int64(binary.BigEndian.Uint32(k[len(prefix):]))*hourSecs, 0))
			dims := k[len(prefix)+4:]
			sr, ok := levels[string(dims)]
			if !ok {
				sr = &meter.State{Agg: cm.tag}
				levels[string(dims)] = sr
			}
			old := sr.Value
			if sr.Agg == 'L' && sr.Time == 0 {
				*sr = st
			} else {
				sr.Merge(st)
			}
			total += sr.Value - old
			return nil
		})
		if err == nil {
			emit(to)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading usage of %s for %s: %w", cm.Name, q.Tenant, err)
	}
	return rows(vals, have), nil
}

func bytesLastZero(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == 0 {
			return i
		}
	}
	return -1
}

// fastBoundaries is windowBoundaries without a calendar computation per window for hours and
// days (a year by day is 365 windows, asked for every tenant and meter of a report).
func fastBoundaries(window string, from, to time.Time, loc *time.Location) []time.Time {
	var step time.Duration
	switch {
	case window == WindowHour:
		step = time.Hour
	case window == WindowDay && loc == time.UTC:
		step = 24 * time.Hour
	default:
		return windowBoundaries(window, from, to, loc)
	}
	ends := make([]time.Time, 0, int(to.Sub(from)/step)+2)
	t := from.Truncate(step).Add(step) // UTC: hours and days are aligned on the epoch
	for ; t.Before(to); t = t.Add(step) {
		ends = append(ends, t)
	}
	return append(ends, to)
}

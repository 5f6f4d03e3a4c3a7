package ledger

// Reads for the analytics insight index (analytics/insights): flow rollups, stock levels and last
// activity of every tenant in one pass each.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/exporter/meter"
)

// FlowCells calls fn with every hourly rollup cell of a flow meter whose hour lies in [from, to)
// (a zero to: no end), for the tenants listed (nil: every tenant), with the cell's values of the
// groupBy dimensions joined by NUL. Cells come in key order: by tenant, hour, then dimensions,
// the order in which Usage merges them. group is only valid during the call. One iterator reads
// every tenant, seeking past the hours outside the range, where Usage would take one query per
// tenant.
func (s *Store) FlowCells(ctx context.Context, meterName string, tenants []string, from, to time.Time, groupBy []string,
	fn func(tenant string, hour time.Time, group []byte, st meter.State)) error {
	cm, ok := s.byName[meterName]
	if !ok {
		return &QueryError{"meter", fmt.Sprintf("unknown meter %q", meterName)}
	}
	if cm.Kind != meter.Flow || cm.Aggregation == meter.UniqueCount {
		return &QueryError{"meter", fmt.Sprintf("%s is not a flow meter", meterName)}
	}
	if !onHour(from) || (!to.IsZero() && !onHour(to)) {
		return &QueryError{"from", "from and to must be on hour boundaries (usage is rolled up hourly)"}
	}
	idx := make([]int, len(groupBy))
	for i, g := range groupBy {
		if idx[i] = slices.Index(cm.Dimensions, g); idx[i] < 0 {
			return &QueryError{"group_by", fmt.Sprintf("%q is not a dimension of meter %s", g, cm.Name)}
		}
	}
	if err := s.Flush(ctx); err != nil {
		return err
	}
	lo, hi := hourOf(from), uint32(1<<32-1)
	if !to.IsZero() {
		hi = hourOf(to)
	}
	if lo >= hi {
		return nil
	}
	prefix := []byte(pRollup + cm.Name + sep)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("opening iterator: %w", err)
	}
	defer it.Close()
	var (
		tenant    string
		tenantKey []byte // prefix + tenant + NUL of the tenant being read
		seek      []byte
		dims      [][]byte
		group     []byte
		n         int
	)
	// cell handles the key under the iterator and moves it on; false when the tenant is done.
	cell := func() (bool, error) {
		k := it.Key()
		rest := k[len(tenantKey):]
		if len(rest) < 4 {
			return false, fmt.Errorf("rollup key %q is too short", k)
		}
		h := binary.BigEndian.Uint32(rest)
		if h >= hi {
			return false, nil
		}
		st, err := meter.Decode(it.Value())
		if err != nil {
			return false, fmt.Errorf("rollup %q: %w", k, err)
		}
		dims = splitDims(dims[:0], rest[4:])
		group = group[:0]
		for i, d := range idx {
			if i > 0 {
				group = append(group, 0)
			}
			if d < len(dims) {
				group = append(group, dims[d]...)
			}
		}
		fn(tenant, time.Unix(int64(h)*hourSecs, 0).UTC(), group, st)
		it.Next()
		return true, nil
	}
	// readTenant reads the cells in range of the tenant under tenantKey, from a seek.
	readTenant := func() error {
		seek = appendU32(append(seek[:0], tenantKey...), lo)
		for valid := it.SeekGE(seek); valid && bytes.HasPrefix(it.Key(), tenantKey); valid = it.Valid() {
			if n++; n%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			more, err := cell()
			if err != nil || !more {
				return err
			}
		}
		return nil
	}
	if tenants != nil {
		for _, t := range tenants {
			tenant = t
			tenantKey = append(append(append(tenantKey[:0], prefix...), t...), 0)
			if err := readTenant(); err != nil {
				return err
			}
		}
		return it.Error()
	}
	for valid := it.First(); valid; {
		k := it.Key()
		i := bytes.IndexByte(k[len(prefix):], 0)
		if i < 0 {
			return fmt.Errorf("rollup key %q has no tenant", k)
		}
		tenantKey = append(tenantKey[:0], k[:len(prefix)+i+1]...)
		tenant = string(k[len(prefix) : len(prefix)+i])
		if err := readTenant(); err != nil {
			return err
		}
		valid = it.SeekGE(prefixEnd(tenantKey))
	}
	return it.Error()
}

func onHour(t time.Time) bool { return t.Unix()%hourSecs == 0 && t.Nanosecond() == 0 }

// splitDims splits a cell's dimension values (each NUL-terminated) as scanCells does.
func splitDims(out [][]byte, b []byte) [][]byte {
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return append(out, b)
		}
		out = append(out, b[:i])
		b = b[i+1:]
	}
	return out
}

// StockLevels calls fn with the level of a stock meter at at (on an hour) for each tenant
// listed, in order: what Total(tenant, meterName, at-1h, at) answers (the sum of the levels of
// the tenant's series, each merged from every cell before at, in key order), read for all the
// tenants with one flush and one iterator instead of one Usage query each.
func (s *Store) StockLevels(ctx context.Context, meterName string, tenants []string, at time.Time, fn func(tenant string, level int64)) error {
	cm, ok := s.byName[meterName]
	if !ok {
		return &QueryError{"meter", fmt.Sprintf("unknown meter %q", meterName)}
	}
	if cm.Kind == meter.Flow || cm.Aggregation == meter.UniqueCount {
		return &QueryError{"meter", fmt.Sprintf("%s is not a stock meter", meterName)}
	}
	if !onHour(at) {
		return &QueryError{"to", "must be on an hour boundary (usage is rolled up hourly)"}
	}
	if err := s.Flush(ctx); err != nil {
		return err
	}
	prefix := []byte(pRollup + cm.Name + sep)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("opening iterator: %w", err)
	}
	defer it.Close()
	hi := hourOf(at)
	var (
		tenantKey, series []byte
		dims              [][]byte
		n                 int
	)
	levels := map[string]*meter.State{}
	for _, t := range tenants {
		tenantKey = append(append(append(tenantKey[:0], prefix...), t...), 0)
		clear(levels)
		for valid := it.SeekGE(tenantKey); valid && bytes.HasPrefix(it.Key(), tenantKey); valid = it.Next() {
			if n++; n%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			rest := it.Key()[len(tenantKey):]
			if len(rest) < 4 {
				continue // as scanCells: not a cell
			}
			if binary.BigEndian.Uint32(rest) >= hi {
				break
			}
			st, err := meter.Decode(it.Value())
			if err != nil {
				return fmt.Errorf("rollup %q: %w", it.Key(), err)
			}
			// The series is the cell's dimensions as Usage names it: split, padded, joined.
			dims = splitDims(dims[:0], rest[4:])
			series = series[:0]
			for i := range max(len(dims), len(cm.Dimensions)) {
				if i > 0 {
					series = append(series, 0)
				}
				if i < len(dims) {
					series = append(series, dims[i]...)
				}
			}
			sr := levels[string(series)]
			if sr == nil {
				sr = &meter.State{Agg: cm.tag}
				levels[string(series)] = sr
			}
			if sr.Agg == 'L' && sr.Time == 0 {
				*sr = st
			} else {
				sr.Merge(st)
			}
		}
		if err := it.Error(); err != nil {
			return fmt.Errorf("reading levels of %s: %w", meterName, err)
		}
		var level int64
		for _, sr := range levels {
			level += sr.Value
		}
		fn(t, level)
	}
	return nil
}

// LastSeenAll is LastSeen for each tenant listed, in order, with one flush and one iterator.
func (s *Store) LastSeenAll(ctx context.Context, meterName string, tenants []string, fn func(tenant string, seen map[string]time.Time)) error {
	cm, ok := s.byName[meterName]
	if !ok || cm.Aggregation != meter.UniqueCount {
		return &QueryError{"meter", fmt.Sprintf("%q is not a unique_count meter", meterName)}
	}
	if err := s.Flush(ctx); err != nil {
		return err
	}
	prefix := []byte(pActive + cm.Name + sep)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("opening iterator: %w", err)
	}
	defer it.Close()
	var tenantKey []byte
	for _, t := range tenants {
		tenantKey = append(append(append(tenantKey[:0], prefix...), t...), 0)
		seen := map[string]time.Time{}
		for valid := it.SeekGE(tenantKey); valid && bytes.HasPrefix(it.Key(), tenantKey); valid = it.Next() {
			st, err := meter.Decode(it.Value())
			if err != nil {
				return fmt.Errorf("activity %q: %w", it.Key(), err)
			}
			seen[string(it.Key()[len(tenantKey):])] = time.Unix(0, st.Value).UTC()
		}
		if err := it.Error(); err != nil {
			return fmt.Errorf("reading last activity of %s: %w", t, err)
		}
		fn(t, seen)
	}
	return nil
}

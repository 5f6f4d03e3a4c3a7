package ledger

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/usagemeter/usagemeter/exporter/meter"
)

// DimensionTotals is the exact aggregate of a flow meter for one tenant over [from, to) (hour
// boundaries), for one value of each dimension of where at once: {"user": "alice", "feature":
// "chat"} answers alice's usage over all features and chat's over all users, from one scan of
// the tenant's rollups of the range. Quota checks of users and features read it: unlike Usage
// it compares a cell's dimensions in place and decodes only the cells it keeps. ok is false for
// meters it does not answer (stock and unique_count meters: read those with Usage).
func (s *Store) DimensionTotals(ctx context.Context, meterName, tenant string, from, to time.Time, where map[string]string) (totals map[string]int64, ok bool, err error) {
	cm, found := s.byName[meterName]
	if !found || cm.Kind != meter.Flow || cm.Aggregation == meter.UniqueCount {
		return nil, false, nil
	}
	type cond struct {
		dim   string
		idx   int
		value []byte
		st    meter.State
	}
	conds := make([]cond, 0, len(where))
	for d, v := range where {
		i := slices.Index(cm.Dimensions, d)
		if i < 0 {
			return nil, true, &QueryError{"where", fmt.Sprintf("%q is not a dimension of meter %s", d, cm.Name)}
		}
		conds = append(conds, cond{dim: d, idx: i, value: []byte(v), st: meter.State{Agg: cm.tag}})
	}
	if err := s.Flush(ctx); err != nil {
		return nil, true, err
	}
	prefix := cellPrefix(pRollup, cm.Name, tenant)
	lo := appendU32(slices.Clone(prefix), hourOf(from.UTC()))
	hi := appendU32(slices.Clone(prefix), hourOf(to.UTC()))
	err = s.scanRange(ctx, lo, hi, func(k, v []byte) error {
		if len(k) < len(prefix)+4 {
			return nil
		}
		dims := k[len(prefix)+4:]
		var st meter.State
		decoded := false
		for i := range conds {
			c := &conds[i]
			if !bytes.Equal(field(dims, c.idx), c.value) {
				continue
			}
			if !decoded {
				if st, err = meter.Decode(v); err != nil {
					return fmt.Errorf("rollup %q: %w", k, err)
				}
				decoded = true
			}
			c.st.Merge(st)
		}
		return nil
	})
	if err != nil {
		return nil, true, fmt.Errorf("reading usage of %s for %s by dimension: %w", cm.Name, tenant, err)
	}
	totals = make(map[string]int64, len(conds))
	for _, c := range conds {
		totals[c.dim] = c.st.Value
	}
	return totals, true, nil
}

// field returns the i-th \0-separated field of a rollup cell's dimensions, without copying; a
// missing trailing field is empty, as splitZero pads it.
func field(dims []byte, i int) []byte {
	for ; i > 0; i-- {
		j := bytes.IndexByte(dims, 0)
		if j < 0 {
			return nil
		}
		dims = dims[j+1:]
	}
	if j := bytes.IndexByte(dims, 0); j >= 0 {
		return dims[:j]
	}
	return dims
}

// DimensionSums reads a sum or count flow meter's rollups of one tenant over [from, to) in one
// scan, from one consistent snapshot of the store: the total, and the usage by every value of
// each of dims (every user, every feature). Quota checks keep it while the tenant's month total
// is unchanged (exporter/quota). ok is false for other meters.
func (s *Store) DimensionSums(ctx context.Context, meterName, tenant string, from, to time.Time, dims []string) (total int64, by map[string]map[string]int64, ok bool, err error) {
	cm, found := s.byName[meterName]
	if !found || cm.Kind != meter.Flow || (cm.Aggregation != meter.Sum && cm.Aggregation != meter.Count) {
		return 0, nil, false, nil
	}
	idx := make([]int, len(dims))
	// Sums by value are counted through pointers, so that a value already seen costs a lookup
	// without converting the key to a string.
	acc := make([]map[string]*int64, len(dims))
	for i, d := range dims {
		if idx[i] = slices.Index(cm.Dimensions, d); idx[i] < 0 {
			return 0, nil, true, &QueryError{"dimension", fmt.Sprintf("%q is not a dimension of meter %s", d, cm.Name)}
		}
		acc[i] = map[string]*int64{}
	}
	if err := s.Flush(ctx); err != nil {
		return 0, nil, true, err
	}
	prefix := cellPrefix(pRollup, cm.Name, tenant)
	lo := appendU32(slices.Clone(prefix), hourOf(from.UTC()))
	hi := appendU32(slices.Clone(prefix), hourOf(to.UTC()))
	err = s.scanRange(ctx, lo, hi, func(k, v []byte) error {
		if len(k) < len(prefix)+4 {
			return nil
		}
		st, err := meter.Decode(v)
		if err != nil {
			return fmt.Errorf("rollup %q: %w", k, err)
		}
		total += st.Value
		cell := k[len(prefix)+4:]
		for i := range dims {
			f := field(cell, idx[i])
			if n := acc[i][string(f)]; n != nil {
				*n += st.Value
			} else {
				n := st.Value
				acc[i][string(f)] = &n
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, true, fmt.Errorf("reading usage of %s for %s by %v: %w", cm.Name, tenant, dims, err)
	}
	by = make(map[string]map[string]int64, len(dims))
	for i, d := range dims {
		m := make(map[string]int64, len(acc[i]))
		for v, n := range acc[i] {
			m[v] = *n
		}
		by[d] = m
	}
	return total, by, true, nil
}

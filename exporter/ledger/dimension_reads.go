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

package quota

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// sumsCache keeps, per meter and tenant, the month's usage by every user and every feature,
// read in one scan of the month's rollups (ledger.DimensionSums), with the month total of that
// scan. It stays exact without following commits: for a sum or count meter that nothing
// subtracts from, every committed event with a quantity raises the tenant's month total, which
// the ledger holds in memory (Store.Current), so while that total equals the scan's, no user's
// or feature's usage can have changed; when it differs, the next check scans again. Checks
// between two commits of a tenant cost a map lookup; a tenant ingesting continuously pays a
// scan per commit at most, not per check.
type sumsCache struct {
	mu sync.Mutex
	m  map[string]*dimSums // meter\0tenant
}

type dimSums struct {
	from  time.Time // the month read
	total int64     // its total in the snapshot scanned
	by    map[string]map[string]int64
}

// maxSumsEntries bounds the cache: past it, it starts afresh (each entry holds one tenant's
// users and features of one meter).
const maxSumsEntries = 10000

// cacheable: the month total moves whenever usage by any user or feature does.
func cacheable(def *meter.Def) bool {
	if def.Kind != meter.Flow || (def.Aggregation != meter.Sum && def.Aggregation != meter.Count) {
		return false
	}
	return !slices.ContainsFunc(def.Events, func(b meter.Binding) bool { return b.Sign < 0 })
}

// read returns the month's usage of def by user and by feature for tenant, from the cache when
// the tenant's month total has not moved since it was read. ok is false for meters it cannot
// keep exactly.
func (c *sumsCache) read(ctx context.Context, store *ledger.Store, def *meter.Def, tenant string, from, to, now time.Time) (*dimSums, bool, error) {
	if !cacheable(def) {
		return nil, false, nil
	}
	key := def.Name + "\x00" + tenant
	current, _ := store.Current(def.Name, tenant, now)
	c.mu.Lock()
	e := c.m[key]
	c.mu.Unlock()
	if e != nil && e.from.Equal(from) && e.total == current {
		return e, true, nil
	}
	var dims []string
	for _, d := range []string{"user", "feature"} {
		if slices.Contains(def.Dimensions, d) {
			dims = append(dims, d)
		}
	}
	total, by, ok, err := store.DimensionSums(ctx, def.Name, tenant, from, to, dims)
	if err != nil {
		return nil, true, fmt.Errorf("usage of %s by %v of %s: %w", def.Name, dims, tenant, err)
	}
	if !ok {
		return nil, false, nil
	}
	// The scan may be newer than current (commits in between): it is kept under its own total,
	// so it serves once the in-memory total has caught up with it.
	e = &dimSums{from: from, total: total, by: by}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxSumsEntries {
		c.m = map[string]*dimSums{}
	}
	c.m[key] = e
	c.mu.Unlock()
	return e, true, nil
}

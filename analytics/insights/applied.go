package insights

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Applied insights live under i/<tenant>\0<id> in the ledger's database (Set only).
const appliedPrefix = "i/"

// ErrNotFound: no current insight has that id.
var ErrNotFound = errors.New("insight not found")

// Applied is an insight marked applied, with the saving it promised then (the baseline).
type Applied struct {
	Insight   Insight   `json:"insight"`
	AppliedAt time.Time `json:"applied_at"`
	Note      string    `json:"note,omitempty"`
}

// Tracking compares an applied insight's baseline with the same insight detected now.
type Tracking struct {
	Applied
	CheckedAt time.Time `json:"checked_at"`
	// Current is the saving still available now; nil when the insight no longer appears (the
	// waste is gone).
	Current *Saving `json:"current,omitempty"`
	// Realized is the baseline minus what is still available.
	RealizedUnits  int64  `json:"realized_units"`
	RealizedAmount *int64 `json:"realized_amount,omitempty"`
	// Status: realized (the insight is gone), partial (some of the saving realized), pending.
	Status string `json:"status"`
}

func appliedKey(tenant, id string) []byte {
	return []byte(appliedPrefix + tenant + "\x00" + id)
}

// Apply marks the tenant's insight id (as detected at at) applied and stores its baseline.
func (e *Engine) Apply(ctx context.Context, tenant, id string, at time.Time, note string) (Applied, error) {
	ins, err := e.Detect(ctx, []string{tenant}, at)
	if err != nil {
		return Applied{}, err
	}
	for _, in := range ins {
		if in.ID != id {
			continue
		}
		a := Applied{Insight: in, AppliedAt: at.UTC(), Note: note}
		b, err := json.Marshal(a)
		if err != nil {
			return Applied{}, fmt.Errorf("encoding applied insight: %w", err)
		}
		if err := e.Store.DB().Set(appliedKey(tenant, id), b, pebble.Sync); err != nil {
			return Applied{}, fmt.Errorf("storing applied insight %s: %w", id, err)
		}
		return a, nil
	}
	return Applied{}, fmt.Errorf("%w: %s for tenant %s", ErrNotFound, id, tenant)
}

// ListApplied returns the applied insights of a tenant ("" for every tenant).
func (e *Engine) ListApplied(ctx context.Context, tenant string) ([]Applied, error) {
	lo := []byte(appliedPrefix)
	if tenant != "" {
		lo = []byte(appliedPrefix + tenant + "\x00")
	}
	hi := append(append([]byte(nil), lo[:len(lo)-1]...), lo[len(lo)-1]+1)
	it, err := e.Store.DB().NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("listing applied insights: %w", err)
	}
	defer it.Close()
	var out []Applied
	for it.First(); it.Valid(); it.Next() {
		var a Applied
		if err := json.Unmarshal(it.Value(), &a); err != nil {
			return nil, fmt.Errorf("applied insight %q: %w", it.Key(), err)
		}
		out = append(out, a)
	}
	return out, it.Error()
}

// Track re-detects every applied insight of a tenant ("" for all) at at and reports how much of
// each promised saving was realized.
func (e *Engine) Track(ctx context.Context, tenant string, at time.Time) ([]Tracking, error) {
	applied, err := e.ListApplied(ctx, tenant)
	if err != nil {
		return nil, err
	}
	byTenant := map[string][]Applied{}
	var tenants []string
	for _, a := range applied {
		if byTenant[a.Insight.Tenant] == nil {
			tenants = append(tenants, a.Insight.Tenant)
		}
		byTenant[a.Insight.Tenant] = append(byTenant[a.Insight.Tenant], a)
	}
	sort.Strings(tenants)
	var out []Tracking
	for _, t := range tenants {
		now, err := e.Detect(ctx, []string{t}, at)
		if err != nil {
			return nil, err
		}
		current := map[string]Saving{}
		for _, in := range now {
			current[in.ID] = in.Saving
		}
		for _, a := range byTenant[t] {
			tr := Tracking{Applied: a, CheckedAt: at.UTC().Truncate(time.Hour)}
			base := a.Insight.Saving
			cur, still := current[a.Insight.ID]
			var curUnits, curAmount int64
			if still {
				c := cur
				tr.Current = &c
				curUnits = cur.Units
				if cur.Amount != nil {
					curAmount = *cur.Amount
				}
			}
			tr.RealizedUnits = base.Units - curUnits
			if base.Amount != nil {
				r := *base.Amount - curAmount
				tr.RealizedAmount = &r
			}
			switch {
			case !still:
				tr.Status = "realized"
			case tr.RealizedUnits > 0 || (tr.RealizedAmount != nil && *tr.RealizedAmount > 0):
				tr.Status = "partial"
			default:
				tr.Status = "pending"
			}
			out = append(out, tr)
		}
	}
	return out, nil
}

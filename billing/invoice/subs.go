package invoice

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/billing/rating"
)

func subKey(tenant string, t time.Time) []byte {
	k := append(key(pSub, tenant), 0)
	return binary.BigEndian.AppendUint64(k, uint64(t.UnixNano()))
}

// PlanAt is the tenant's plan at instant t: the latest subscription in force, else the
// configuration's mapping. Quotas use it so that a plan change takes effect for limits too.
func (s *Service) PlanAt(_ context.Context, tenant string, t time.Time) (string, error) {
	prefix := append(key(pSub, tenant), 0)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: subKey(tenant, t.Add(time.Nanosecond))})
	if err != nil {
		return "", fmt.Errorf("plan of %s at %s: %w", tenant, t, err)
	}
	plan := ""
	if it.Last() {
		plan = string(it.Value())
	}
	if err := it.Close(); err != nil {
		return "", fmt.Errorf("plan of %s at %s: %w", tenant, t, err)
	}
	if plan == "" {
		plan = s.defaultPlan(tenant)
	}
	return plan, nil
}

// Subscriptions lists a tenant's recorded plan changes in time order.
func (s *Service) Subscriptions(_ context.Context, tenant string) ([]Subscription, error) {
	var out []Subscription
	prefix := append(key(pSub, tenant), 0)
	err := scan(s.db, prefix, func(k, v []byte) error {
		ns := int64(binary.BigEndian.Uint64(k[len(prefix):]))
		out = append(out, Subscription{Tenant: tenant, Plan: string(v), Effective: time.Unix(0, ns).UTC()})
		return nil
	})
	return out, err
}

// ChangePlan moves a tenant to a plan from `effective` on (zero: now), truncated to the second.
// Changes scheduled after `effective` are dropped: the latest decision wins. A change inside a
// period that is already invoiced is refused (ErrConflict): that would rewrite a finalized
// invoice. The month of the change is prorated by seconds (package rating).
func (s *Service) ChangePlan(ctx context.Context, tenant, plan string, effective time.Time) (Subscription, error) {
	cat := s.Catalogue()
	if _, ok := cat.Plan(plan); !ok {
		return Subscription{}, fmt.Errorf("change plan of %s: %w: unknown plan %q", tenant, ErrInvalid, plan)
	}
	if effective.IsZero() {
		effective = s.now()
	}
	effective = effective.UTC().Truncate(time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	p := rating.PeriodOf(effective)
	st, err := s.loadState(ctx, p, tenant)
	if err != nil {
		return Subscription{}, err
	}
	if st.closedFor(tenant, p) {
		return Subscription{}, fmt.Errorf("change plan of %s at %s: %w: %s is already invoiced", tenant, effective.Format(time.RFC3339), ErrConflict, p)
	}
	cur, err := s.PlanAt(ctx, tenant, effective)
	if err != nil {
		return Subscription{}, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	prefix := append(key(pSub, tenant), 0)
	if err := b.DeleteRange(subKey(tenant, effective), prefixEnd(prefix), nil); err != nil {
		return Subscription{}, fmt.Errorf("change plan of %s: %w", tenant, err)
	}
	if err := b.Set(subKey(tenant, effective), []byte(plan), nil); err != nil {
		return Subscription{}, fmt.Errorf("change plan of %s: %w", tenant, err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return Subscription{}, fmt.Errorf("change plan of %s: %w", tenant, err)
	}
	s.log.Info("plan changed", "tenant", tenant, "from", cur, "to", plan, "effective", effective)
	return Subscription{Tenant: tenant, Plan: plan, Effective: effective}, nil
}

// Suggest compares the tenant's usage in period p under every plan with the plan in force at
// the period's end (or now, for the current period); nil when that plan is already cheapest.
func (s *Service) Suggest(ctx context.Context, tenant string, p rating.Period) (*rating.Suggestion, error) {
	at := p.End().Add(-time.Nanosecond)
	if now := s.now(); now.Before(at) {
		at = now
	}
	plan, err := s.PlanAt(ctx, tenant, at)
	if err != nil {
		return nil, err
	}
	cat := s.Catalogue().ForTenant(tenant)
	r := &rating.Rater{Catalogue: &cat, Usage: s.usage, Stock: s.stock, Limits: s.limits}
	return r.Suggest(ctx, tenant, p, plan)
}

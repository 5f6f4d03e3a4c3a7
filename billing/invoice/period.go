package invoice

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/usagemeter/usagemeter/billing/rating"
)

// checkPeriod refuses periods nothing can be billed for: one that has not begun yet, and one that
// ends before the ledger's history begins. It returns where the history begins (zero when the
// service has no Began).
func (s *Service) checkPeriod(ctx context.Context, p rating.Period, now time.Time) (time.Time, error) {
	if p.Start().After(now) {
		return time.Time{}, fmt.Errorf("invoice run %s: %w: the period has not begun (it starts %s, it is now %s)",
			p, ErrInvalid, p.Start().Format(time.DateOnly), now.UTC().Format(time.DateOnly))
	}
	if s.began == nil {
		return time.Time{}, nil
	}
	began, err := s.began(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("invoice run %s: where the ledger's history begins: %w", p, err)
	}
	if !p.End().After(began) {
		return time.Time{}, fmt.Errorf("invoice run %s: %w: the period ends before the ledger's history begins (%s): there is no usage, subscription or tenant to bill for it",
			p, ErrInvalid, began.Format(time.DateOnly))
	}
	return began, nil
}

// existed returns, sorted, the candidates that existed during p. A tenant exists from the
// earliest of its first usage and its first subscription; a configured tenant from its configured
// start when it has one, else as any other tenant, and from the beginning of the ledger's history
// when it has neither usage nor subscriptions at all (it owes base fees from then on).
func (s *Service) existed(ctx context.Context, p rating.Period, began, now time.Time, cand, usedIn map[string]bool, st *state) ([]string, error) {
	keep := make([]string, 0, len(cand))
	var undecided []string
	for t := range cand {
		if start := s.startOf(t); !start.IsZero() {
			if start.Before(p.End()) {
				keep = append(keep, t)
			}
			continue
		}
		if usedIn[t] || st.usedIn[p.Prev()][t] || st.usedIn[p.Prev().Prev()][t] || subscribedBefore(st.subs[t], p.End()) {
			keep = append(keep, t)
			continue
		}
		undecided = append(undecided, t)
	}
	if began.IsZero() {
		// No known history (no Began): every candidate is billed, as configured.
		keep = append(keep, undecided...)
		undecided = nil
	}
	if len(undecided) > 0 {
		// Usage before p means the tenant existed; usage or a subscription only after p means it
		// came later; nothing at all means a configured tenant that owes its base fees.
		before, err := s.tenantSet(ctx, began, p.Start())
		if err != nil {
			return nil, err
		}
		after, err := s.tenantSet(ctx, p.End(), now.Add(time.Hour))
		if err != nil {
			return nil, err
		}
		for _, t := range undecided {
			if before[t] || (!after[t] && len(st.subs[t]) == 0) {
				keep = append(keep, t)
			}
		}
	}
	sort.Strings(keep)
	return keep, nil
}

func (s *Service) startOf(tenant string) time.Time {
	if s.tenantStart == nil {
		return time.Time{}
	}
	return s.tenantStart(tenant)
}

func subscribedBefore(subs []Subscription, t time.Time) bool {
	return len(subs) > 0 && subs[0].Effective.Before(t)
}

// tenantSet is the tenants with usage in [from, to); none when the range is empty.
func (s *Service) tenantSet(ctx context.Context, from, to time.Time) (map[string]bool, error) {
	set := map[string]bool{}
	if !from.Before(to) {
		return set, nil
	}
	ts, err := s.usage.Tenants(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("tenants with usage from %s to %s: %w", from.Format(time.DateOnly), to.Format(time.DateOnly), err)
	}
	for _, t := range ts {
		set[t] = true
	}
	return set, nil
}

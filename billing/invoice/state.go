package invoice

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/rating"
)

// state is the billing state a run needs, read in a few range scans instead of several point
// reads per tenant (a run over 10,000 tenants would otherwise open tens of thousands of
// iterators). It is read under the write lock, so it cannot go stale during the run.
type state struct {
	invoices map[string][]*Invoice // tenant → finalized invoices of periods p-2 .. p+2
	subs     map[string][]Subscription
	closed   map[rating.Period]bool
	credit   map[string]money.Amount
	grants   map[string][]*Grant
	redeemed map[string][]Redemption
	// usedIn holds, for the closed periods before p, the tenants with usage in them.
	usedIn map[rating.Period]map[string]bool
}

// loadState reads the state around period p, for one tenant or for all ("").
func (s *Service) loadState(ctx context.Context, p rating.Period, tenant string) (*state, error) {
	st := &state{invoices: map[string][]*Invoice{}, subs: map[string][]Subscription{},
		closed: map[rating.Period]bool{}, credit: map[string]money.Amount{}, usedIn: map[rating.Period]map[string]bool{}}
	scope := func(prefix string) []byte {
		if tenant == "" {
			return []byte(prefix)
		}
		return append([]byte(prefix+tenant), 0)
	}
	for q := p.Prev().Prev(); !p.Next().Next().Before(q); q = q.Next() {
		closed, err := s.periodClosed(q)
		if err != nil {
			return nil, err
		}
		st.closed[q] = closed
		if closed && q.Before(p) {
			used, err := s.usage.Tenants(ctx, q.Start(), q.End())
			if err != nil {
				return nil, fmt.Errorf("tenants with usage in %s: %w", q, err)
			}
			st.usedIn[q] = map[string]bool{}
			for _, t := range used {
				st.usedIn[q][t] = true
			}
		}
		var nums []string
		if err := scan(s.db, scope(pPInv+q.String()+"\x00"), func(k, _ []byte) error {
			nums = append(nums, string(k[strings.LastIndexByte(string(k), 0)+1:]))
			return nil
		}); err != nil {
			return nil, err
		}
		for _, n := range nums {
			inv, err := s.getStored(n)
			if err != nil {
				return nil, err
			}
			st.invoices[inv.Tenant] = append(st.invoices[inv.Tenant], inv)
		}
	}
	if err := scan(s.db, scope(pSub), func(k, v []byte) error {
		rest := k[len(pSub):]
		if len(rest) < 9 {
			return fmt.Errorf("bad subscription key %q", k)
		}
		t := string(rest[:len(rest)-9])
		ns := int64(binary.BigEndian.Uint64(rest[len(rest)-8:]))
		st.subs[t] = append(st.subs[t], Subscription{Tenant: t, Plan: string(v), Effective: time.Unix(0, ns).UTC()})
		return nil
	}); err != nil {
		return nil, err
	}
	grants, err := s.grantsOf(tenant)
	if err != nil {
		return nil, err
	}
	st.grants = grants
	if st.redeemed, err = s.redemptionsOf(tenant); err != nil {
		return nil, err
	}
	if tenant != "" {
		c, err := getInt(s.db, key(pCredit, tenant))
		st.credit[tenant] = money.Amount(c)
		return st, err
	}
	if err := scan(s.db, []byte(pCredit), func(k, v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("bad credit value under %q", k)
		}
		st.credit[string(k[len(pCredit):])] = money.Amount(int64(binary.BigEndian.Uint64(v)))
		return nil
	}); err != nil {
		return nil, err
	}
	return st, nil
}

// planAt is the plan in force at t given a tenant's subscriptions in time order.
func (s *Service) planAt(tenant string, subs []Subscription, t time.Time) string {
	i := sort.Search(len(subs), func(i int) bool { return subs[i].Effective.After(t) })
	if i == 0 {
		return s.defaultPlan(tenant)
	}
	return subs[i-1].Plan
}

// segmentsOf is the plan timeline of a tenant's period.
func (s *Service) segmentsOf(tenant string, subs []Subscription, p rating.Period) []rating.Segment {
	segs := []rating.Segment{{Plan: s.planAt(tenant, subs, p.Start()), From: p.Start(), To: p.End()}}
	for _, sub := range subs {
		if !sub.Effective.After(p.Start()) || !sub.Effective.Before(p.End()) {
			continue
		}
		last := &segs[len(segs)-1]
		if sub.Plan == last.Plan {
			continue
		}
		last.To = sub.Effective
		segs = append(segs, rating.Segment{Plan: sub.Plan, From: sub.Effective, To: p.End()})
	}
	return segs
}

// closedFor reports whether the tenant's period q is closed: the tenant has a finalized
// invoice for it (void or not), or the period's run was finalized.
func (st *state) closedFor(tenant string, q rating.Period) bool {
	return st.invoicedIn(tenant, q) || st.closed[q]
}

func (st *state) invoicedIn(tenant string, q rating.Period) bool {
	for _, inv := range st.invoices[tenant] {
		if inv.Period == q {
			return true
		}
	}
	return false
}

// adjustable reports whether the tenant's closed period q is re-rated for late usage: it was
// invoiced for q, or it had usage in q although the run that closed q gave it no invoice. A
// tenant with neither (say, one added to the configuration later) owes nothing for q, not even
// the base fee of the plan the configuration now maps it to.
func (st *state) adjustable(tenant string, q rating.Period) bool {
	return st.invoicedIn(tenant, q) || (st.closed[q] && st.usedIn[q][tenant])
}

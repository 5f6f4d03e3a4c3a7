package invoice

import (
	"context"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
)

// KindDiscount is the kind of a coupon's invoice line.
const KindDiscount = "discount"

// Redemption is a coupon a tenant redeemed. It keeps the coupon as it was when redeemed, so
// that re-rating a closed month (late usage) discounts it the same way even if the catalogue's
// coupon changed since.
type Redemption struct {
	Tenant      string         `json:"tenant"`
	Coupon      pricing.Coupon `json:"coupon"`
	FirstPeriod rating.Period  `json:"first_period"` // the month it was redeemed in
	RedeemedAt  time.Time      `json:"redeemed_at"`
}

// activeIn reports whether the redemption discounts period q.
func (r Redemption) activeIn(q rating.Period) bool {
	if q.Before(r.FirstPeriod) {
		return false
	}
	if r.Coupon.Periods == 0 {
		return true
	}
	end := r.FirstPeriod
	for range r.Coupon.Periods {
		end = end.Next()
	}
	return q.Before(end)
}

// RedeemCoupon redeems a catalogue coupon for a tenant from the current month on. A tenant
// redeems a code once; a coupon with max_redemptions refuses (ErrConflict) once that many
// tenants redeemed it.
func (s *Service) RedeemCoupon(_ context.Context, tenant, code string) (*Redemption, error) {
	cat := s.Catalogue()
	c, ok := cat.Coupon(code)
	switch {
	case tenant == "":
		return nil, fmt.Errorf("redeem: %w: a tenant is required", ErrInvalid)
	case !ok:
		return nil, fmt.Errorf("redeem %q: %w: no such coupon", code, ErrNotFound)
	}
	if cur := cat.CurrencyOf(tenant); c.AmountOff > 0 && cur.Code != cat.Currency.Code {
		return nil, fmt.Errorf("redeem %q: %w: its amount is in %s, %s is billed in %s; nothing is converted", code, ErrConflict, cat.Currency.Code, tenant, cur.Code)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key(pRedeem, tenant, code)
	if _, done, err := get(s.db, k); err != nil || done {
		if err == nil {
			err = fmt.Errorf("redeem %q: %w: %s already redeemed it", code, ErrConflict, tenant)
		}
		return nil, err
	}
	count, err := getInt(s.db, []byte(pCouponN+code))
	if err != nil {
		return nil, err
	}
	if c.MaxRedemptions > 0 && count >= int64(c.MaxRedemptions) {
		return nil, fmt.Errorf("redeem %q: %w: its %d redemptions are used up", code, ErrConflict, c.MaxRedemptions)
	}
	now := s.now().UTC()
	r := &Redemption{Tenant: tenant, Coupon: c, FirstPeriod: rating.PeriodOf(now), RedeemedAt: now}
	b := s.db.NewBatch()
	defer b.Close()
	if err := putJSON(b, k, r); err != nil {
		return nil, err
	}
	if err := putInt(b, []byte(pCouponN+code), count+1); err != nil {
		return nil, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, fmt.Errorf("redeem %q: %w", code, err)
	}
	s.log.Info("coupon redeemed", "tenant", tenant, "code", code, "first_period", r.FirstPeriod.String())
	return r, nil
}

// Redemptions lists a tenant's redeemed coupons ("" for every tenant), keyed by tenant, in
// code order.
func (s *Service) Redemptions(_ context.Context, tenant string) (map[string][]Redemption, error) {
	return s.redemptionsOf(tenant)
}

func (s *Service) redemptionsOf(tenant string) (map[string][]Redemption, error) {
	prefix := []byte(pRedeem)
	if tenant != "" {
		prefix = append(key(pRedeem, tenant), 0)
	}
	out := map[string][]Redemption{}
	err := scan(s.db, prefix, func(_, v []byte) error {
		var r Redemption
		if err := jsonUnmarshal(v, &r); err != nil {
			return err
		}
		out[r.Tenant] = append(out[r.Tenant], r)
		return nil
	})
	return out, err
}

// discounts are the coupon lines of period q for rated lines of q: one line per active
// redemption, in code order, each on what the earlier ones left of its base. The base is every
// line (the whole invoice) or the usage lines of the coupon's meters. A percentage is computed
// exactly and rounded once by money.Round; a fixed amount never exceeds its base.
func discounts(rs []Redemption, rated []rating.Line, q rating.Period) []rating.Line {
	var out []rating.Line
	var taken money.Amount // discounts so far, all on the whole invoice's total
	for _, r := range rs {
		if !r.activeIn(q) {
			continue
		}
		c := r.Coupon
		var base money.Amount
		for _, l := range rated {
			if len(c.AppliesTo) == 0 || (l.Kind == rating.KindUsage && slices.Contains(c.AppliesTo, l.Meter)) {
				base += l.Amount
			}
		}
		base = min(base, rating.Sum(rated)-taken) // never below zero in total
		if base <= 0 {
			continue
		}
		var exact *big.Rat
		what := ""
		if p := c.Percent(); p != nil {
			exact = new(big.Rat).Mul(p, new(big.Rat).SetInt64(int64(base)))
			what = c.PercentOff + "% off"
		} else {
			exact = new(big.Rat).SetInt64(int64(min(c.AmountOff, base)))
			what = "fixed amount off"
		}
		exact.Neg(exact)
		amount := money.Round(exact)
		taken -= amount
		scope := "the invoice"
		if len(c.AppliesTo) > 0 {
			scope = fmt.Sprint(c.AppliesTo)
		}
		out = append(out, rating.Line{Key: "discount:" + c.Code, Period: q, Kind: KindDiscount,
			Description: fmt.Sprintf("Coupon %s: %s %s", c.Code, what, scope), From: q.Start(), To: q.End(),
			Quantity: 1, Exact: money.FormatRat(exact, 0), Amount: amount})
	}
	return out
}

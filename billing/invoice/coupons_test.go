package invoice

import (
	"context"
	"errors"
	"testing"
	"time"
)

const couponCatalogue = testCatalogue + `
coupons:
  - {code: HALF, percent_off: "12.5", duration: 1}
  - {code: CALLS, amount_off: "3.00", applies_to: [calls], duration: forever}
  - {code: ONE, percent_off: "10", max_redemptions: 1}
`

// TestCouponsDiscountLinesAndLateUsage: each coupon is its own line, rounded once; a fixed
// coupon on named charges never exceeds them; coupons apply in code order on what is left; a
// one-month coupon stops; late usage re-rates the closed month's discount too, billed once;
// redemption limits hold.
func TestCouponsDiscountLinesAndLateUsage(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, couponCatalogue, map[string]string{"acme": "pro"})
	f.usage.Add("acme", "calls", day(10, 5), 600) // 10.00 base + 500 × 1c
	f.setNow(day(10, 20))
	for _, code := range []string{"HALF", "CALLS"} {
		if _, err := f.svc.RedeemCoupon(ctx, "acme", code); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.RedeemCoupon(ctx, "acme", "HALF"); !errors.Is(err, ErrConflict) {
		t.Errorf("second redemption by the same tenant: %v", err)
	}
	if _, err := f.svc.RedeemCoupon(ctx, "zeta", "ONE"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RedeemCoupon(ctx, "beta", "ONE"); !errors.Is(err, ErrConflict) {
		t.Errorf("past max_redemptions: %v", err)
	}
	if _, err := f.svc.RedeemCoupon(ctx, "acme", "NOPE"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown coupon: %v", err)
	}

	f.setNow(time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC))
	if _, err := f.svc.Run(ctx, oct); err != nil {
		t.Fatal(err)
	}
	inv, err := f.svc.Get(ctx, "INV-00000001")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, l := range inv.Lines {
		if l.Kind == KindDiscount {
			got[l.Key] = int64(l.Amount)
		}
	}
	// CALLS: min(3.00, the 5.00 of calls) = -3.00; HALF: 12.5 % of the 12.00 left = -1.50.
	if got["discount:CALLS"] != -300 || got["discount:HALF"] != -150 || inv.Subtotal != 1500-450 {
		t.Fatalf("October: discounts %v, subtotal %d", got, inv.Subtotal)
	}

	// 100 late calls for October: the CALLS discount stays 3.00, HALF is now 12.5 % of 13.00 =
	// 1.625, rounded once to 1.63 (halves away from zero): an adjustment of -0.13 next month.
	f.usage.Add("acme", "calls", day(10, 30), 100)
	f.setNow(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC))
	if _, err := f.svc.Run(ctx, nov); err != nil {
		t.Fatal(err)
	}
	novs, err := f.svc.List(ctx, Filter{Tenant: "acme", Period: &nov})
	if err != nil || len(novs) != 1 {
		t.Fatalf("November: %v %v", novs, err)
	}
	novInv := novs[0]
	var adjCalls, adjHalf, discNov int64
	for _, l := range novInv.Lines {
		switch {
		case l.Kind == "adjustment" && l.Key == "discount:HALF":
			adjHalf += int64(l.Amount)
		case l.Kind == "adjustment" && l.Meter == "calls":
			adjCalls += int64(l.Amount)
		case l.Kind == KindDiscount:
			discNov += int64(l.Amount)
		}
	}
	// November: HALF (one month) no longer applies; CALLS has no November calls to discount.
	if adjCalls != 100 || adjHalf != -13 || discNov != 0 || novInv.Subtotal != 1000+100-13 {
		t.Fatalf("November: adjustments calls %d half %d, discounts %d, subtotal %d\n%+v", adjCalls, adjHalf, discNov, novInv.Subtotal, novInv.Lines)
	}
	// Billed once: the next run finds nothing left to adjust for October.
	f.setNow(time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC))
	if _, err := f.svc.Run(ctx, dec); err != nil {
		t.Fatal(err)
	}
	invs, _ := f.svc.List(ctx, Filter{Tenant: "acme", Period: &dec})
	for _, l := range invs[0].Lines {
		if l.Period == oct {
			t.Errorf("October billed again in December: %+v", l)
		}
	}
}

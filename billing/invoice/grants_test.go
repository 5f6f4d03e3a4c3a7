package invoice

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/billing/money"
)

func at(m time.Month, d int) *time.Time { t := time.Date(2026, m, d, 0, 0, 0, 0, time.UTC); return &t }

// TestGrantsDrawnInPriorityThenExpiryOrder: grants are drawn before prepaid credit, lowest
// priority first, then the one expiring first; grants not yet effective or already expired are
// not drawn; voiding gives the amounts back; ExpireGrants records what is left at expiry.
func TestGrantsDrawnInPriorityThenExpiryOrder(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testCatalogue, map[string]string{"acme": "pro"})
	f.usage.Add("acme", "calls", day(10, 5), 600) // 10.00 base + 500 × 1c = 15.00
	f.setNow(day(10, 20))
	mk := func(amount money.Amount, prio int, effective, expires *time.Time) string {
		t.Helper()
		in := GrantInput{Tenant: "acme", Kind: GrantPromotional, Amount: amount, Priority: prio, Expires: expires}
		if effective != nil {
			in.Effective = *effective
		}
		g, err := f.svc.CreateGrant(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return g.ID
	}
	a := mk(300, 1, nil, at(12, 1))
	b := mk(200, 1, nil, at(11, 15)) // same priority, expires first: drawn before a
	c := mk(400, 0, nil, nil)        // priority 0: drawn first, though it never expires
	mk(1000, 0, at(12, 1), nil)      // not effective at finalization
	expired := mk(500, 0, nil, at(11, 1))
	if _, err := f.svc.RecordPayment(ctx, PaymentInput{Tenant: "acme", Amount: 100}); err != nil { // prepaid credit
		t.Fatal(err)
	}
	for _, bad := range []GrantInput{
		{Tenant: "acme", Kind: GrantPromotional, Amount: 0},
		{Tenant: "acme", Kind: "gift", Amount: 1},
		{Tenant: "acme", Kind: GrantPurchased, Amount: 1, Currency: "EUR"},
		{Tenant: "acme", Kind: GrantPurchased, Amount: 1, Effective: *at(11, 2), Expires: at(11, 1)},
	} {
		if _, err := f.svc.CreateGrant(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("grant %+v: %v", bad, err)
		}
	}

	f.setNow(time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC))
	if _, err := f.svc.Run(ctx, oct); err != nil {
		t.Fatal(err)
	}
	inv, err := f.svc.Get(ctx, "INV-00000001")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint([]GrantUse{{c, inv.Number, 400}, {b, inv.Number, 200}, {a, inv.Number, 300}})
	if fmt.Sprint(inv.Grants) != want || inv.GrantsApplied != 900 || inv.CreditApplied != 100 || inv.AmountDue != 1500-900-100 {
		t.Fatalf("invoice: grants %v (want %s), grants %d, credit %d, due %d", inv.Grants, want, inv.GrantsApplied, inv.CreditApplied, inv.AmountDue)
	}
	bal, err := f.svc.Grants(ctx, "acme")
	if err != nil || bal.Granted != 2400 || bal.Used != 900 || bal.Available != 0 || bal.Pending != 1000 || bal.Expired != 0 {
		t.Fatalf("balance after finalization: %+v %v", bal, err)
	}

	// Voiding gives everything back, grants and prepaid credit.
	f.setNow(time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC))
	if _, err := f.svc.Void(ctx, inv.Number, "test"); err != nil {
		t.Fatal(err)
	}
	bal, _ = f.svc.Grants(ctx, "acme")
	if bal.Used != 0 || bal.Available != 900 {
		t.Fatalf("balance after void: %+v", bal)
	}
	// On 16 November b (200) has expired, and so has the one that expired on 1 November (500).
	f.setNow(time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC))
	total, err := f.svc.ExpireGrants(ctx)
	if err != nil || total != 700 {
		t.Fatalf("expired %d, want 700: %v", total, err)
	}
	if again, _ := f.svc.ExpireGrants(ctx); again != 0 {
		t.Errorf("expired twice: %d", again)
	}
	bal, _ = f.svc.Grants(ctx, "acme")
	if bal.Expired != 700 || bal.Available != 700 || bal.Granted-bal.Used-bal.Expired != bal.Available+bal.Pending {
		t.Fatalf("balance after expiry: %+v", bal)
	}
	for _, g := range bal.Grants {
		if g.ID == expired && (g.Used != 0 || g.Expired != 500) {
			t.Errorf("the grant expired before finalization was drawn on: %+v", g)
		}
	}
}

// propGrant is a grant of the property test, with what the independent draw expects of it.
type propGrant struct {
	id                   string
	amount               int64
	prio                 int
	effective            time.Time
	expires              *time.Time
	order                int // creation order
	wantUsed             int64
	usableAtFinalization bool
}

// randomGrants gives a tenant up to three grants, some not yet effective or already expired at
// finalization (at), and up to 20.00 of prepaid credit; it returns the grants and the credit.
func randomGrants(t *testing.T, r interface {
	IntN(int) int
	Int64N(int64) int64
}, f *fixture, tenant string, at time.Time) ([]*propGrant, int64) {
	t.Helper()
	var gs []*propGrant
	for i := r.IntN(4); i > 0; i-- {
		g := &propGrant{amount: 1 + r.Int64N(200_000), prio: r.IntN(3), effective: at.Add(-time.Duration(1+r.IntN(30)) * 24 * time.Hour), order: len(gs)}
		switch r.IntN(4) {
		case 0: // never expires
		case 1: // expired before finalization
			e := at.Add(-time.Hour)
			g.expires = &e
		default:
			e := at.Add(time.Duration(1+r.IntN(60)) * 24 * time.Hour)
			g.expires = &e
		}
		if r.IntN(5) == 0 { // effective only after finalization
			g.effective = at.Add(time.Hour)
			if g.expires != nil && !g.expires.After(g.effective) {
				e := g.effective.Add(time.Hour)
				g.expires = &e
			}
		}
		g.usableAtFinalization = !at.Before(g.effective) && (g.expires == nil || at.Before(*g.expires))
		created, err := f.svc.CreateGrant(context.Background(), GrantInput{Tenant: tenant, Kind: GrantPurchased, Amount: money.Amount(g.amount),
			Priority: g.prio, Effective: g.effective, Expires: g.expires})
		if err != nil {
			t.Fatal(err)
		}
		g.id = created.ID
		gs = append(gs, g)
	}
	credit := r.Int64N(2001)
	if credit > 0 {
		if _, err := f.svc.RecordPayment(context.Background(), PaymentInput{Tenant: tenant, Amount: money.Amount(credit)}); err != nil {
			t.Fatal(err)
		}
	}
	return gs, credit
}

// expectDraw is the independent draw: usable grants by priority, then expiry (none last), then
// creation; then prepaid credit. It returns grants applied, credit applied and amount due.
func expectDraw(subtotal int64, gs []*propGrant, credit int64) (int64, int64, int64) {
	order := append([]*propGrant(nil), gs...)
	for i := 1; i < len(order); i++ { // insertion sort, written independently of drawOrder
		for j := i; j > 0 && before(order[j], order[j-1]); j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	left := max(subtotal, 0)
	var grants int64
	for _, g := range order {
		if !g.usableAtFinalization || left == 0 {
			continue
		}
		take := min(left, g.amount)
		g.wantUsed = take
		grants += take
		left -= take
	}
	applied := min(credit, left)
	return grants, applied, left - applied
}

func before(a, b *propGrant) bool {
	if a.prio != b.prio {
		return a.prio < b.prio
	}
	ae, be := int64(1<<62), int64(1<<62)
	if a.expires != nil {
		ae = a.expires.UnixNano()
	}
	if b.expires != nil {
		be = b.expires.UnixNano()
	}
	if ae != be {
		return ae < be
	}
	return a.order < b.order
}

// checkDraw compares an invoice and its tenant's grants with the independent draw.
func checkDraw(t *testing.T, f *fixture, inv *Invoice, gross int64, gs []*propGrant, credit int64) {
	t.Helper()
	wantGrants, wantCredit, wantDue := expectDraw(gross, gs, credit)
	if int64(inv.GrantsApplied) != wantGrants || int64(inv.CreditApplied) != wantCredit || int64(inv.AmountDue) != wantDue {
		t.Fatalf("tenant %s subtotal %d: grants %d credit %d due %d, independent draw %d %d %d",
			inv.Tenant, inv.Subtotal, inv.GrantsApplied, inv.CreditApplied, inv.AmountDue, wantGrants, wantCredit, wantDue)
	}
	bal, err := f.svc.Grants(context.Background(), inv.Tenant)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range bal.Grants {
		for _, pg := range gs {
			if pg.id == g.ID && int64(g.Used) != pg.wantUsed {
				t.Fatalf("tenant %s grant %s: used %d, independent draw %d", inv.Tenant, g.ID, g.Used, pg.wantUsed)
			}
		}
	}
}

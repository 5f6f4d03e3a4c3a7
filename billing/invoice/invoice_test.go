package invoice

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/billing/internal/usagetest"
	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
)

const testCatalogue = `
currency: USD
grace_period: 72h
seller: {name: Seller Ltd}
plans:
  - name: free
    charges:
      - {meter: calls, model: per_unit, unit_price: "0", included: 100}
  - name: pro
    base_fee: "10.00"
    charges:
      - {meter: calls, model: per_unit, unit_price: "0.01", included: 100}
      - {meter: storage, model: per_unit, unit_price: "0.50"}
`

type fixture struct {
	svc   *Service
	usage *usagetest.Usage
	db    *pebble.DB
	mu    sync.Mutex
	now   time.Time
}

func (f *fixture) setNow(t time.Time) { f.mu.Lock(); f.now = t; f.mu.Unlock() }

func mustCatalogue(t testing.TB, src string) pricing.Catalogue {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	c, err := pricing.ParseConfig(&n)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newFixture(t testing.TB, cat string, plans map[string]string) *fixture {
	t.Helper()
	f := &fixture{usage: usagetest.New("storage"), db: usagetest.OpenDB(t)}
	svc, err := New(Options{DB: f.db, Catalogue: mustCatalogue(t, cat), Usage: f.usage, Stock: f.usage.IsStock,
		DefaultPlan: func(tenant string) string {
			if p, ok := plans[tenant]; ok {
				return p
			}
			return "free"
		},
		Now: func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

var (
	oct = rating.Period{Year: 2026, Month: time.October}
	nov = rating.Period{Year: 2026, Month: time.November}
	dec = rating.Period{Year: 2026, Month: time.December}
)

func day(m time.Month, d int) time.Time { return time.Date(2026, m, d, 12, 0, 0, 0, time.UTC) }

func lineOf(inv *Invoice, kind, meter string, period rating.Period) *rating.Line {
	for i := range inv.Lines {
		l := &inv.Lines[i]
		if l.Kind == kind && l.Meter == meter && l.Period == period {
			return l
		}
	}
	return nil
}

func TestGracePeriodThenFinalize(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testCatalogue, map[string]string{"acme": "pro", "beta": "pro"})
	f.usage.Add("acme", "calls", day(10, 5), 350) // 250 billable × 1c
	f.usage.Add("beta", "calls", day(10, 6), 100)
	f.usage.Add("zeta", "calls", day(10, 7), 5) // free plan: a zero invoice, still issued for usage

	f.setNow(day(11, 2))
	res, err := f.svc.Run(ctx, oct)
	if err != nil {
		t.Fatal(err)
	}
	if res.Drafts != 3 || res.Finalized != 0 {
		t.Fatalf("during grace: %+v", res)
	}
	draft, err := f.svc.Get(ctx, DraftID(oct, "acme"))
	if err != nil || draft.Status != Draft || draft.Number != "" || draft.Subtotal != 1000+250 {
		t.Fatalf("draft = %+v, %v", draft, err)
	}
	if _, err := f.svc.Finalize(ctx, draft.ID); !errors.Is(err, ErrGracePeriod) {
		t.Fatalf("finalize during grace: %v", err)
	}
	// A late event inside the grace period still counts.
	f.usage.Add("acme", "calls", day(10, 30), 50)
	f.setNow(time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC)) // Nov 1 + 72h: grace over
	inv, err := f.svc.Finalize(ctx, draft.ID)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Number != "INV-00000001" || inv.Status != Finalized || inv.Subtotal != 1000+300 || inv.AmountDue != 1300 {
		t.Fatalf("finalized = %+v", inv)
	}
	if _, err := f.svc.Get(ctx, draft.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("draft still there after finalization: %v", err)
	}
	res, err = f.svc.Run(ctx, oct)
	if err != nil {
		t.Fatal(err)
	}
	if res.Finalized != 2 || res.Skipped != 1 || fmt.Sprint(res.Invoices) != "[INV-00000002 INV-00000003]" {
		t.Fatalf("run after grace: %+v", res)
	}
	zeta, _ := f.svc.Get(ctx, "INV-00000003")
	if zeta.Tenant != "zeta" || zeta.Status != Paid || zeta.Subtotal != 0 {
		t.Errorf("zero invoice: %+v", zeta)
	}
	// Running again issues nothing and changes nothing.
	res, err = f.svc.Run(ctx, oct)
	if err != nil || res.Finalized != 0 || res.Skipped != 3 {
		t.Fatalf("rerun: %+v %v", res, err)
	}
	// A finalized invoice cannot be finalized again.
	if _, err := f.svc.Finalize(ctx, DraftID(oct, "acme")); !errors.Is(err, ErrNotFound) {
		t.Errorf("second finalize: %v", err)
	}
}

// TestLateEventsBilledOnceOnTheNextInvoice: usage that arrives after October's invoice is final
// shows up as an adjustment on November's invoice, never on both, never lost.
func TestLateEventsBilledOnceOnTheNextInvoice(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testCatalogue, map[string]string{"acme": "pro"})
	f.usage.Add("acme", "calls", day(10, 5), 300)
	f.usage.Add("acme", "storage", day(10, 5), 4) // level 4 → 200c
	f.setNow(day(11, 5))
	if _, err := f.svc.Run(ctx, oct); err != nil {
		t.Fatal(err)
	}
	octInv, err := f.svc.Get(ctx, "INV-00000001")
	if err != nil || octInv.Subtotal != 1000+200+200 {
		t.Fatalf("october: %+v %v", octInv, err)
	}
	// Late: 40 more calls on Oct 31, and the storage level was really 6 at the end of October.
	f.usage.Add("acme", "calls", day(10, 31), 40)
	f.usage.Add("acme", "storage", day(10, 31), 6)
	f.usage.Add("acme", "calls", day(11, 10), 100) // November: within the allowance
	again, _ := f.svc.Get(ctx, "INV-00000001")
	if again.Subtotal != octInv.Subtotal || len(again.Lines) != len(octInv.Lines) {
		t.Fatalf("a finalized invoice changed: %+v", again)
	}
	if res, _ := f.svc.Run(ctx, oct); res.Finalized != 0 {
		t.Fatalf("october re-invoiced: %+v", res)
	}
	f.setNow(day(12, 5))
	if _, err := f.svc.Run(ctx, nov); err != nil {
		t.Fatal(err)
	}
	novInv, err := f.svc.Get(ctx, "INV-00000002")
	if err != nil {
		t.Fatal(err)
	}
	calls := lineOf(novInv, rating.KindAdjustment, "calls", oct)
	storage := lineOf(novInv, rating.KindAdjustment, "storage", oct)
	if calls == nil || calls.Quantity != 40 || calls.Amount != 40 || storage == nil || storage.Quantity != 2 || storage.Amount != 100 {
		t.Fatalf("adjustments: calls %+v storage %+v", calls, storage)
	}
	// November itself: base 1000, 100 calls (allowance), storage level 6 → 300.
	if novInv.Subtotal != 1000+0+300+40+100 {
		t.Fatalf("november subtotal %d, lines %+v", novInv.Subtotal, novInv.Lines)
	}
	// December: nothing new for October → no adjustment; a later late event is billed once.
	f.usage.Add("acme", "calls", day(10, 31), 7)
	f.setNow(time.Date(2027, 1, 5, 0, 0, 0, 0, time.UTC))
	if _, err := f.svc.Run(ctx, dec); err != nil {
		t.Fatal(err)
	}
	decInv, _ := f.svc.Get(ctx, "INV-00000003")
	adj := lineOf(decInv, rating.KindAdjustment, "calls", oct)
	if adj == nil || adj.Quantity != 7 || adj.Amount != 7 || lineOf(decInv, rating.KindAdjustment, "storage", oct) != nil {
		t.Fatalf("december lines: %+v", decInv.Lines)
	}
	for _, l := range decInv.Lines {
		if l.Kind == rating.KindAdjustment && l.Period == nov {
			t.Errorf("spurious november adjustment: %+v", l)
		}
	}
}

func TestPaymentsCreditsAndStatement(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testCatalogue, map[string]string{"acme": "pro"})
	f.usage.Add("acme", "calls", day(10, 5), 600) // 500 × 1c + 10.00 base = 15.00
	f.setNow(day(10, 20))
	// A prepayment of 4.00 before the invoice exists: drawn down at finalization.
	pre, err := f.svc.RecordPayment(ctx, PaymentInput{Tenant: "acme", Amount: 400, Method: "card"})
	if err != nil || pre.ID != "PAY-00000001" || pre.ToCredit != 400 {
		t.Fatalf("prepayment: %+v %v", pre, err)
	}
	f.setNow(day(11, 5))
	if _, err := f.svc.Run(ctx, oct); err != nil {
		t.Fatal(err)
	}
	inv, _ := f.svc.Get(ctx, "INV-00000001")
	if inv.Subtotal != 1500 || inv.CreditApplied != 400 || inv.AmountDue != 1100 || inv.AmountRemaining != 1100 {
		t.Fatalf("invoice: %+v", inv)
	}
	bal, _ := f.svc.Balance(ctx, "acme")
	if bal.Outstanding != 1100 || bal.Credit != 0 || bal.Balance != 1100 || bal.OpenInvoices != 1 {
		t.Fatalf("balance: %+v", bal)
	}
	// Validation.
	for _, in := range []PaymentInput{
		{Invoice: inv.Number, Amount: 0},
		{Invoice: inv.Number, Amount: 10, Currency: "EUR"},
		{Invoice: inv.Number, Tenant: "other", Amount: 10},
		{Amount: 10},
	} {
		if _, err := f.svc.RecordPayment(ctx, in); !errors.Is(err, ErrInvalid) {
			t.Errorf("payment %+v: %v", in, err)
		}
	}
	if _, err := f.svc.RecordPayment(ctx, PaymentInput{Invoice: "INV-99999999", Amount: 10}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown invoice: %v", err)
	}
	// Partial payment, credit note, then an overpayment that becomes credit.
	if _, err := f.svc.RecordPayment(ctx, PaymentInput{Invoice: inv.Number, Amount: 600}); err != nil {
		t.Fatal(err)
	}
	cn, err := f.svc.IssueCreditNote(ctx, inv.Number, 300, "goodwill")
	if err != nil || cn.Number != "CN-00000001" || cn.ToCredit != 0 {
		t.Fatalf("credit note: %+v %v", cn, err)
	}
	if _, err := f.svc.IssueCreditNote(ctx, inv.Number, 1201, "too much"); !errors.Is(err, ErrInvalid) {
		t.Errorf("credit note above the subtotal: %v", err)
	}
	over, err := f.svc.RecordPayment(ctx, PaymentInput{Invoice: inv.Number, Amount: 500})
	if err != nil || over.Applied != 200 || over.ToCredit != 300 {
		t.Fatalf("overpayment: %+v %v", over, err)
	}
	inv, _ = f.svc.Get(ctx, inv.Number)
	if inv.Status != Paid || inv.AmountRemaining != 0 || inv.AmountPaid != 800 || inv.AmountCredited != 300 || inv.PaidAt == nil {
		t.Fatalf("paid invoice: %+v", inv)
	}
	if _, err := f.svc.Void(ctx, inv.Number, "oops"); !errors.Is(err, ErrConflict) {
		t.Errorf("void of a paid invoice: %v", err)
	}
	bal, _ = f.svc.Balance(ctx, "acme")
	if bal.Outstanding != 0 || bal.Credit != 300 || bal.Balance != -300 {
		t.Fatalf("balance after overpayment: %+v", bal)
	}
	st, err := f.svc.Statement(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	// 400 prepaid, +1500 invoice, -600, -300 credit note, -500 → -300.
	if len(st.Entries) != 5 || st.Entries[len(st.Entries)-1].Balance != bal.Balance {
		t.Fatalf("statement: %+v", st)
	}
	// The 3.00 of credit is drawn down by November's invoice (10.00 base, no usage).
	f.setNow(day(12, 5))
	if _, err := f.svc.Run(ctx, nov); err != nil {
		t.Fatal(err)
	}
	novInv, _ := f.svc.Get(ctx, "INV-00000002")
	if novInv.CreditApplied != 300 || novInv.AmountDue != 700 {
		t.Fatalf("november: %+v", novInv)
	}
	st, _ = f.svc.Statement(ctx, "acme")
	bal, _ = f.svc.Balance(ctx, "acme")
	if last := st.Entries[len(st.Entries)-1]; last.Balance != bal.Balance || bal.Balance != 700 {
		t.Fatalf("statement %d vs balance %+v", last.Balance, bal)
	}
}

// TestVoidRebills: a voided invoice bills nothing, gives back the credit it used, and its
// usage is billed again by the next run for the period.
func TestVoidRebills(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testCatalogue, map[string]string{"acme": "pro"})
	f.usage.Add("acme", "calls", day(10, 5), 200)
	f.setNow(day(10, 20))
	if _, err := f.svc.RecordPayment(ctx, PaymentInput{Tenant: "acme", Amount: 250}); err != nil {
		t.Fatal(err)
	}
	f.setNow(day(11, 5))
	if _, err := f.svc.Run(ctx, oct); err != nil {
		t.Fatal(err)
	}
	inv, _ := f.svc.Get(ctx, "INV-00000001")
	if inv.CreditApplied != 250 || inv.AmountDue != 850 {
		t.Fatalf("invoice: %+v", inv)
	}
	v, err := f.svc.Void(ctx, inv.Number, "wrong customer address")
	if err != nil || v.Status != Void {
		t.Fatalf("void: %+v %v", v, err)
	}
	if _, err := f.svc.RecordPayment(ctx, PaymentInput{Invoice: inv.Number, Amount: 1}); !errors.Is(err, ErrConflict) {
		t.Errorf("payment on a void invoice: %v", err)
	}
	if bal, _ := f.svc.Balance(ctx, "acme"); bal.Credit != 250 || bal.Outstanding != 0 {
		t.Fatalf("credit not restored: %+v", bal)
	}
	res, err := f.svc.Run(ctx, oct)
	if err != nil || res.Finalized != 1 {
		t.Fatalf("reissue: %+v %v", res, err)
	}
	re, _ := f.svc.Get(ctx, "INV-00000002")
	if re.Subtotal != inv.Subtotal || re.CreditApplied != 250 {
		t.Fatalf("reissued: %+v", re)
	}
	st, _ := f.svc.Statement(ctx, "acme")
	bal, _ := f.svc.Balance(ctx, "acme")
	if st.Entries[len(st.Entries)-1].Balance != bal.Balance || bal.Balance != 850 {
		t.Fatalf("statement %+v balance %+v", st.Entries, bal)
	}
}

func TestPlanChange(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testCatalogue, nil)
	f.usage.Add("acme", "calls", day(10, 2), 500)
	f.usage.Add("acme", "calls", day(10, 20), 300)
	f.setNow(day(10, 16))
	change := time.Date(2026, 10, 16, 0, 0, 0, 0, time.UTC)
	if _, err := f.svc.ChangePlan(ctx, "acme", "gold", change); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown plan: %v", err)
	}
	if _, err := f.svc.ChangePlan(ctx, "acme", "pro", change); err != nil {
		t.Fatal(err)
	}
	for at, want := range map[time.Time]string{day(10, 1): "free", change.Add(-time.Second): "free", change: "pro", day(12, 1): "pro"} {
		if got, _ := f.svc.PlanAt(ctx, "acme", at); got != want {
			t.Errorf("PlanAt(%s) = %s, want %s", at, got, want)
		}
	}
	f.setNow(day(11, 5))
	if _, err := f.svc.Run(ctx, oct); err != nil {
		t.Fatal(err)
	}
	inv, _ := f.svc.Get(ctx, "INV-00000001")
	// free for 15/31 of October (calls free), pro for 16/31: base 1000×16/31 = 516.13 → 516,
	// 300 calls with floor(100×16/31) = 51 included → 249c.
	if len(inv.Segments) != 2 || inv.Subtotal != 516+249 {
		t.Fatalf("prorated invoice: %d %+v", inv.Subtotal, inv.Lines)
	}
	// October is invoiced: a change inside it would rewrite a final invoice.
	if _, err := f.svc.ChangePlan(ctx, "acme", "free", day(10, 25)); !errors.Is(err, ErrConflict) {
		t.Errorf("change in a closed period: %v", err)
	}
	// A later decision drops changes scheduled after it.
	if _, err := f.svc.ChangePlan(ctx, "acme", "free", day(12, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ChangePlan(ctx, "acme", "pro", day(11, 20)); err != nil {
		t.Fatal(err)
	}
	subs, _ := f.svc.Subscriptions(ctx, "acme")
	if len(subs) != 2 || subs[1].Plan != "pro" || !subs[1].Effective.Equal(day(11, 20)) {
		t.Fatalf("subscriptions: %+v", subs)
	}
}

// TestNumberingConcurrent: finalizations, credit notes and payments racing from many goroutines
// get unique, gap-free numbers.
func TestNumberingConcurrent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testCatalogue, nil)
	const n = 40
	for i := 0; i < n; i++ {
		f.usage.Add(fmt.Sprintf("t%02d", i), "calls", day(10, 3), 1)
	}
	f.setNow(day(11, 2))
	if res, err := f.svc.Run(ctx, oct); err != nil || res.Drafts != n {
		t.Fatalf("drafts: %+v %v", res, err)
	}
	f.setNow(day(11, 5))
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		wg.Add(2)
		go func(i int) {
			defer wg.Done()
			_, err := f.svc.Finalize(ctx, DraftID(oct, fmt.Sprintf("t%02d", i)))
			errs <- err
		}(i)
		go func(i int) {
			defer wg.Done()
			_, err := f.svc.RecordPayment(ctx, PaymentInput{Tenant: fmt.Sprintf("t%02d", i), Amount: money.Amount(i + 1)})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	invs, _ := f.svc.List(ctx, Filter{})
	pays, _ := f.svc.Payments(ctx, "")
	if len(invs) != n || len(pays) != n {
		t.Fatalf("%d invoices, %d payments", len(invs), len(pays))
	}
	for i := range invs {
		if want := fmt.Sprintf("INV-%08d", i+1); invs[i].Number != want {
			t.Errorf("invoice %d numbered %s, want %s", i, invs[i].Number, want)
		}
		if want := fmt.Sprintf("PAY-%08d", i+1); pays[i].ID != want {
			t.Errorf("payment %d numbered %s, want %s", i, pays[i].ID, want)
		}
	}
}

func TestProviderPaymentIdempotent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testCatalogue, map[string]string{"acme": "pro"})
	f.setNow(day(11, 5))
	f.usage.Add("acme", "calls", day(10, 3), 100)
	if _, err := f.svc.Run(ctx, oct); err != nil {
		t.Fatal(err)
	}
	in := PaymentInput{Invoice: "INV-00000001", Amount: 1000, Method: "stripe", Reference: "pi_1"}
	p1, dup, err := f.svc.RecordProviderPayment(ctx, "stripe", "evt_1", in)
	if err != nil || dup {
		t.Fatal(dup, err)
	}
	p2, dup, err := f.svc.RecordProviderPayment(ctx, "stripe", "evt_1", in)
	if err != nil || !dup || p2.ID != p1.ID {
		t.Fatalf("replay: %+v %v %v", p2, dup, err)
	}
	if pays, _ := f.svc.Payments(ctx, "acme"); len(pays) != 1 {
		t.Fatalf("%d payments after a replay", len(pays))
	}
	if inv, _ := f.svc.Get(ctx, "INV-00000001"); inv.Status != Paid {
		t.Fatalf("invoice not paid: %+v", inv)
	}
}

// TestLateTenants: a tenant whose only October usage arrived after October was closed is billed
// for October on its November invoice; a tenant added to the configuration in November is not
// billed for October.
func TestLateTenants(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testCatalogue, map[string]string{"late": "pro", "newco": "pro", "acme": "free"})
	f.usage.Add("acme", "calls", day(10, 3), 1)
	f.setNow(day(11, 5))
	if res, err := f.svc.Run(ctx, oct); err != nil || res.Finalized != 1 {
		t.Fatalf("october: %+v %v", res, err)
	}
	f.usage.Add("late", "calls", day(10, 31), 150) // arrives after October was closed
	f.svc.tenants = func() []string { return []string{"newco"} }
	f.setNow(day(12, 5))
	if _, err := f.svc.Run(ctx, nov); err != nil {
		t.Fatal(err)
	}
	invs, _ := f.svc.List(ctx, Filter{Period: &nov})
	got := map[string]*Invoice{}
	for _, inv := range invs {
		got[inv.Tenant] = inv
	}
	// late: November's base fee (1000), and October on pro as adjustments (base 1000 + 50 calls).
	if inv := got["late"]; inv == nil || inv.Subtotal != 2050 || lineOf(inv, rating.KindAdjustment, "calls", oct) == nil {
		t.Fatalf("late tenant: %+v", inv)
	}
	// newco: November's base fee only.
	if inv := got["newco"]; inv == nil || inv.Subtotal != 1000 || len(inv.Lines) != 3 {
		t.Fatalf("new tenant: %+v", inv)
	}
	for _, l := range got["newco"].Lines {
		if l.Period != nov {
			t.Errorf("new tenant billed for %s: %+v", l.Period, l)
		}
	}
}

package billing

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/usagemeter/usagemeter/billing/internal/stripemock"
	"github.com/usagemeter/usagemeter/billing/internal/usagetest"
	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/authz"
)

// dunningWorld: acme on pro, whose schedule is days 1, 3, 7 with hard_deny; its October
// invoice is finalized on 10 November and due on 24 November (14 days' terms).
func dunningWorld(t *testing.T) (*Service, *clock, *audit.Log, *invoice.Invoice) {
	t.Helper()
	svc, clk, u, _ := server(t)
	cat := svc.Catalogue()
	for i := range cat.Plans {
		if cat.Plans[i].Name == "pro" {
			cat.Plans[i].Dunning = &pricing.Dunning{RetryDays: []int{1, 3, 7}, Consequence: pricing.ConsequenceHardDeny}
		}
	}
	svc.SetCatalogue(cat)
	log, err := audit.Open(usagetest.OpenDB(t), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close() })
	svc.Audit = log
	u.Add("acme", "ai_requests", time.Date(2026, 10, 3, 0, 0, 0, 0, time.UTC), 1000)
	clk.set(time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC))
	if _, err := svc.Run(context.Background(), rating.Period{Year: 2026, Month: time.October}); err != nil {
		t.Fatal(err)
	}
	invs, err := svc.List(context.Background(), invoice.Filter{Tenant: "acme"})
	if err != nil || len(invs) != 1 || invs[0].DueAt == nil || !invs[0].DueAt.Equal(time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("acme's invoice: %+v %v", invs, err)
	}
	return svc, clk, log, invs[0]
}

func admit(t *testing.T, e *authz.Engine, svc *Service) authz.QuotaDecision {
	t.Helper()
	limit := int64(100)
	in := authz.QuotaInput{Tenant: "acme", Meter: "ai_tokens", Plan: "pro", Amount: 1, Used: 0, Limit: &limit, Enforcement: "hard"}
	if r := svc.BillingHold(context.Background(), "acme"); r != "" {
		in.BillingHold = &authz.BillingHold{Reason: r}
	}
	d, err := e.Admit(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDunningScheduleHoldAndRelease walks the schedule day by day: a step is taken once when
// its day comes, each is audited and counted, the last one puts the tenant on hold so that the
// real quota policy denies it, and paying lifts the hold.
func TestDunningScheduleHoldAndRelease(t *testing.T) {
	svc, clk, log, inv := dunningWorld(t)
	engine, err := authz.New(context.Background(), authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	steps := func(at time.Time, want int) DunningResult {
		t.Helper()
		clk.set(at)
		res, err := svc.RunDunning(context.Background())
		if err != nil || res.Steps != want {
			t.Fatalf("dunning on %s: %+v %v, want %d steps", at.Format(time.DateOnly), res, err, want)
		}
		return res
	}
	steps(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC), 0) // overdue by hours: day 1 not reached
	steps(time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), 1)  // day 1
	steps(time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC), 0)  // same step: not twice
	steps(time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), 1)  // day 3
	if d := admit(t, engine, svc); d.Result != authz.ResultAllow {
		t.Fatalf("before the last step the tenant is admitted: %+v", d)
	}
	res := steps(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), 1) // day 7: the last, hard_deny
	if res.Holds != 1 {
		t.Fatalf("the last step did not hold the tenant: %+v", res)
	}
	d := admit(t, engine, svc)
	if d.Result != authz.ResultDeny || !strings.Contains(d.Reason, "billing hold: invoice "+inv.Number+" is overdue since 2026-11-24") {
		t.Fatalf("held tenant admitted: %+v", d)
	}
	if r := svc.BillingHold(context.Background(), "beta"); r != "" {
		t.Errorf("beta is held: %q", r)
	}
	rec, err := svc.DunningOf(context.Background(), inv.Number)
	if err != nil || rec.Step != 3 || !rec.Held || len(rec.History) != 3 || rec.History[0].Action != "reminder" {
		t.Fatalf("dunning record: %+v %v", rec, err)
	}
	if got := testutil.ToFloat64(svc.dun.steps.WithLabelValues("1", "reminder", "ok")); got != 1 {
		t.Errorf("step 1 counted %v times", got)
	}
	if got := testutil.ToFloat64(svc.dun.holds); got != 1 {
		t.Errorf("holds gauge %v, want 1", got)
	}
	entries, err := log.List(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var audited []string
	for _, e := range entries {
		if e.Action == "billing.dunning" && e.Tenant == "acme" && e.Path == inv.Number {
			audited = append(audited, e.Reason)
		}
	}
	if len(audited) != 3 || !strings.Contains(audited[2], "step 3 of 3") || !strings.Contains(audited[2], "quota admission now denies") {
		t.Fatalf("audited steps: %q", audited)
	}

	// Paying lifts the hold at once; later runs take no step on a settled invoice.
	if _, _, err := svc.RecordProviderPayment(context.Background(), "stripe", "evt_pay",
		invoice.PaymentInput{Invoice: inv.Number, Amount: inv.AmountRemaining, Method: "stripe", Reference: "pi_1"}); err != nil {
		t.Fatal(err)
	}
	if d := admit(t, engine, svc); d.Result != authz.ResultAllow {
		t.Fatalf("after paying: %+v", d)
	}
	res = steps(time.Date(2026, 12, 20, 0, 0, 0, 0, time.UTC), 0)
	if res.Overdue != 0 {
		t.Errorf("a paid invoice is still overdue: %+v", res)
	}
	// The payment is refunded: the invoice reopens, and the next run holds the tenant again.
	if _, _, err := svc.RecordProviderRefund(context.Background(), "stripe", "evt_refund", "pi_1", inv.AmountRemaining); err != nil {
		t.Fatal(err)
	}
	res = steps(time.Date(2026, 12, 21, 0, 0, 0, 0, time.UTC), 0)
	if res.Holds != 1 || admit(t, engine, svc).Result != authz.ResultDeny {
		t.Fatalf("a refunded invoice past its last step is not held again: %+v", res)
	}
}

// TestDunningWithoutConsequenceNeverHolds: the default schedule (no consequence) reminds and
// never denies.
func TestDunningWithoutConsequenceNeverHolds(t *testing.T) {
	svc, clk, _, _ := dunningWorld(t)
	cat := svc.Catalogue()
	for i := range cat.Plans {
		cat.Plans[i].Dunning = nil
	}
	svc.SetCatalogue(cat)
	clk.set(time.Date(2027, 1, 30, 0, 0, 0, 0, time.UTC))
	res, err := svc.RunDunning(context.Background())
	if err != nil || res.Steps != 1 || res.Holds != 0 {
		t.Fatalf("dunning: %+v %v", res, err)
	}
	if r := svc.BillingHold(context.Background(), "acme"); r != "" {
		t.Errorf("held without a consequence: %q", r)
	}
}

// TestDunningRetriesThroughStripe: an overdue invoice that was sent to Stripe is sent again
// (send_invoice) at each step, with a key naming the step, against a real stripe-mock.
func TestDunningRetriesThroughStripe(t *testing.T) {
	rec := stripemock.NewRecorder(t, stripemock.Start(t))
	svc, clk, u, _ := server(t)
	cat := svc.Catalogue()
	cat.Collections = map[string]string{"acme": pricing.CollectStripe}
	cat.Stripe = pricing.StripeSettings{APIKeyEnv: "USAGEMETER_TEST_STRIPE_KEY", APIBase: rec.URL}
	svc.SetCatalogue(cat)
	t.Setenv("USAGEMETER_TEST_STRIPE_KEY", "sk_test_123")
	u.Add("acme", "ai_requests", time.Date(2026, 10, 3, 0, 0, 0, 0, time.UTC), 1000)
	clk.set(time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC))
	if _, err := svc.Run(context.Background(), rating.Period{Year: 2026, Month: time.October}); err != nil {
		t.Fatal(err)
	}
	if res, err := svc.Collect(context.Background()); err != nil || res.Sent != 1 {
		t.Fatalf("collect: %+v %v", res, err)
	}
	rec.Reset()
	clk.set(time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC))
	if res, err := svc.RunDunning(context.Background()); err != nil || res.Steps != 1 {
		t.Fatalf("dunning: %+v %v", res, err)
	}
	reqs := rec.Requests()
	if len(reqs) != 1 || !strings.HasSuffix(reqs[0].Path, "/send") || !strings.HasSuffix(reqs[0].IdempotencyKey, "-remind-1") {
		t.Fatalf("dunning sent %+v, want one resend with key ...-remind-1", reqs)
	}
	invs, _ := svc.List(context.Background(), invoice.Filter{Tenant: "acme"})
	d, err := svc.DunningOf(context.Background(), invs[0].Number)
	if err != nil || d.History[0].Action != "stripe_resend" || d.History[0].Result != "ok" {
		t.Fatalf("dunning record: %+v %v", d, err)
	}
}

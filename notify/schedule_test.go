package notify

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/notify/notifytest"
)

// A schedule_summary rule sends the tenant's executive summary at each scheduled minute of its
// time zone, once, never for a minute before the rule existed, and its e-mail carries the
// figures.
func TestScheduledSummaryOncePerOccurrence(t *testing.T) {
	ctx := ctxT(t)
	mp := notifytest.StartMailpit(t, "--smtp-auth-accept-any", "--smtp-auth-allow-insecure")
	ns := NewStore(openDB(t, t.TempDir()))
	paris, _ := time.LoadLocation("Europe/Paris")
	created := time.Date(2026, 12, 7, 8, 30, 0, 0, paris) // a Monday, after 8:00
	r := Rule{Tenant: "acme", Condition: Condition{Kind: CondScheduleSummary, Cron: "0 8 * * 1", Timezone: "Europe/Paris"},
		Channels: []Channel{{Type: ChannelEmail, To: []string{"ceo@acme.test"}}}}
	if err := r.Validate(func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	r, err := ns.PutRule(r, created)
	if err != nil {
		t.Fatal(err)
	}
	pct := 12.5
	computed := 0
	ev := NewEvaluator(ns, noUsage{}, func(context.Context, string, string) (int64, bool) { return 0, false }, testLog(t))
	ev.Summaries = func(_ context.Context, tenant string, now time.Time) (Summary, error) {
		computed++
		return Summary{From: now.AddDate(0, 0, -30), To: now, InsightCount: 3, InsightSavings: 4200, Currency: "EUR", Exponent: 2,
			KPIs: []SummaryKPI{{Name: "AI tokens", Value: 9000, Previous: 8000, Percent: &pct}}}, nil
	}
	clock := created
	ev.Now = func() time.Time { return clock }
	count := func(want int) {
		t.Helper()
		n, err := ev.Evaluate(ctx)
		if err != nil || n != want {
			t.Fatalf("at %s: %d events (%v), want %d", clock, n, err, want)
		}
	}
	count(0) // this Monday's 8:00 was before the rule
	clock = time.Date(2026, 12, 14, 7, 59, 0, 0, paris)
	count(0)
	clock = time.Date(2026, 12, 14, 8, 0, 20, 0, paris)
	count(1)
	clock = clock.Add(time.Minute)
	count(0)
	if computed != 1 {
		t.Fatalf("summary computed %d times, want 1 (only when it is sent)", computed)
	}
	// Down over the next Monday and back 30 hours later: that one is skipped.
	clock = time.Date(2026, 12, 22, 14, 0, 0, 0, paris)
	count(0)
	s := &SMTP{Addr: mp.SMTP, From: "reports@platform.test"}
	if err := s.load(); err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher(ns, s, testLog(t))
	d.Now = func() time.Time { return clock }
	if _, err := d.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := mp.Messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if !strings.Contains(m.Subject, "acme: executive summary") || !strings.Contains(m.Text, "9000 (+12.5% on the 30 days before: 8000)") ||
		!strings.Contains(m.Text, "42.00 EUR") {
		t.Fatalf("message %q:\n%s", m.Subject, m.Text)
	}
	ds, _ := ns.Deliveries(ctx, "acme", StateDelivered, 0)
	if len(ds) != 1 || !strings.HasPrefix(ds[0].EventID, "evt_") {
		t.Fatalf("deliveries %+v", ds)
	}
	if got, _ := ns.Event(ds[0].EventID); got.Period != "2026-12-14T07:00:00Z" {
		t.Fatalf("keyed by %q, want the scheduled minute in UTC", got.Period)
	}
}

func TestScheduleValidation(t *testing.T) {
	base := Rule{Tenant: "acme", Channels: []Channel{{Type: ChannelEmail, To: []string{"a@b.test"}}}}
	for name, c := range map[string]Condition{
		"bad cron":       {Kind: CondScheduleSummary, Cron: "every monday"},
		"bad zone":       {Kind: CondScheduleSummary, Cron: "0 8 * * 1", Timezone: "Mars/Olympus"},
		"cron elsewhere": {Kind: CondUsageAmount, Amount: 1, Cron: "0 8 * * 1"},
		"with an amount": {Kind: CondScheduleSummary, Cron: "0 8 * * 1", Amount: 3},
	} {
		r := base
		r.Condition = c
		if c.Kind == CondUsageAmount {
			r.Meter = "m"
		}
		if err := r.Validate(func(string) bool { return true }); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

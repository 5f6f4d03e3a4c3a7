package billing

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// TestRunBillsOnlyPeriodsThatExisted runs invoices on a real ledger created today: a period
// before its history or in the future is refused, and a tenant is billed only from its first
// usage, subscription or configured start (issue #19: 2020-01 on a new store gave 15 finalized
// invoices of base fees).
func TestRunBillsOnlyPeriodsThatExisted(t *testing.T) {
	ctx := context.Background()
	st, err := ledger.Open(ctx, ledger.Options{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tokens := func(id, tenant string, at time.Time) event.Event {
		return event.Event{ID: id, Source: "test", Type: "ai.tokens", Tenant: tenant, Time: at, Raw: []byte(`{}`),
			Fields:     []event.Field{{Name: "user", Value: "u1"}, {Name: "feature", Value: "chat"}, {Name: "model", Value: "m"}},
			Quantities: []event.Quantity{{Name: "input_tokens", Value: 10}, {Name: "output_tokens", Value: 5}}}
	}
	// A backfill reaches back before the store existed: its history begins on 2026-10-05.
	if _, err := st.Commit(ctx, []event.Event{
		tokens("1", "early", time.Date(2026, 10, 5, 12, 0, 0, 0, time.UTC)),
		tokens("2", "late", time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)),
	}); err != nil {
		t.Fatal(err)
	}
	cfg := parseConfig(t, `
default_plan: pro
plans:
  - {name: pro, enforcement: soft}
tenants:
  - {id: acme, plan: pro}
  - {id: later, plan: pro, start: 2026-11-15}
billing:
  plans:
    - {name: pro, base_fee: "10.00"}
`)
	s, err := NewFromConfig(cfg, st.DB(), st, nil)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		period rating.Period
		want   string
	}{
		{rating.Period{Year: 2020, Month: time.January}, "ends before the ledger's history begins (2026-10-05)"},
		{rating.PeriodOf(time.Now()).Next(), "has not begun"},
	} {
		res, err := s.Run(ctx, c.period)
		if !errors.Is(err, invoice.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("run %s: %v (%+v), want ErrInvalid saying %q", c.period, err, res, c.want)
		}
	}
	if invs, err := s.List(ctx, invoice.Filter{}); err != nil || len(invs) != 0 {
		t.Fatalf("refused runs left invoices: %d, %v", len(invs), err)
	}

	billed := func(p rating.Period) []string {
		t.Helper()
		if _, err := s.Run(ctx, p); err != nil {
			t.Fatal(err)
		}
		invs, err := s.List(ctx, invoice.Filter{Period: &p})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, inv := range invs {
			out = append(out, inv.Tenant)
		}
		slices.Sort(out)
		return out
	}
	// October: early used it; acme is configured and has nothing at all, so it owes base fees
	// from the beginning of the history; late (first usage in November) and later (configured
	// start in November) did not exist yet.
	if got, want := billed(rating.Period{Year: 2026, Month: time.October}), []string{"acme", "early"}; !slices.Equal(got, want) {
		t.Fatalf("October billed %v, want %v", got, want)
	}
	if got, want := billed(rating.Period{Year: 2026, Month: time.November}), []string{"acme", "early", "late", "later"}; !slices.Equal(got, want) {
		t.Fatalf("November billed %v, want %v", got, want)
	}
}

// TestBadTimesAreExplained: a time in a request body that is not RFC 3339 is answered in words,
// not with Go's layout ("2006-01-02T15:04:05Z07:00").
func TestBadTimesAreExplained(t *testing.T) {
	_, _, _, srv := server(t)
	code, _, body := call(t, "POST", srv.URL+"/v1/tenants/acme/plan", "", map[string]any{"plan": "pro", "effective": "2026-11-01"})
	if code != 400 || !strings.Contains(string(body), `\"2026-11-01\" is not an RFC 3339 time`) || strings.Contains(string(body), "2006") {
		t.Fatalf("a date without a time: %d %s", code, body)
	}
}

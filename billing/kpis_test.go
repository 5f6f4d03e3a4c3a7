package billing

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/rating"
)

// kpiFixture invoices October 2026 for tenants on every plan (one with a plan change inside the
// month), finalizes October, pays part of one invoice, voids two (one the only invoice of its
// plan), and leaves November as drafts.
func kpiFixture(t *testing.T) (*Service, string) {
	t.Helper()
	svc, clk, u, srv := server(t)
	oct := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		tenant, plan, effective string
	}{
		{"gamma", "pro", "2026-09-01T00:00:00Z"},
		{"delta", "starter", "2026-10-15T00:00:00Z"}, // free, then starter from the 15th
		{"zeta", "enterprise", "2026-09-01T00:00:00Z"},
	} {
		if code, _, body := call(t, "POST", srv.URL+"/v1/tenants/"+c.tenant+"/plan", "", map[string]any{"plan": c.plan, "effective": c.effective}); code != 200 {
			t.Fatalf("plan %s: %d %s", c.tenant, code, body)
		}
	}
	u.Add("acme", "ai_tokens", oct, 6_000_000)   // pro: 1,000,000 over the allowance
	u.Add("beta", "ai_tokens", oct, 3_000_000)   // starter: 2,000,000 over
	u.Add("gamma", "ai_tokens", oct, 60_000_000) // pro: into the second tier
	u.Add("delta", "ai_tokens", oct.AddDate(0, 0, 15), 1_700_001)
	u.Add("epsilon", "ai_tokens", oct, 10)      // free: nothing to pay
	u.Add("zeta", "ai_tokens", oct, 70_000_000) // enterprise
	u.Add("acme", "ai_tokens", time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC), 7_000_000)
	clk.set(time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC))
	if code, _, body := call(t, "POST", srv.URL+"/v1/invoices/run?period=2026-10", "", nil); code != 200 {
		t.Fatalf("run: %d %s", code, body)
	}
	if code, _, body := call(t, "POST", srv.URL+"/v1/invoices/run?period=2026-11", "", nil); code != 200 {
		t.Fatalf("run: %d %s", code, body)
	}
	invs, err := svc.List(context.Background(), invoice.Filter{Period: &rating.Period{Year: 2026, Month: 10}})
	if err != nil {
		t.Fatal(err)
	}
	paid := false
	for _, inv := range invs {
		switch {
		case inv.Tenant == "acme":
			if code, _, body := call(t, "POST", srv.URL+"/v1/payments", "", map[string]string{"invoice": inv.ID, "amount": "100.01"}); code != 201 {
				t.Fatalf("payment: %d %s", code, body)
			}
			paid = true
		case inv.Tenant == "beta" || inv.Tenant == "zeta":
			if code, _, body := call(t, "POST", srv.URL+"/v1/invoices/"+inv.ID+"/void", "", map[string]string{"reason": "test"}); code != 200 {
				t.Fatalf("void: %d %s", code, body)
			}
		}
	}
	if !paid || len(invs) < 5 {
		t.Fatalf("fixture: %d October invoices, acme paid %v", len(invs), paid)
	}
	return svc, srv.URL
}

// independentKPIs computes the KPIs the way a client of the invoice API would: list the
// period's invoices, read each one's lines, add up.
func independentKPIs(t *testing.T, base, period, tenant, groupBy string, now time.Time) map[string]KPIGroup {
	t.Helper()
	q := url.Values{"period": {period}}
	if tenant != "" {
		q.Set("tenant", tenant)
	}
	code, _, body := call(t, "GET", base+"/v1/invoices?"+q.Encode(), "", nil)
	if code != 200 {
		t.Fatalf("list: %d %s", code, body)
	}
	var list struct {
		Invoices []struct {
			ID, Tenant, Status string
			Subtotal           int64 `json:"subtotal"`
			AmountRemaining    int64 `json:"amount_remaining"`
		} `json:"invoices"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]KPIGroup{}
	tenants := map[string]map[string]bool{}
	for _, s := range list.Invoices {
		code, _, body := call(t, "GET", base+"/v1/invoices/"+url.PathEscape(s.ID)+"?format=json", "", nil)
		if code != 200 {
			t.Fatalf("get %s: %d %s", s.ID, code, body)
		}
		var inv struct {
			Segments []struct{ Plan string }
			Lines    []struct {
				Kind, Plan string
				Amount     int64
			}
			AmountPaid      int64      `json:"amount_paid"`
			AmountRemaining int64      `json:"amount_remaining"`
			GrantsApplied   int64      `json:"grants_applied"`
			CreditApplied   int64      `json:"credit_applied"`
			DueAt           *time.Time `json:"due_at"`
		}
		if err := json.Unmarshal(body, &inv); err != nil {
			t.Fatal(err)
		}
		g := "all"
		if groupBy == "plan" {
			// The plan in force at the end of the period: the last segment's.
			if len(inv.Segments) == 0 {
				t.Fatalf("invoice %s has no segments", s.ID)
			}
			g = inv.Segments[len(inv.Segments)-1].Plan
		}
		k := out[g]
		k.Group = g
		if tenants[g] == nil {
			tenants[g] = map[string]bool{}
		}
		if s.Status != "void" {
			k.Invoices++
			k.Revenue += money.Amount(s.Subtotal)
			if s.Status != "draft" {
				k.Outstanding += money.Amount(s.AmountRemaining)
				k.Collected += money.Amount(inv.AmountPaid)
				k.CreditsUsed += money.Amount(inv.GrantsApplied + inv.CreditApplied)
				if inv.DueAt != nil && inv.DueAt.Before(now) {
					k.Overdue += money.Amount(inv.AmountRemaining)
				}
			}
			for _, l := range inv.Lines {
				switch l.Kind {
				case "usage":
					k.OverageRevenue += money.Amount(l.Amount)
				case "base":
					k.MRR += money.Amount(l.Amount)
				}
			}
			tenants[g][s.Tenant] = true
		}
		out[g] = k
	}
	for g, k := range out {
		k.Tenants = len(tenants[g])
		if n := int64(k.Tenants); n > 0 {
			// Nearest minor unit, halves up (amounts are not negative here), in integers.
			k.ARPU = money.Amount((2*int64(k.Revenue) + n) / (2 * n))
		}
		out[g] = k
	}
	if len(out) == 0 {
		out["all"] = KPIGroup{Group: "all"}
	}
	return out
}

func getKPIs(t *testing.T, base string, q url.Values) (int, KPIs, string) {
	t.Helper()
	code, _, body := call(t, "GET", base+"/v1/billing/kpis?"+q.Encode(), "", nil)
	var k KPIs
	if code == 200 {
		if err := json.Unmarshal(body, &k); err != nil {
			t.Fatalf("kpis: %v %s", err, body)
		}
	}
	return code, k, string(body)
}

func TestKPIsMatchTheInvoices(t *testing.T) {
	svc, base := kpiFixture(t)
	for _, c := range []struct{ period, tenant, groupBy string }{
		{"2026-10", "", ""},
		{"2026-10", "", "plan"},
		{"2026-10", "acme", ""},
		{"2026-10", "beta", "plan"}, // only a void invoice
		{"2026-11", "", "plan"},     // drafts: revenue, no outstanding
		{"2026-09", "", "plan"},     // no invoices
	} {
		q := url.Values{"period": {c.period}}
		if c.tenant != "" {
			q.Set("tenant", c.tenant)
		}
		if c.groupBy != "" {
			q.Set("group_by", c.groupBy)
		}
		code, got, body := getKPIs(t, base, q)
		if code != 200 {
			t.Fatalf("%v: %d %s", c, code, body)
		}
		if got.Period.String() != c.period || got.Tenant != c.tenant || got.GroupBy != c.groupBy || got.Currency != "USD" {
			t.Errorf("%v: header %+v", c, got)
		}
		want := independentKPIs(t, base, c.period, c.tenant, c.groupBy, svc.Now())
		gotBy := map[string]KPIGroup{}
		var names []string
		for _, g := range got.Groups {
			gotBy[g.Group] = g
			names = append(names, g.Group)
		}
		if !slices.IsSorted(names) {
			t.Errorf("%v: groups not sorted: %v", c, names)
		}
		if !reflect.DeepEqual(gotBy, want) {
			t.Errorf("%v:\n got %+v\nwant %+v", c, gotBy, want)
		}
	}

	// The fixture exercises what the figures are about: several plans, a void-only plan, money
	// outstanding, overage revenue and an ARPU that needed rounding.
	_, byPlan, _ := getKPIs(t, base, url.Values{"period": {"2026-10"}, "group_by": {"plan"}})
	plans := map[string]KPIGroup{}
	for _, g := range byPlan.Groups {
		plans[g.Group] = g
	}
	if z := plans["enterprise"]; z.Group != "enterprise" || z.Invoices != 0 || z.Revenue != 0 {
		t.Errorf("enterprise (void only): %+v", z)
	}
	if p := plans["pro"]; p.Tenants != 2 || p.OverageRevenue == 0 || p.Outstanding == 0 || p.Outstanding == p.Revenue {
		t.Errorf("pro: %+v", p)
	}
	if s := plans["starter"]; s.Tenants != 1 {
		t.Errorf("starter (delta after its mid-month change; beta void): %+v", s)
	}
	if f := plans["free"]; f.Tenants != 1 || f.Revenue != 0 {
		t.Errorf("free (epsilon, nothing to pay): %+v", f)
	}
}

func TestKPIsRoundsARPUOnce(t *testing.T) {
	svc, _, u, _ := server(t)
	// Two pro tenants above the minimum commitment whose subtotals differ by one cent (667
	// tokens at 0.0015 cents): the mean ends in half a cent.
	u.Add("acme", "ai_tokens", time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC), 15_000_000)
	if _, err := svc.ChangePlan(context.Background(), "gamma", "pro", time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	u.Add("gamma", "ai_tokens", time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC), 15_000_667)
	p := rating.Period{Year: 2026, Month: 10}
	if _, err := svc.Run(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	k, err := svc.KPIs(context.Background(), "", p, "")
	if err != nil {
		t.Fatal(err)
	}
	g := k.Groups[0]
	if g.Tenants != 2 || int64(g.Revenue)%2 != 1 {
		t.Fatalf("want two tenants and an odd revenue, got %+v", g)
	}
	if want := (g.Revenue + 1) / 2; g.ARPU != want {
		t.Errorf("ARPU %d, want %d (half a cent away from zero)", g.ARPU, want)
	}
}

func TestKPIsErrors(t *testing.T) {
	_, base := kpiFixture(t)
	for _, c := range []struct {
		q    url.Values
		want int
		msg  string
	}{
		{url.Values{}, http.StatusBadRequest, "period: required"},
		{url.Values{"period": {"2026-13"}}, http.StatusBadRequest, "YYYY-MM"},
		{url.Values{"period": {"2026-10"}, "group_by": {"tenant"}}, http.StatusBadRequest, "want plan"},
	} {
		code, _, body := getKPIs(t, base, c.q)
		if code != c.want || !strings.Contains(body, c.msg) {
			t.Errorf("%v: %d %s, want %d with %q", c.q, code, body, c.want, c.msg)
		}
	}
}

// TestListByPeriod: listing one period of every tenant (through the period index) gives the
// same invoices, in the same order, as filtering the full list.
func TestListByPeriod(t *testing.T) {
	svc, _ := kpiFixture(t)
	ctx := context.Background()
	all, err := svc.List(ctx, invoice.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []rating.Period{{Year: 2026, Month: 10}, {Year: 2026, Month: 11}, {Year: 2026, Month: 9}} {
		var want []string
		for _, inv := range all {
			if inv.Period == p {
				want = append(want, inv.ID+" "+string(inv.Status))
			}
		}
		got, err := svc.List(ctx, invoice.Filter{Period: &p})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, inv := range got {
			ids = append(ids, inv.ID+" "+string(inv.Status))
		}
		if !slices.Equal(ids, want) {
			t.Errorf("%s: %v, want %v", p, ids, want)
		}
	}
}

func TestInvoicePlan(t *testing.T) {
	line := func(kind, plan string) rating.Line { return rating.Line{Kind: kind, Plan: plan} }
	for _, c := range []struct {
		inv  invoice.Invoice
		want string
	}{
		{invoice.Invoice{Segments: []invoice.Segment{{Plan: "free"}, {Plan: "pro"}}, Lines: []rating.Line{line("base", "free")}}, "pro"},
		{invoice.Invoice{Lines: []rating.Line{line("usage", "starter"), line("base", "pro"), line("base", "enterprise")}}, "enterprise"},
		{invoice.Invoice{Lines: []rating.Line{line("adjustment", ""), line("usage", "starter")}}, "starter"},
		{invoice.Invoice{}, ""},
	} {
		if got := InvoicePlan(&c.inv); got != c.want {
			t.Errorf("%+v: %q, want %q", c.inv, got, c.want)
		}
	}
}

package billing

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/usagemeter/usagemeter/billing/billingcli"
	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/pricing"
)

// TestGrantsOverCLIAndAPI: a grant made with `usagectl tenants grant` is drawn down by the
// next invoice, shows on the invoice (JSON and CSV) and in `usagectl tenants grants`; bad
// grants answer 400.
func TestGrantsOverCLIAndAPI(t *testing.T) {
	_, clk, u, srv := server(t)
	u.Add("acme", "ai_tokens", time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC), 1)
	clk.set(time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC))
	run := func(args ...string) (string, error) {
		app := kingpin.New("usagectl", "")
		var out bytes.Buffer
		billingcli.RegisterTo(app, &out)
		_, err := app.Parse(append(args, "--url", srv.URL))
		return out.String(), err
	}
	if out, err := run("tenants", "grant", "acme", "--amount", "12.50", "--priority", "1", "--expires", "2027-01-01T00:00:00Z", "--reason", "launch"); err != nil || !strings.Contains(out, "GR-00000001") {
		t.Fatalf("grant: %v %s", err, out)
	}
	if code, _, body := call(t, "POST", srv.URL+"/v1/tenants/acme/credit-grants", "", map[string]any{"amount": "1.00", "kind": "gift"}); code != 400 {
		t.Fatalf("bad kind: %d %s", code, body)
	}
	if code, _, body := call(t, "POST", srv.URL+"/v1/tenants/acme/credit-grants", "", map[string]any{"amount": "1.001", "kind": "purchased"}); code != 400 {
		t.Fatalf("bad amount: %d %s", code, body)
	}
	clk.set(time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC))
	if _, err := run("invoices", "run", "--period", "2026-10"); err != nil {
		t.Fatal(err)
	}
	code, _, body := call(t, "GET", srv.URL+"/v1/invoices/INV-00000001?format=json", "", nil)
	var inv invoice.Invoice
	if code != 200 || json.Unmarshal(body, &inv) != nil || inv.GrantsApplied != 1250 || inv.AmountDue != inv.Subtotal-1250 || len(inv.Grants) != 1 {
		t.Fatalf("invoice: %d %s", code, body)
	}
	if _, _, csv := call(t, "GET", srv.URL+"/v1/invoices/INV-00000001?format=csv", "", nil); !strings.Contains(string(csv), "grants_applied,,Credit grants applied") {
		t.Errorf("CSV without the grants line:\n%s", csv)
	}
	// The KPIs count the grant, its use, and (once the due date has passed) the overdue amount.
	clk.set(inv.DueAt.Add(time.Hour))
	code, k, raw := getKPIs(t, srv.URL, url.Values{"period": {"2026-10"}})
	if code != 200 || k.Grants != (GrantKPIs{Granted: 1250, Used: 1250}) || len(k.Groups) != 1 ||
		k.Groups[0].CreditsUsed != 1250 || k.Groups[0].Overdue != inv.AmountDue || k.Groups[0].Outstanding != inv.AmountDue || k.Groups[0].Collected != 0 {
		t.Fatalf("kpis: %d %s", code, raw)
	}
	out, err := run("tenants", "grants", "acme")
	var bal invoice.GrantBalance
	if err != nil || json.Unmarshal([]byte(out), &bal) != nil || bal.Used != 1250 || bal.Available != 0 || len(bal.Grants) != 1 {
		t.Fatalf("grants: %v %s", err, out)
	}
}

// TestCouponsOverCLIAndAPI: a coupon redeemed with `usagectl tenants redeem` shows as its own
// line on the next invoice (JSON and CSV); unknown codes answer 404, a second redemption 409.
func TestCouponsOverCLIAndAPI(t *testing.T) {
	svc, clk, u, srv := server(t)
	cat := svc.Catalogue()
	cat.Coupons = []pricing.Coupon{{Code: "WELCOME", PercentOff: "10", Periods: 1}}
	svc.SetCatalogue(cat)
	u.Add("acme", "ai_tokens", time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC), 1)
	clk.set(time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC))
	run := func(args ...string) (string, error) {
		app := kingpin.New("usagectl", "")
		var out bytes.Buffer
		billingcli.RegisterTo(app, &out)
		_, err := app.Parse(append(args, "--url", srv.URL))
		return out.String(), err
	}
	if out, err := run("tenants", "redeem", "acme", "WELCOME"); err != nil || !strings.Contains(out, `"first_period": "2026-10"`) {
		t.Fatalf("redeem: %v %s", err, out)
	}
	if code, _, body := call(t, "POST", srv.URL+"/v1/tenants/acme/coupons", "", map[string]string{"code": "WELCOME"}); code != 409 {
		t.Fatalf("second redemption: %d %s", code, body)
	}
	if code, _, body := call(t, "POST", srv.URL+"/v1/tenants/acme/coupons", "", map[string]string{"code": "NOPE"}); code != 404 {
		t.Fatalf("unknown code: %d %s", code, body)
	}
	clk.set(time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC))
	if _, err := run("invoices", "run", "--period", "2026-10"); err != nil {
		t.Fatal(err)
	}
	code, _, body := call(t, "GET", srv.URL+"/v1/invoices/INV-00000001?format=json", "", nil)
	var inv invoice.Invoice
	if code != 200 || json.Unmarshal(body, &inv) != nil {
		t.Fatalf("invoice: %d %s", code, body)
	}
	var before, discount int64
	for _, l := range inv.Lines {
		if l.Kind == invoice.KindDiscount {
			discount += int64(l.Amount)
		} else {
			before += int64(l.Amount)
		}
	}
	if want := -(2*10*before + 100) / 200; discount != want || int64(inv.Subtotal) != before+want {
		t.Fatalf("discount %d (want %d) on %d, subtotal %d", discount, want, before, inv.Subtotal)
	}
	if _, _, csv := call(t, "GET", srv.URL+"/v1/invoices/INV-00000001?format=csv", "", nil); !strings.Contains(string(csv), "Coupon WELCOME: 10% off the invoice") {
		t.Errorf("CSV without the coupon line:\n%s", csv)
	}
	if out, err := run("tenants", "coupons", "acme"); err != nil || !strings.Contains(out, "WELCOME") {
		t.Fatalf("coupons: %v %s", err, out)
	}
}

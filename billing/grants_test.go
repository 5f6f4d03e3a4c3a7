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

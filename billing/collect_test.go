package billing

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/usagemeter/usagemeter/billing/internal/stripemock"
	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/stripecollect"
)

// TestRunCollectsThroughStripe: a run that finalizes sends the invoices of tenants with
// collection: stripe to Stripe (a real stripe-mock), and only those; without an API key they
// stay queued, the run still succeeds, and POST /v1/invoices/collect sends them once a key is set.
func TestRunCollectsThroughStripe(t *testing.T) {
	mock := stripemock.Start(t)
	svc, clk, u, srv := server(t)
	cat := svc.Catalogue()
	cat.Collections = map[string]string{"acme": pricing.CollectStripe}
	cat.Stripe = pricing.StripeSettings{APIKeyEnv: "USAGEMETER_TEST_STRIPE_KEY", APIBase: mock}
	svc.SetCatalogue(cat)
	t.Setenv("USAGEMETER_TEST_STRIPE_KEY", "")

	u.Add("acme", "ai_requests", time.Date(2026, 10, 3, 0, 0, 0, 0, time.UTC), 1000)
	u.Add("beta", "ai_requests", time.Date(2026, 10, 3, 0, 0, 0, 0, time.UTC), 1000)
	clk.set(time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC))

	code, _, body := call(t, "POST", srv.URL+"/v1/invoices/run?period=2026-10", "", nil)
	var run runResponse
	if code != 200 || json.Unmarshal(body, &run) != nil {
		t.Fatalf("run: %d %s", code, body)
	}
	if run.Finalized != 2 || run.Collection == nil || run.Collection.Queued != 1 || !strings.Contains(run.CollectionError, "not configured") {
		t.Fatalf("run without a key: %s", body)
	}
	if code, _, body := call(t, "POST", srv.URL+"/v1/invoices/collect", "", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("collect without a key: %d %s", code, body)
	}

	t.Setenv("USAGEMETER_TEST_STRIPE_KEY", "sk_test_123")
	code, _, body = call(t, "POST", srv.URL+"/v1/invoices/collect", "", nil)
	var res stripecollect.Result
	if code != 200 || json.Unmarshal(body, &res) != nil || res.Sent != 1 || res.Failed != 0 {
		t.Fatalf("collect: %d %s", code, body)
	}
	for _, tenant := range []string{"acme", "beta"} {
		code, _, body := call(t, "GET", srv.URL+"/v1/invoices?tenant="+tenant, "", nil)
		var list struct {
			Invoices []struct {
				ID         string
				Collection *invoice.Collection
			}
		}
		if code != 200 || json.Unmarshal(body, &list) != nil || len(list.Invoices) != 1 {
			t.Fatalf("list %s: %d %s", tenant, code, body)
		}
		if c := list.Invoices[0].Collection; (tenant == "acme") != (c != nil && c.Status == invoice.CollectSent) {
			t.Errorf("%s: collection in the list: %+v", tenant, c)
		}
		code, _, body = call(t, "GET", srv.URL+"/v1/invoices/"+list.Invoices[0].ID+"?format=json", "", nil)
		var inv invoice.Invoice
		if code != 200 || json.Unmarshal(body, &inv) != nil {
			t.Fatalf("get %s: %d %s", tenant, code, body)
		}
		c := inv.Collection
		switch tenant {
		case "acme":
			if c == nil || c.Status != invoice.CollectSent || !strings.HasPrefix(c.Invoice, "in_") || !strings.HasPrefix(c.Customer, "cus_") {
				t.Errorf("acme's collection: %+v", c)
			}
		case "beta":
			if c != nil {
				t.Errorf("beta collects manually, got %+v", c)
			}
		}
	}
	// Stripe collects: its signed invoice.paid webhook (our number in the metadata) pays our
	// invoice, and, paid through Stripe, it is not queued again to be closed there.
	t.Setenv("STRIPE_WEBHOOK_SECRET", "whsec_test")
	code, _, body = call(t, "GET", srv.URL+"/v1/invoices?tenant=acme", "", nil)
	var list struct {
		Invoices []struct {
			ID         string
			AmountDue  int64 `json:"amount_due"`
			Collection *invoice.Collection
		}
	}
	if code != 200 || json.Unmarshal(body, &list) != nil || len(list.Invoices) != 1 {
		t.Fatalf("list: %d %s", code, body)
	}
	acme := list.Invoices[0]
	payload, _ := json.Marshal(map[string]any{"id": "evt_paid", "object": "event", "type": "invoice.paid", "api_version": "2020-08-27",
		"created": 1793750400, "data": map[string]any{"object": map[string]any{"id": acme.Collection.Invoice, "object": "invoice",
			"amount_paid": acme.AmountDue, "currency": "usd", "metadata": map[string]string{"invoice_number": acme.ID, "tenant": "acme"}}}})
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: "whsec_test", Timestamp: time.Now()})
	req, _ := http.NewRequest("POST", srv.URL+"/v1/webhooks/stripe", bytes.NewReader(payload))
	req.Header.Set("Stripe-Signature", signed.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("webhook: %v %v", resp, err)
	}
	resp.Body.Close()
	if inv, err := svc.Get(context.Background(), acme.ID); err != nil || inv.Status != invoice.Paid || inv.Collection.Status != invoice.CollectSent {
		t.Fatalf("after invoice.paid: %+v %v", inv, err)
	}
	// Nothing left: collecting again makes no Stripe call.
	code, _, body = call(t, "POST", srv.URL+"/v1/invoices/collect", "", nil)
	res = stripecollect.Result{Calls: -1}
	if code != 200 || json.Unmarshal(body, &res) != nil || res.Calls != 0 || res.Queued != 0 {
		t.Fatalf("collect again: %d %s", code, body)
	}
}

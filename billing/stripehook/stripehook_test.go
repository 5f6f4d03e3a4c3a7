package stripehook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/usagemeter/usagemeter/billing/internal/usagetest"
	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/auth"
	"github.com/usagemeter/usagemeter/exporter/authz"
	"github.com/usagemeter/usagemeter/exporter/guard"
)

const secret = "whsec_test_secret"

// setup issues one finalized invoice INV-00000001 of 15.00 for tenant acme.
func setup(t *testing.T) (*invoice.Service, http.Handler) {
	t.Helper()
	db := usagetest.OpenDB(t)
	u := usagetest.New()
	oct := rating.Period{Year: 2026, Month: time.October}
	u.Add("acme", "ai_tokens", oct.Start(), 1)
	now := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	cat := pricing.Default()
	svc, err := invoice.New(invoice.Options{DB: db, Catalogue: cat, Usage: u,
		DefaultPlan: func(string) string { return "starter" }, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Run(context.Background(), oct); err != nil {
		t.Fatal(err)
	}
	return svc, &Handler{Secret: func() string { return secret }, Recorder: svc}
}

func event(id, typ string, object map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "api_version": "2020-08-27",
		"created": 1793750400, "data": map[string]any{"object": object}})
	return b
}

func post(h http.Handler, body []byte, sigSecret string) *httptest.ResponseRecorder {
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: sigSecret, Timestamp: time.Now()})
	req := httptest.NewRequest("POST", "/v1/webhooks/stripe", bytes.NewReader(body))
	req.Header.Set("Stripe-Signature", signed.Header)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestWebhookValidForgedReplayed(t *testing.T) {
	svc, h := setup(t)
	ctx := context.Background()
	body := event("evt_1", "payment_intent.succeeded", map[string]any{"id": "pi_1", "object": "payment_intent",
		"amount_received": 1000, "currency": "usd", "metadata": map[string]string{MetadataInvoice: "INV-00000001"}})

	// Forged: signed with another secret. Nothing is recorded.
	if rec := post(h, body, "whsec_attacker"); rec.Code != http.StatusBadRequest {
		t.Fatalf("forged: %d %s", rec.Code, rec.Body)
	}
	// Tampered: a valid signature over another body.
	req := httptest.NewRequest("POST", "/v1/webhooks/stripe", bytes.NewReader(bytes.Replace(body, []byte("1000"), []byte("9000"), 1)))
	req.Header.Set("Stripe-Signature", webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret}).Header)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("tampered: %d", rec.Code)
	}
	if pays, _ := svc.Payments(ctx, ""); len(pays) != 0 {
		t.Fatalf("forged events recorded %d payments", len(pays))
	}

	// Valid.
	rec = post(h, body, secret)
	var resp Response
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != 200 || resp.Duplicate || resp.Payment != "PAY-00000001" {
		t.Fatalf("valid: %d %s", rec.Code, rec.Body)
	}
	// Replayed (Stripe retries; an attacker replays within the tolerance): acknowledged, not recorded.
	rec = post(h, body, secret)
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != 200 || !resp.Duplicate || resp.Payment != "PAY-00000001" {
		t.Fatalf("replay: %d %s", rec.Code, rec.Body)
	}
	pays, _ := svc.Payments(ctx, "")
	if len(pays) != 1 || pays[0].Amount != 1000 || pays[0].Reference != "pi_1" || pays[0].Method != "stripe" {
		t.Fatalf("payments: %+v", pays)
	}
	inv, _ := svc.Get(ctx, "INV-00000001")
	if inv.AmountPaid != 1000 || inv.AmountRemaining != inv.AmountDue-1000 {
		t.Fatalf("invoice: %+v", inv)
	}

	// invoice.paid settles the rest.
	rest := int64(inv.AmountRemaining)
	rec = post(h, event("evt_2", "invoice.paid", map[string]any{"id": "in_1", "object": "invoice", "amount_paid": rest,
		"currency": "usd", "metadata": map[string]string{MetadataInvoice: "INV-00000001"}}), secret)
	if rec.Code != 200 {
		t.Fatalf("invoice.paid: %d %s", rec.Code, rec.Body)
	}
	if inv, _ := svc.Get(ctx, "INV-00000001"); inv.Status != invoice.Paid {
		t.Fatalf("not paid: %+v", inv)
	}

	// An event without our metadata or of another type is acknowledged and ignored, once.
	for i, b := range [][]byte{
		event("evt_3", "customer.created", map[string]any{"id": "cus_1", "object": "customer"}),
		event("evt_4", "payment_intent.succeeded", map[string]any{"id": "pi_9", "object": "payment_intent", "amount_received": 5, "currency": "usd"}),
	} {
		rec = post(h, b, secret)
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != 200 || resp.Ignored == "" || resp.Duplicate {
			t.Fatalf("ignored event %d: %d %s", i, rec.Code, rec.Body)
		}
		rec = post(h, b, secret)
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || !resp.Duplicate {
			t.Fatalf("ignored event %d replay: %s", i, rec.Body)
		}
	}

	// A payment for an unknown invoice is refused (422) and not marked, so Stripe retries.
	bad := event("evt_5", "payment_intent.succeeded", map[string]any{"id": "pi_5", "object": "payment_intent",
		"amount_received": 100, "currency": "usd", "metadata": map[string]string{MetadataInvoice: "INV-00000042"}})
	for i := 0; i < 2; i++ {
		if rec := post(h, bad, secret); rec.Code != http.StatusUnprocessableEntity {
			t.Fatalf("unknown invoice, attempt %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if pays, _ := svc.Payments(ctx, ""); len(pays) != 2 {
		t.Fatalf("want 2 payments, got %d", len(pays))
	}
}

func TestWebhookWithoutSecret(t *testing.T) {
	_, _ = setup(t)
	h := &Handler{Secret: func() string { return "" }}
	rec := post(h, []byte(fmt.Sprintf(`{"id":%q}`, "evt")), secret)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("no secret: %d", rec.Code)
	}
}

// TestRefusalsAreAudited: behind the guard, as the exporter mounts it, every refused webhook
// (forged or tampered signature, a replay past the tolerance, a payload that is not a Stripe
// event, too large a body) leaves an entry in the audit trail, with values capped in size
// whatever the sender put in its headers and body. Accepted and duplicate events leave none.
func TestRefusalsAreAudited(t *testing.T) {
	_, h := setup(t)
	db := usagetest.OpenDB(t)
	trail, err := audit.Open(db, audit.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trail.Close() })
	a, err := auth.New(context.Background(), auth.Config{}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	engine, err := authz.New(context.Background(), authz.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	g, err := guard.New(guard.Options{Auth: a, Authz: engine, Audit: trail, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	guarded := g.Wrap(route.Route{Method: "POST", Pattern: "/v1/webhooks/stripe", Action: route.ActionPublic, Audit: true, Handler: h.ServeHTTP})

	long := strings.Repeat("x", 10_000)
	valid := event("evt_ok", "payment_intent.succeeded", map[string]any{"id": "pi_1", "object": "payment_intent",
		"amount_received": 1000, "currency": "usd", "metadata": map[string]string{MetadataInvoice: "INV-00000001"}})
	send := func(body []byte, sigSecret string, at time.Time, header string) int {
		if header == "" {
			header = webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: sigSecret, Timestamp: at}).Header
		}
		req := httptest.NewRequest("POST", "/v1/webhooks/stripe", bytes.NewReader(body))
		req.Header.Set("Stripe-Signature", header)
		rec := httptest.NewRecorder()
		guarded.ServeHTTP(rec, req)
		return rec.Code
	}
	cases := []struct {
		name   string
		body   []byte
		secret string
		at     time.Time
		header string
		status int
		reason string
	}{
		{"forged", valid, "whsec_attacker", time.Now(), "", http.StatusBadRequest, "signature"},
		{"garbage signature header", valid, "", time.Time{}, "t=1," + long, http.StatusBadRequest, "signature"},
		{"replayed past the tolerance", valid, secret, time.Now().Add(-time.Hour), "", http.StatusBadRequest, "timestamp"},
		{"not an event", []byte(`{"id":"evt_` + long + `","object":"event","type":"payment_intent.succeeded","data":{"object":{"amount_received":"lots"}}}`), secret, time.Now(), "", http.StatusBadRequest, "payload"},
		{"too large", bytes.Repeat([]byte("a"), maxBody+1), secret, time.Now(), "", http.StatusRequestEntityTooLarge, "too large"},
	}
	for i, c := range cases {
		if got := send(c.body, c.secret, c.at, c.header); got != c.status {
			t.Fatalf("%s: status %d, want %d", c.name, got, c.status)
		}
		entries, err := trail.List(context.Background(), 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != i+1 {
			t.Fatalf("%s: %d audit entries, want %d", c.name, len(entries), i+1)
		}
		e := entries[i]
		if e.Allow || e.Status != c.status || e.Path != "/v1/webhooks/stripe" || e.Subject != "stripe" || !strings.Contains(e.Reason, c.reason) {
			t.Errorf("%s: entry %+v; want a refusal with status %d and a reason about %q", c.name, e, c.status, c.reason)
		}
		if len(e.Reason) > guard.MaxRefusalReason {
			t.Errorf("%s: reason of %d bytes audited, cap %d", c.name, len(e.Reason), guard.MaxRefusalReason)
		}
	}
	// Accepted, then acknowledged as a duplicate: not refusals, nothing audited.
	for _, want := range []int{200, 200} {
		if got := send(valid, secret, time.Now(), ""); got != want {
			t.Fatalf("valid event: status %d", got)
		}
	}
	if entries, _ := trail.List(context.Background(), 0, 100); len(entries) != len(cases) {
		t.Fatalf("accepted events were audited: %d entries", len(entries))
	}
}

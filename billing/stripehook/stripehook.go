// Package stripehook receives Stripe webhooks: the signature is verified with stripe-go's
// webhook package, and a payment event is recorded against our invoice (its metadata carries
// our invoice number under "invoice_number"), idempotently on Stripe's event id.
package stripehook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/guard"
)

// Provider is the provider name under which events are deduplicated.
const Provider = "stripe"

// MetadataInvoice is the metadata key that carries our invoice number; MetadataTenant the
// tenant, for prepayments without an invoice.
const (
	MetadataInvoice = "invoice_number"
	MetadataTenant  = "tenant"
)

// maxBody bounds a webhook body; Stripe events are a few KiB.
const maxBody = 1 << 20

// Recorder is the part of invoice.Service the webhook needs.
type Recorder interface {
	RecordProviderPayment(ctx context.Context, provider, eventID string, in invoice.PaymentInput) (*invoice.Payment, bool, error)
	MarkProviderEvent(ctx context.Context, provider, eventID string) (bool, error)
	RecordProviderFailure(ctx context.Context, provider, eventID, number, reason string) (bool, error)
	RecordProviderRefund(ctx context.Context, provider, eventID, reference string, refunded money.Amount) (*invoice.Refund, bool, error)
	RecordProviderCreditNote(ctx context.Context, provider, eventID, providerInvoice string, amount, refunded money.Amount, reason string) (*invoice.CreditNote, bool, error)
}

// Handler serves POST /v1/webhooks/stripe.
type Handler struct {
	Secret    func() string // the endpoint secret (whsec_...), read per request so rotation needs no restart
	Recorder  Recorder
	Tolerance time.Duration // signature age accepted; 0 means stripe-go's default (5 minutes)
	Log       *slog.Logger
}

// Response is the JSON body of a handled event.
type Response struct {
	Received  bool   `json:"received"`
	Duplicate bool   `json:"duplicate"`
	Ignored   string `json:"ignored,omitempty"`
	Payment   string `json:"payment,omitempty"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	secret := ""
	if h.Secret != nil {
		secret = h.Secret()
	}
	if secret == "" {
		problem.Error(w, http.StatusServiceUnavailable, "the Stripe webhook secret is not configured")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		refuse(w, r, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	if len(body) > maxBody {
		refuse(w, r, http.StatusRequestEntityTooLarge, "webhook body too large")
		return
	}
	ev, err := webhook.ConstructEventWithOptions(body, r.Header.Get("Stripe-Signature"), secret,
		webhook.ConstructEventOptions{Tolerance: h.Tolerance, IgnoreAPIVersionMismatch: true})
	if err != nil {
		// Forged, tampered, or replayed past the tolerance (webhook.ErrTooOld).
		log.Warn("stripe webhook rejected", "err", err)
		refuse(w, r, http.StatusBadRequest, "signature verification failed: "+err.Error())
		return
	}
	resp, status, err := h.handle(r.Context(), ev)
	if err != nil {
		log.Error("stripe webhook not recorded", "event", ev.ID, "type", ev.Type, "err", err)
		if status < 500 {
			// Signed by Stripe but not applied (a payload we cannot read, an unknown invoice).
			// The why first: the audited reason is capped, and an event id can be long.
			refuse(w, r, status, err.Error()+" (event "+guard.Truncate(ev.ID, 64)+")")
			return
		}
		problem.Error(w, status, err.Error())
		return
	}
	log.Info("stripe webhook", "event", ev.ID, "type", ev.Type, "duplicate", resp.Duplicate, "payment", resp.Payment, "ignored", resp.Ignored)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// refuse answers a refused webhook and has the guard audit it (docs/security.md: public
// endpoints are audited when they refuse a request).
func refuse(w http.ResponseWriter, r *http.Request, status int, detail string) {
	guard.Refuse(r, Provider, detail)
	problem.Error(w, status, detail)
}

func (h *Handler) handle(ctx context.Context, ev stripe.Event) (Response, int, error) {
	switch ev.Type {
	case "invoice.payment_failed":
		return h.failed(ctx, ev)
	case "charge.refunded":
		return h.refunded(ctx, ev)
	case "credit_note.created":
		return h.creditNote(ctx, ev)
	}
	in, ignored, err := paymentOf(ev)
	if err != nil {
		return Response{}, http.StatusBadRequest, err
	}
	if ignored != "" {
		dup, err := h.Recorder.MarkProviderEvent(ctx, Provider, ev.ID)
		if err != nil {
			return Response{}, http.StatusInternalServerError, err
		}
		return Response{Received: true, Duplicate: dup, Ignored: ignored}, 0, nil
	}
	p, dup, err := h.Recorder.RecordProviderPayment(ctx, Provider, ev.ID, in)
	switch {
	case errors.Is(err, invoice.ErrNotFound), errors.Is(err, invoice.ErrInvalid), errors.Is(err, invoice.ErrConflict):
		// Not marked as processed: Stripe retries, and the failure shows in its dashboard.
		return Response{}, http.StatusUnprocessableEntity, err
	case err != nil:
		return Response{}, http.StatusInternalServerError, err
	}
	return Response{Received: true, Duplicate: dup, Payment: p.ID}, 0, nil
}

// paymentOf extracts the payment an event reports; ignored names why an event carries none.
func paymentOf(ev stripe.Event) (in invoice.PaymentInput, ignored string, err error) {
	if ev.Data == nil {
		return in, "", errors.New("bad payload: no data")
	}
	var (
		id       string
		amount   int64
		currency stripe.Currency
		meta     map[string]string
	)
	switch ev.Type {
	case "payment_intent.succeeded":
		var pi stripe.PaymentIntent
		if err := json.Unmarshal(ev.Data.Raw, &pi); err != nil {
			return in, "", fmt.Errorf("bad payload: decode payment intent: %w", err)
		}
		id, amount, currency, meta = pi.ID, pi.AmountReceived, pi.Currency, pi.Metadata
	case "invoice.paid", "invoice.payment_succeeded":
		var si stripe.Invoice
		if err := json.Unmarshal(ev.Data.Raw, &si); err != nil {
			return in, "", fmt.Errorf("bad payload: decode invoice: %w", err)
		}
		id, amount, currency, meta = si.ID, si.AmountPaid, si.Currency, si.Metadata
	default:
		return in, "event type " + string(ev.Type) + " carries no payment", nil
	}
	if meta[MetadataInvoice] == "" && meta[MetadataTenant] == "" {
		return in, "no " + MetadataInvoice + " or " + MetadataTenant + " in the metadata", nil
	}
	if amount <= 0 {
		return in, "zero amount", nil
	}
	in = invoice.PaymentInput{
		Tenant: meta[MetadataTenant], Invoice: meta[MetadataInvoice], Amount: money.Amount(amount),
		Currency: strings.ToUpper(string(currency)), Method: "stripe", Reference: id,
	}
	if ev.Created > 0 {
		in.ReceivedAt = time.Unix(ev.Created, 0).UTC()
	}
	return in, "", nil
}

// failed records a failed payment on an invoice we collect through Stripe (dunning shows it);
// the schedule itself runs from the due date, so nothing else changes.
func (h *Handler) failed(ctx context.Context, ev stripe.Event) (Response, int, error) {
	var si stripe.Invoice
	if ev.Data == nil || json.Unmarshal(ev.Data.Raw, &si) != nil {
		return Response{}, http.StatusBadRequest, fmt.Errorf("event %s: decode invoice", ev.ID)
	}
	number := si.Metadata[MetadataInvoice]
	ignore := func(why string) (Response, int, error) {
		dup, err := h.Recorder.MarkProviderEvent(ctx, Provider, ev.ID)
		if err != nil {
			return Response{}, http.StatusInternalServerError, err
		}
		return Response{Received: true, Duplicate: dup, Ignored: why}, 0, nil
	}
	if number == "" {
		return ignore("no " + MetadataInvoice + " in the metadata")
	}
	dup, err := h.Recorder.RecordProviderFailure(ctx, Provider, ev.ID, number,
		fmt.Sprintf("Stripe reports a failed payment on %s (attempt %d)", si.ID, si.AttemptCount))
	if errors.Is(err, invoice.ErrNotFound) {
		return ignore(number + " is not collected through Stripe")
	}
	if err != nil {
		return Response{}, http.StatusInternalServerError, err
	}
	return Response{Received: true, Duplicate: dup}, 0, nil
}

// refunded records a refund of a charge whose payment we recorded (matched on the payment
// intent, the reference payment_intent.succeeded stores). Stripe reports the cumulative amount
// refunded, so partial refunds and replays record only what is new.
func (h *Handler) refunded(ctx context.Context, ev stripe.Event) (Response, int, error) {
	var ch stripe.Charge
	if ev.Data == nil || json.Unmarshal(ev.Data.Raw, &ch) != nil {
		return Response{}, http.StatusBadRequest, fmt.Errorf("event %s: decode charge", ev.ID)
	}
	ref := ch.ID
	if ch.PaymentIntent != nil && ch.PaymentIntent.ID != "" {
		ref = ch.PaymentIntent.ID
	}
	r, dup, err := h.Recorder.RecordProviderRefund(ctx, Provider, ev.ID, ref, money.Amount(ch.AmountRefunded))
	if errors.Is(err, invoice.ErrNotFound) {
		dup, err := h.Recorder.MarkProviderEvent(ctx, Provider, ev.ID)
		if err != nil {
			return Response{}, http.StatusInternalServerError, err
		}
		return Response{Received: true, Duplicate: dup, Ignored: "no payment recorded for " + ref}, 0, nil
	}
	if err != nil {
		return Response{}, http.StatusInternalServerError, err
	}
	resp := Response{Received: true, Duplicate: dup}
	if r == nil && !dup {
		resp.Ignored = "nothing refunded beyond what is recorded"
	}
	return resp, 0, nil
}

// creditNote records a credit note Stripe issued on an invoice it collects for us (how a Stripe
// invoice is refunded): our credit note of the same amount, and the refunded or out-of-band
// part leaving the prepaid credit it creates.
func (h *Handler) creditNote(ctx context.Context, ev stripe.Event) (Response, int, error) {
	var cn stripe.CreditNote
	if ev.Data == nil || json.Unmarshal(ev.Data.Raw, &cn) != nil {
		return Response{}, http.StatusBadRequest, fmt.Errorf("event %s: decode credit note", ev.ID)
	}
	ignore := func(why string) (Response, int, error) {
		dup, err := h.Recorder.MarkProviderEvent(ctx, Provider, ev.ID)
		if err != nil {
			return Response{}, http.StatusInternalServerError, err
		}
		return Response{Received: true, Duplicate: dup, Ignored: why}, 0, nil
	}
	if cn.Invoice == nil || cn.Invoice.ID == "" || cn.Amount <= 0 {
		return ignore("no invoice or no amount")
	}
	refunded := cn.OutOfBandAmount
	for _, r := range cn.Refunds {
		refunded += r.AmountRefunded
	}
	reason := fmt.Sprintf("Stripe credit note %s (%s)", cn.Number, cn.Reason)
	_, dup, err := h.Recorder.RecordProviderCreditNote(ctx, Provider, ev.ID, cn.Invoice.ID, money.Amount(cn.Amount), money.Amount(refunded), reason)
	switch {
	case errors.Is(err, invoice.ErrNotFound):
		return ignore(cn.Invoice.ID + " is not an invoice we sent")
	case errors.Is(err, invoice.ErrInvalid), errors.Is(err, invoice.ErrConflict):
		return Response{}, http.StatusUnprocessableEntity, err
	case err != nil:
		return Response{}, http.StatusInternalServerError, err
	}
	return Response{Received: true, Duplicate: dup}, 0, nil
}

package billing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/billing/render"
	"github.com/usagemeter/usagemeter/billing/stripecollect"
	"github.com/usagemeter/usagemeter/exporter/api/problem"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/api/timeparse"
)

// Routes are the billing endpoints. Endpoints about one invoice or payment take an optional
// tenant query parameter: the guard authorizes on it (saas_admin may read only its own
// tenant), and the handler answers 404 when the document belongs to another tenant, so a
// tenant-scoped caller cannot read others' documents by number.
func (s *Service) Routes() []route.Route {
	return []route.Route{
		{Method: "GET", Pattern: "/v1/invoices", Action: route.ActionBillingRead, Audit: true, Handler: s.listInvoices},
		{Method: "GET", Pattern: "/v1/invoices/{id}", Action: route.ActionBillingRead, Audit: true, Handler: s.getInvoice},
		// Key figures of a period, aggregated here from the invoices: what a dashboard would
		// otherwise compute by fetching every invoice. Same action as reading the invoices.
		{Method: "GET", Pattern: "/v1/billing/kpis", Action: route.ActionBillingRead, Audit: true, Handler: s.kpis},
		{Method: "POST", Pattern: "/v1/invoices/run", Action: route.ActionBillingWrite, Audit: true, Handler: s.run},
		{Method: "GET", Pattern: "/v1/tenants/{tenant}/credit-grants", Action: route.ActionBillingRead, Audit: true, Handler: s.listGrants},
		{Method: "POST", Pattern: "/v1/tenants/{tenant}/credit-grants", Action: route.ActionBillingWrite, Audit: true, Handler: s.createGrant},
		{Method: "GET", Pattern: "/v1/tenants/{tenant}/coupons", Action: route.ActionBillingRead, Audit: true, Handler: s.listCoupons},
		{Method: "POST", Pattern: "/v1/tenants/{tenant}/coupons", Action: route.ActionBillingWrite, Audit: true, Handler: s.redeemCoupon},
		{Method: "POST", Pattern: "/v1/billing/dunning/run", Action: route.ActionBillingWrite, Audit: true, Handler: s.dunning},
		{Method: "GET", Pattern: "/v1/invoices/{id}/dunning", Action: route.ActionBillingRead, Audit: true, Handler: s.invoiceDunning},
		{Method: "POST", Pattern: "/v1/invoices/collect", Action: route.ActionBillingWrite, Audit: true, Handler: s.collect},
		{Method: "POST", Pattern: "/v1/invoices/{id}/finalize", Action: route.ActionBillingWrite, Audit: true, Handler: s.finalize},
		{Method: "POST", Pattern: "/v1/invoices/{id}/void", Action: route.ActionBillingWrite, Audit: true, Handler: s.void},
		{Method: "POST", Pattern: "/v1/invoices/{id}/credit-notes", Action: route.ActionBillingWrite, Audit: true, Handler: s.creditNote},
		{Method: "GET", Pattern: "/v1/credit-notes", Action: route.ActionBillingRead, Audit: true, Handler: s.listCreditNotes},
		{Method: "GET", Pattern: "/v1/tenants/{tenant}/balance", Action: route.ActionBillingRead, Audit: true, Handler: s.tenantRead(s.balance)},
		{Method: "GET", Pattern: "/v1/tenants/{tenant}/statement", Action: route.ActionBillingRead, Audit: true, Handler: s.tenantRead(s.statement)},
		{Method: "GET", Pattern: "/v1/payments", Action: route.ActionBillingRead, Audit: true, Handler: s.listPayments},
		{Method: "POST", Pattern: "/v1/payments", Action: route.ActionBillingWrite, Audit: true, Handler: s.recordPayment},
		{Method: "GET", Pattern: "/v1/plans", Action: route.ActionPlansRead, Audit: false, Handler: s.plans},
		// A tenant's plan, history and costs are its own data: billing.read (tenant-scoped),
		// not plans.read, which the policies grant as a tenant-independent catalogue read.
		{Method: "GET", Pattern: "/v1/tenants/{tenant}/plan", Action: route.ActionBillingRead, Audit: true, Handler: s.tenantRead(s.tenantPlan)},
		{Method: "POST", Pattern: "/v1/tenants/{tenant}/plan", Action: route.ActionPlansChange, Audit: true, Handler: s.changePlan},
		{Method: "POST", Pattern: "/v1/webhooks/stripe", Action: route.ActionPublic, Audit: true, Handler: s.hook.ServeHTTP},
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, invoice.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, invoice.ErrConflict), errors.Is(err, invoice.ErrGracePeriod):
		status = http.StatusConflict
	case errors.Is(err, invoice.ErrInvalid):
		status = http.StatusBadRequest
	}
	problem.Error(w, status, err.Error())
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	problem.Error(w, http.StatusBadRequest, fmt.Sprintf(format, args...))
}

// decode reads a small JSON body, refusing unknown fields.
func decode(r *http.Request, into any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("request body: %w", timeparse.Explain(err))
	}
	return nil
}

func (s *Service) listInvoices(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := invoice.Filter{Tenant: q.Get("tenant"), Status: invoice.Status(q.Get("status"))}
	if v := q.Get("period"); v != "" {
		p, err := rating.ParsePeriod(v)
		if err != nil {
			badRequest(w, "%v", err)
			return
		}
		f.Period = &p
	}
	invs, err := s.List(r.Context(), f)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := make([]map[string]any, 0, len(invs))
	for _, inv := range invs {
		row := map[string]any{"id": inv.ID, "number": inv.Number, "tenant": inv.Tenant,
			"period": inv.Period, "status": inv.Status, "currency": inv.Currency.Code, "subtotal": inv.Subtotal,
			"amount_due": inv.AmountDue, "amount_remaining": inv.AmountRemaining}
		if c := inv.Collection; c != nil {
			row["collection"] = map[string]any{"provider": c.Provider, "status": c.Status, "invoice": c.Invoice}
		}
		out = append(out, row)
	}
	writeJSON(w, http.StatusOK, map[string]any{"invoices": out})
}

// load fetches an invoice and hides it when the tenant parameter names another tenant.
func (s *Service) load(w http.ResponseWriter, r *http.Request) (*invoice.Invoice, bool) {
	inv, err := s.Get(r.Context(), r.PathValue("id"))
	if err == nil {
		if t := route.Tenant(r); t != "" && t != inv.Tenant {
			err = fmt.Errorf("invoice %s: %w", r.PathValue("id"), invoice.ErrNotFound)
		}
	}
	if err != nil {
		writeErr(w, err)
		return nil, false
	}
	return inv, true
}

// Format picks a render from the format parameter, else the Accept header, else JSON.
func Format(r *http.Request) string {
	if f := r.URL.Query().Get("format"); f != "" {
		return f
	}
	accept := r.Header.Get("Accept")
	switch {
	case strings.Contains(accept, "application/pdf"):
		return "pdf"
	case strings.Contains(accept, "text/csv"):
		return "csv"
	}
	return "json"
}

// renderOptions names meters on customer documents as the configuration in force does.
func (s *Service) renderOptions() render.Options {
	if s.cfg == nil {
		return render.Options{}
	}
	return render.Options{Meters: render.MeterNames(s.cfg.Load().Meters)}
}

func (s *Service) getInvoice(w http.ResponseWriter, r *http.Request) {
	inv, ok := s.load(w, r)
	if !ok {
		return
	}
	var buf bytes.Buffer
	var err error
	ctype, ext := render.TypeJSON, "json"
	switch f := Format(r); f {
	case "json":
		err = render.JSON(&buf, inv)
	case "csv":
		ctype, ext = render.TypeCSV, "csv"
		err = render.CSV(&buf, inv)
	case "pdf":
		ctype, ext = render.TypePDF, "pdf"
		err = render.PDFWith(&buf, inv, s.renderOptions())
	default:
		problem.Error(w, http.StatusNotAcceptable, fmt.Sprintf("format %q: want json, csv or pdf", f))
		return
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", ctype)
	if ext != "json" {
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", inv.ID+"."+ext))
	}
	_, _ = w.Write(buf.Bytes())
}

func (s *Service) run(w http.ResponseWriter, r *http.Request) {
	p, err := rating.ParsePeriod(r.URL.Query().Get("period"))
	if err != nil {
		badRequest(w, "%v", err)
		return
	}
	res, err := s.Run(r.Context(), p)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := runResponse{RunResult: res}
	if res.Finalized > 0 && collectsThroughStripe(s.Catalogue()) {
		// The invoices just finalized go to Stripe now; a failure leaves them queued for
		// POST /v1/invoices/collect and does not undo the run.
		c, err := s.Collect(r.Context())
		out.Collection = &c
		if err != nil {
			out.CollectionError = err.Error()
		}
	}
	writeJSON(w, http.StatusOK, out)
}

type runResponse struct {
	invoice.RunResult
	Collection      *stripecollect.Result `json:"collection,omitempty"`
	CollectionError string                `json:"collection_error,omitempty"`
}

func (s *Service) collect(w http.ResponseWriter, r *http.Request) {
	res, err := s.Collect(r.Context())
	if errors.Is(err, ErrNoCollector) {
		problem.Error(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Service) finalize(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.load(w, r); !ok {
		return
	}
	inv, err := s.Finalize(r.Context(), r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

func (s *Service) void(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decode(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	if _, ok := s.load(w, r); !ok {
		return
	}
	inv, err := s.Void(r.Context(), r.PathValue("id"), body.Reason)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

func (s *Service) creditNote(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Amount string `json:"amount"` // major units, e.g. "12.50"
		Reason string `json:"reason"`
	}
	if err := decode(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	inv, ok := s.load(w, r)
	if !ok {
		return
	}
	amt, err := money.ParseAmount(body.Amount, inv.Currency)
	if err != nil {
		badRequest(w, "amount: %v", err)
		return
	}
	cn, err := s.IssueCreditNote(r.Context(), inv.ID, amt, body.Reason)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, cn)
}

func (s *Service) listCreditNotes(w http.ResponseWriter, r *http.Request) {
	cns, err := s.CreditNotes(r.Context(), route.Tenant(r))
	if err != nil {
		writeErr(w, err)
		return
	}
	if cns == nil {
		cns = []*invoice.CreditNote{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"credit_notes": cns})
}

func (s *Service) balance(w http.ResponseWriter, r *http.Request) {
	b, err := s.Balance(r.Context(), r.PathValue("tenant"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (s *Service) statement(w http.ResponseWriter, r *http.Request) {
	st, err := s.Statement(r.Context(), r.PathValue("tenant"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Service) listPayments(w http.ResponseWriter, r *http.Request) {
	ps, err := s.Payments(r.Context(), route.Tenant(r))
	if err != nil {
		writeErr(w, err)
		return
	}
	if ps == nil {
		ps = []*invoice.Payment{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"payments": ps})
}

// PaymentRequest is the body of POST /v1/payments. Amount is in major units ("120.00").
type PaymentRequest struct {
	Tenant     string    `json:"tenant"`
	Invoice    string    `json:"invoice"`
	Amount     string    `json:"amount"`
	Currency   string    `json:"currency"`
	Method     string    `json:"method"`
	Reference  string    `json:"reference"`
	ReceivedAt time.Time `json:"received_at"`
}

func (s *Service) recordPayment(w http.ResponseWriter, r *http.Request) {
	var body PaymentRequest
	if err := decode(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	cat := s.Catalogue()
	cur := cat.CurrencyOf(body.Tenant)
	if body.Invoice != "" {
		if inv, err := s.Get(r.Context(), body.Invoice); err == nil {
			cur = inv.Currency // the amount is read with the minor units of what it pays
		}
	}
	amt, err := money.ParseAmount(body.Amount, cur)
	if err != nil {
		badRequest(w, "amount: %v", err)
		return
	}
	if t := route.Tenant(r); t != "" && body.Tenant != "" && t != body.Tenant {
		badRequest(w, "tenant %q in the body differs from %q in the query", body.Tenant, t)
		return
	}
	p, err := s.RecordPayment(r.Context(), invoice.PaymentInput{Tenant: body.Tenant, Invoice: body.Invoice, Amount: amt,
		Currency: body.Currency, Method: body.Method, Reference: body.Reference, ReceivedAt: body.ReceivedAt})
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, p)
}

func (s *Service) plans(w http.ResponseWriter, _ *http.Request) {
	cat := s.Catalogue()
	writeJSON(w, http.StatusOK, map[string]any{"currency": cat.Currency.Code, "plans": cat.Plans})
}

func (s *Service) tenantPlan(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	now := s.Now()
	plan, err := s.PlanAt(r.Context(), tenant, now)
	if err != nil {
		writeErr(w, err)
		return
	}
	subs, err := s.Subscriptions(r.Context(), tenant)
	if err != nil {
		writeErr(w, err)
		return
	}
	if subs == nil {
		subs = []invoice.Subscription{}
	}
	sugg, err := s.Suggest(r.Context(), tenant, rating.PeriodOf(now))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenant": tenant, "plan": plan, "subscriptions": subs, "suggestion": sugg})
}

func (s *Service) changePlan(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Plan      string    `json:"plan"`
		Effective time.Time `json:"effective"` // zero: now
	}
	if err := decode(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	sub, err := s.ChangePlan(r.Context(), r.PathValue("tenant"), body.Plan, body.Effective)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, sub)
}

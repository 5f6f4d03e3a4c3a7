package billing

import (
	"net/http"
	"time"

	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/money"
)

// GrantRequest is the body of POST /v1/tenants/{tenant}/credit-grants. Amount is in major
// units ("50.00"); effective defaults to now, expires to never.
type GrantRequest struct {
	Kind      string     `json:"kind"` // promotional or purchased
	Reason    string     `json:"reason"`
	Amount    string     `json:"amount"`
	Currency  string     `json:"currency"`
	Priority  int        `json:"priority"`
	Effective time.Time  `json:"effective"`
	Expires   *time.Time `json:"expires"`
}

func (s *Service) createGrant(w http.ResponseWriter, r *http.Request) {
	var body GrantRequest
	if err := decode(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	cat := s.Catalogue()
	amt, err := money.ParseAmount(body.Amount, cat.CurrencyOf(r.PathValue("tenant")))
	if err != nil {
		badRequest(w, "amount: %v", err)
		return
	}
	g, err := s.CreateGrant(r.Context(), invoice.GrantInput{Tenant: r.PathValue("tenant"), Kind: body.Kind, Reason: body.Reason,
		Amount: amt, Currency: body.Currency, Priority: body.Priority, Effective: body.Effective, Expires: body.Expires})
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, g)
}

func (s *Service) listGrants(w http.ResponseWriter, r *http.Request) {
	b, err := s.Grants(r.Context(), r.PathValue("tenant"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (s *Service) redeemCoupon(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Code string `json:"code"`
	}
	if err := decode(r, &body); err != nil {
		badRequest(w, "%v", err)
		return
	}
	red, err := s.RedeemCoupon(r.Context(), r.PathValue("tenant"), body.Code)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, red)
}

func (s *Service) listCoupons(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	rs, err := s.Redemptions(r.Context(), tenant)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := rs[tenant]
	if out == nil {
		out = []invoice.Redemption{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenant": tenant, "coupons": out})
}

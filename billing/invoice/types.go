package invoice

import (
	"errors"
	"time"

	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/billing/tax"
)

// Status is an invoice's place in its life cycle: draft → finalized → paid, or → void.
type Status string

const (
	// Draft invoices are re-rated on every run and may change; they have no number.
	Draft Status = "draft"
	// Finalized invoices are immutable, numbered, and owed.
	Finalized Status = "finalized"
	// Paid invoices have nothing left to pay (payments, credits and credit notes cover them).
	Paid Status = "paid"
	// Void invoices were cancelled; they owe nothing and bill nothing.
	Void Status = "void"
)

// Errors callers map to HTTP statuses.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("conflict")      // the state does not allow the operation
	ErrGracePeriod = errors.New("grace period")  // too early to finalize
	ErrInvalid     = errors.New("invalid input") // bad arguments
)

// Segment is a stretch of the period on one plan, as printed.
type Segment struct {
	Plan string    `json:"plan"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Invoice is one tenant's bill for one month, with adjustment lines for late usage of earlier
// months. Amounts are minor units of Currency.
type Invoice struct {
	ID          string         `json:"id"` // the number once finalized, DRAFT-<period>-<tenant> before
	Number      string         `json:"number,omitempty"`
	Tenant      string         `json:"tenant"`
	Period      rating.Period  `json:"period"`
	PeriodStart time.Time      `json:"period_start"`
	PeriodEnd   time.Time      `json:"period_end"`
	Status      Status         `json:"status"`
	Currency    money.Currency `json:"currency"`
	Seller      pricing.Party  `json:"seller"`
	Buyer       pricing.Party  `json:"buyer"`
	Segments    []Segment      `json:"segments"`
	// Prices are the plans in force when the invoice was rated, kept so that re-rating the
	// period later (for late usage) uses the same prices even if the catalogue changed.
	Prices []pricing.Plan `json:"prices"`
	Lines  []rating.Line  `json:"lines"`

	Subtotal money.Amount `json:"subtotal"` // sum of lines
	// Taxes are computed on the subtotal (package tax); Tax is what they add (the exclusive
	// ones; inclusive taxes are part of the subtotal); Total = Subtotal + Tax.
	Taxes []tax.Line   `json:"taxes,omitempty"`
	Tax   money.Amount `json:"tax"`
	Total money.Amount `json:"total"`
	// CreditApplied is prepaid credit drawn down at finalization, before anything is charged.
	CreditApplied money.Amount `json:"credit_applied"`
	// GrantsApplied is credit grants drawn down at finalization (before prepaid credit), with
	// the grants and amounts in Grants.
	GrantsApplied   money.Amount `json:"grants_applied"`
	Grants          []GrantUse   `json:"credit_grants,omitempty"`
	AmountDue       money.Amount `json:"amount_due"` // subtotal - grants - credit applied, never below 0
	AmountPaid      money.Amount `json:"amount_paid"`
	AmountCredited  money.Amount `json:"amount_credited"`  // credit notes
	AmountRemaining money.Amount `json:"amount_remaining"` // due - paid - credited, never below 0

	Suggestion *rating.Suggestion `json:"upgrade_suggestion,omitempty"`

	CreatedAt     time.Time  `json:"created_at"`
	FinalizableAt time.Time  `json:"finalizable_at"` // period end + grace period
	FinalizedAt   *time.Time `json:"finalized_at,omitempty"`
	DueAt         *time.Time `json:"due_at,omitempty"`
	PaidAt        *time.Time `json:"paid_at,omitempty"`
	VoidedAt      *time.Time `json:"voided_at,omitempty"`
	VoidReason    string     `json:"void_reason,omitempty"`

	// Collection is the invoice's collection through a payment provider (nil: manual). It is
	// stored beside the invoice (see Service.Collection) and filled in when the invoice is read.
	Collection *Collection `json:"collection,omitempty"`
}

// CreditNote reduces what a finalized invoice owes; any excess becomes prepaid credit.
type CreditNote struct {
	Number    string       `json:"number"`
	Invoice   string       `json:"invoice"`
	Tenant    string       `json:"tenant"`
	Amount    money.Amount `json:"amount"`
	Currency  string       `json:"currency"`
	Reason    string       `json:"reason"`
	ToCredit  money.Amount `json:"to_credit"`          // part that became (or, when refunded, was paid back as) credit
	Refunded  money.Amount `json:"refunded,omitempty"` // part the provider paid back to the customer
	CreatedAt time.Time    `json:"created_at"`
}

// Payment is money received. Without an invoice it is a prepayment (credit).
type Payment struct {
	ID         string       `json:"id"`
	Tenant     string       `json:"tenant"`
	Invoice    string       `json:"invoice,omitempty"`
	Amount     money.Amount `json:"amount"`
	Currency   string       `json:"currency"`
	Method     string       `json:"method"`              // bank_transfer, card, stripe, ...
	Reference  string       `json:"reference,omitempty"` // the provider's id
	Applied    money.Amount `json:"applied"`             // part applied to the invoice
	ToCredit   money.Amount `json:"to_credit"`           // part that became prepaid credit
	Refunds    []Refund     `json:"refunds,omitempty"`   // given back by the provider
	ReceivedAt time.Time    `json:"received_at"`
	CreatedAt  time.Time    `json:"created_at"`
}

// PaymentInput is a payment to record.
type PaymentInput struct {
	Tenant     string       `json:"tenant"`
	Invoice    string       `json:"invoice"`
	Amount     money.Amount `json:"amount"`
	Currency   string       `json:"currency"`
	Method     string       `json:"method"`
	Reference  string       `json:"reference"`
	ReceivedAt time.Time    `json:"received_at"`
}

// Balance is what a tenant owes: outstanding invoices less available credit.
type Balance struct {
	Tenant       string       `json:"tenant"`
	Currency     string       `json:"currency"`
	Outstanding  money.Amount `json:"outstanding"` // sum of amount_remaining of finalized invoices
	Credit       money.Amount `json:"credit"`      // prepaid credit available
	Balance      money.Amount `json:"balance"`     // outstanding - credit; negative = in credit
	OpenInvoices int          `json:"open_invoices"`
}

// Entry is one statement line. Debit raises what the tenant owes, credit lowers it.
type Entry struct {
	Time        time.Time    `json:"time"`
	Kind        string       `json:"kind"` // invoice, void, payment, credit_note
	Reference   string       `json:"reference"`
	Description string       `json:"description"`
	Debit       money.Amount `json:"debit"`
	Credit      money.Amount `json:"credit"`
	Balance     money.Amount `json:"balance"` // running
}

// Statement is a tenant's account history.
type Statement struct {
	Tenant   string  `json:"tenant"`
	Currency string  `json:"currency"`
	Entries  []Entry `json:"entries"`
	Balance  Balance `json:"balance"`
}

// Subscription is a plan from an instant on. It overrides the configuration's tenant → plan.
type Subscription struct {
	Tenant    string    `json:"tenant"`
	Plan      string    `json:"plan"`
	Effective time.Time `json:"effective"`
}

// RunResult reports an invoice run.
type RunResult struct {
	Period    rating.Period `json:"period"`
	Tenants   int           `json:"tenants"`
	Drafts    int           `json:"drafts"`    // invoices left as drafts (grace period running)
	Finalized int           `json:"finalized"` // invoices finalized by this run
	Skipped   int           `json:"skipped"`   // tenants already invoiced for the period
	Total     money.Amount  `json:"total"`     // sum of the subtotals produced
	Invoices  []string      `json:"invoices"`  // ids produced, in tenant order
}

// Gross is what the invoice asks before credit: the subtotal and the taxes it adds. (Invoices
// stored before taxes existed have Tax 0, so Gross is their subtotal.)
func (inv *Invoice) Gross() money.Amount { return inv.Subtotal + inv.Tax }

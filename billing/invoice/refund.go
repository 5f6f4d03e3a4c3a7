package invoice

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/billing/money"
)

// Refund is money a provider gave back on a payment.
type Refund struct {
	Amount money.Amount `json:"amount"`
	At     time.Time    `json:"at"`
	Event  string       `json:"event"` // the provider's event id
	// FromInvoice is the part that reopened the invoice; the rest came out of prepaid credit.
	FromInvoice money.Amount `json:"from_invoice"`
}

// RecordProviderRefund records that a provider refunded a payment it reported (found by its
// reference: the provider's payment id). refunded is the payment's cumulative refunded amount,
// as providers report it, so a replayed or reordered event records only what is new; the event
// id is marked in the same batch. A refund first reopens the invoice the payment paid (what it
// owes grows again, and dunning resumes once it is overdue), then takes the rest from the
// prepaid credit the payment created. It returns the refund recorded (nil when nothing new).
func (s *Service) RecordProviderRefund(_ context.Context, provider, eventID, reference string, refunded money.Amount) (*Refund, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	marker := key(pHook, provider, eventID)
	_, seen, err := get(s.db, marker)
	if err != nil || seen {
		return nil, seen, err
	}
	var pay *Payment
	if err := scan(s.db, []byte(pPay), func(_, v []byte) error {
		var p Payment
		if err := jsonUnmarshal(v, &p); err != nil {
			return err
		}
		if p.Method == provider && p.Reference == reference {
			pay = &p
		}
		return nil
	}); err != nil {
		return nil, false, err
	}
	if pay == nil {
		return nil, false, fmt.Errorf("refund of %s: %w: no %s payment with that reference", reference, ErrNotFound, provider)
	}
	var done money.Amount
	for _, r := range pay.Refunds {
		done += r.Amount
	}
	b := s.db.NewBatch()
	defer b.Close()
	delta := min(refunded, pay.Amount) - done
	if delta <= 0 {
		if err := b.Set(marker, []byte(pay.ID), nil); err != nil {
			return nil, false, err
		}
		return nil, false, b.Commit(pebble.Sync)
	}
	now := s.now().UTC()
	r := Refund{Amount: delta, At: now, Event: eventID}
	var fromApplied money.Amount
	for _, x := range pay.Refunds {
		fromApplied += x.FromInvoice
	}
	if pay.Invoice != "" {
		inv, err := s.getStored(pay.Invoice)
		if err != nil {
			return nil, false, err
		}
		r.FromInvoice = min(delta, pay.Applied-fromApplied)
		if r.FromInvoice > 0 && inv.Status != Void {
			inv.AmountPaid -= r.FromInvoice
			inv.AmountRemaining += r.FromInvoice
			if inv.Status == Paid {
				inv.Status, inv.PaidAt = Finalized, nil
			}
			if err := putJSON(b, []byte(pInv+inv.Number), inv); err != nil {
				return nil, false, err
			}
			if err := markOpen(b, inv); err != nil {
				return nil, false, err
			}
		}
	}
	if rest := delta - r.FromInvoice; rest > 0 {
		if err := s.addCredit(b, pay.Tenant, -rest); err != nil {
			return nil, false, err
		}
	}
	pay.Refunds = append(pay.Refunds, r)
	if err := putJSON(b, []byte(pPay+pay.ID), pay); err != nil {
		return nil, false, err
	}
	if err := b.Set(marker, []byte(pay.ID), nil); err != nil {
		return nil, false, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, false, fmt.Errorf("refund of %s: %w", pay.ID, err)
	}
	s.log.Info("refund recorded", "payment", pay.ID, "tenant", pay.Tenant, "invoice", pay.Invoice, "amount", int64(delta))
	return &r, false, nil
}

// RecordProviderCreditNote records a credit note the provider issued on the invoice it collects
// (providerInvoice is its id, as recorded on our invoice's collection), idempotently on the
// event id: our credit note of the same amount, and, for the part the provider refunded (or
// settled out of band), that money leaving the prepaid credit the credit note created.
func (s *Service) RecordProviderCreditNote(_ context.Context, provider, eventID, providerInvoice string, amount, refunded money.Amount, reason string) (*CreditNote, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	marker := key(pHook, provider, eventID)
	_, seen, err := get(s.db, marker)
	if err != nil || seen {
		return nil, seen, err
	}
	number, found, err := get(s.db, key(pPRef, provider, providerInvoice))
	if err != nil {
		return nil, false, err
	}
	if !found {
		return nil, false, fmt.Errorf("credit note on %s: %w: no invoice of ours was sent as it", providerInvoice, ErrNotFound)
	}
	cn, err := s.creditNoteLocked(string(number), amount, reason, refunded, func(b *pebble.Batch, cn *CreditNote) error {
		return b.Set(marker, []byte(cn.Number), nil)
	})
	return cn, false, err
}

// refunded is what the provider gave back on the payment.
func (p *Payment) refunded() money.Amount {
	var s money.Amount
	for _, r := range p.Refunds {
		s += r.Amount
	}
	return s
}

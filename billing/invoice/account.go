package invoice

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/billing/money"
)

// RecordPayment records money received. With an invoice number it pays that invoice (the
// tenant is the invoice's) and any excess becomes prepaid credit; without one it is a
// prepayment: credit drawn down by the next invoices at finalization.
func (s *Service) RecordPayment(ctx context.Context, in PaymentInput) (*Payment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, _, err := s.recordPaymentLocked(ctx, in, nil)
	return p, err
}

// RecordProviderPayment is RecordPayment made idempotent on a payment provider's event id: the
// payment and the event's marker are written in one batch, so a replayed event returns the
// first payment with duplicate == true and records nothing.
func (s *Service) RecordProviderPayment(ctx context.Context, provider, eventID string, in PaymentInput) (p *Payment, duplicate bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	marker := key(pHook, provider, eventID)
	prev, seen, err := get(s.db, marker)
	if err != nil {
		return nil, false, err
	}
	if seen {
		var first Payment
		if _, err := getJSON(s.db, []byte(pPay+string(prev)), &first); err != nil {
			return nil, true, err
		}
		return &first, true, nil
	}
	p, _, err = s.recordPaymentLocked(ctx, in, marker)
	return p, false, err
}

// MarkProviderEvent records a provider event that carries no payment, so its replay is
// recognised too. It reports whether the event was seen before.
func (s *Service) MarkProviderEvent(_ context.Context, provider, eventID string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	marker := key(pHook, provider, eventID)
	_, seen, err := get(s.db, marker)
	if err != nil || seen {
		return seen, err
	}
	if err := s.db.Set(marker, nil, pebble.Sync); err != nil {
		return false, fmt.Errorf("mark provider event %s: %w", eventID, err)
	}
	return false, nil
}

func (s *Service) recordPaymentLocked(_ context.Context, in PaymentInput, marker []byte) (*Payment, *Invoice, error) {
	cat := s.Catalogue()
	if in.Amount <= 0 {
		return nil, nil, fmt.Errorf("record payment: %w: amount must be positive", ErrInvalid)
	}

	now := s.now()
	if in.ReceivedAt.IsZero() {
		in.ReceivedAt = now
	}
	if in.Method == "" {
		in.Method = "manual"
	}
	var inv *Invoice
	if in.Invoice != "" {
		var err error
		if inv, err = s.getStored(in.Invoice); err != nil {
			return nil, nil, fmt.Errorf("record payment: %w", err)
		}
		if inv.Number == "" || inv.Status == Void {
			return nil, nil, fmt.Errorf("record payment: %w: invoice %s is %s", ErrConflict, in.Invoice, inv.Status)
		}
		if in.Tenant != "" && in.Tenant != inv.Tenant {
			return nil, nil, fmt.Errorf("record payment: %w: invoice %s belongs to %s, not %s", ErrInvalid, in.Invoice, inv.Tenant, in.Tenant)
		}
		in.Tenant = inv.Tenant
	}
	if in.Tenant == "" {
		return nil, nil, fmt.Errorf("record payment: %w: a tenant or an invoice is required", ErrInvalid)
	}
	// The currency is the invoice's, or the tenant's for a prepayment: nothing converts.
	billed := cat.CurrencyOf(in.Tenant).Code
	if inv != nil {
		billed = inv.Currency.Code
	}
	if in.Currency == "" {
		in.Currency = billed
	}
	if in.Currency != billed {
		return nil, nil, fmt.Errorf("record payment: %w: currency %s, the tenant is billed in %s", ErrInvalid, in.Currency, billed)
	}
	last, err := seq{"payment"}.last(s.db)
	if err != nil {
		return nil, nil, err
	}
	pay := &Payment{ID: fmt.Sprintf("PAY-%08d", last+1), Tenant: in.Tenant, Invoice: in.Invoice, Amount: in.Amount,
		Currency: in.Currency, Method: in.Method, Reference: in.Reference, ReceivedAt: in.ReceivedAt.UTC(), CreatedAt: now}
	b := s.db.NewBatch()
	defer b.Close()
	lifted := false
	pay.ToCredit = pay.Amount
	if inv != nil {
		pay.Applied = min(pay.Amount, inv.AmountRemaining)
		pay.ToCredit = pay.Amount - pay.Applied
		inv.AmountPaid += pay.Applied
		inv.AmountRemaining -= pay.Applied
		s.settle(inv, now)
		if err := putJSON(b, []byte(pInv+inv.Number), inv); err != nil {
			return nil, nil, err
		}
		if lifted, err = s.unmarkOpen(b, inv, marker != nil && in.Method == "stripe"); err != nil {
			return nil, nil, err
		}
	}
	if pay.ToCredit > 0 {
		if err := s.addCredit(b, pay.Tenant, pay.ToCredit); err != nil {
			return nil, nil, err
		}
	}
	if err := putJSON(b, []byte(pPay+pay.ID), pay); err != nil {
		return nil, nil, err
	}
	if err := b.Set(key(pTPay, pay.Tenant, pay.ID), nil, nil); err != nil {
		return nil, nil, err
	}
	if marker != nil {
		if err := b.Set(marker, []byte(pay.ID), nil); err != nil {
			return nil, nil, err
		}
	}
	if err := (seq{"payment"}).set(b, last+1); err != nil {
		return nil, nil, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, nil, fmt.Errorf("record payment: %w", err)
	}
	if lifted {
		s.invalidateHolds()
		s.log.Info("dunning hold lifted", "tenant", pay.Tenant, "invoice", pay.Invoice, "payment", pay.ID)
	}
	s.log.Info("payment recorded", "id", pay.ID, "tenant", pay.Tenant, "invoice", pay.Invoice, "amount", int64(pay.Amount))
	return pay, inv, nil
}

func (s *Service) settle(inv *Invoice, now time.Time) {
	if inv.Status == Finalized && inv.AmountRemaining == 0 {
		inv.Status = Paid
		t := now
		inv.PaidAt = &t
	}
}

func (s *Service) addCredit(b *pebble.Batch, tenant string, delta money.Amount) error {
	c, err := getInt(s.db, key(pCredit, tenant))
	if err != nil {
		return err
	}
	return putInt(b, key(pCredit, tenant), c+int64(delta))
}

// Void cancels a finalized invoice that nothing has paid or credited yet; prepaid credit it
// drew down goes back to the tenant. Its lines stop counting as billed, so the next run bills
// that usage again (ErrConflict if payments or credit notes exist: issue a credit note instead).
func (s *Service) Void(_ context.Context, number, reason string) (*Invoice, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv, err := s.getStored(number)
	if err != nil {
		return nil, fmt.Errorf("void: %w", err)
	}
	switch {
	case inv.Number == "":
		return nil, fmt.Errorf("void %s: %w: a draft is not owed; it is replaced on the next run", number, ErrConflict)
	case inv.Status == Void:
		return nil, fmt.Errorf("void %s: %w: already void", number, ErrConflict)
	case inv.AmountPaid > 0 || inv.AmountCredited > 0:
		return nil, fmt.Errorf("void %s: %w: it has payments or credit notes; issue a credit note", number, ErrConflict)
	}
	now := s.now()
	b := s.db.NewBatch()
	defer b.Close()
	// Undo what finalization did to the credit balance.
	delta := inv.CreditApplied
	if inv.Gross() < 0 {
		delta = inv.Gross()
	}
	if delta != 0 {
		if err := s.addCredit(b, inv.Tenant, delta); err != nil {
			return nil, err
		}
	}
	if err := s.returnGrants(b, inv); err != nil {
		return nil, err
	}
	inv.Status = Void
	inv.VoidedAt = &now
	inv.VoidReason = reason
	inv.AmountRemaining = 0
	if err := putJSON(b, []byte(pInv+inv.Number), inv); err != nil {
		return nil, err
	}
	lifted, err := s.unmarkOpen(b, inv, false)
	if err != nil {
		return nil, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, fmt.Errorf("void %s: %w", number, err)
	}
	if lifted {
		s.invalidateHolds()
	}
	s.log.Info("invoice voided", "number", number, "reason", reason)
	return inv, nil
}

// IssueCreditNote credits a finalized invoice. The amount first reduces what remains to pay; the
// rest becomes prepaid credit. It may not exceed the invoice's subtotal less earlier credit
// notes. Credit notes correct money, not usage: they do not change what counts as billed, so
// they never cause usage to be billed again.
func (s *Service) IssueCreditNote(_ context.Context, number string, amount money.Amount, reason string) (*CreditNote, error) {
	if amount <= 0 {
		return nil, fmt.Errorf("credit note: %w: amount must be positive", ErrInvalid)
	}
	if reason == "" {
		return nil, fmt.Errorf("credit note: %w: a reason is required", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.creditNoteLocked(number, amount, reason, 0, nil)
}

// creditNoteLocked issues a credit note; extra, when set, adds its writes to the same batch.
// The caller holds mu.
// refunded is the part of the credit the provider paid back to the customer: it does not become
// prepaid credit.
func (s *Service) creditNoteLocked(number string, amount money.Amount, reason string, refunded money.Amount, extra func(b *pebble.Batch, cn *CreditNote) error) (*CreditNote, error) {
	inv, err := s.getStored(number)
	if err != nil {
		return nil, fmt.Errorf("credit note: %w", err)
	}
	if inv.Number == "" || inv.Status == Void {
		return nil, fmt.Errorf("credit note on %s: %w: invoice is %s", number, ErrConflict, inv.Status)
	}
	if room := inv.Gross() - inv.AmountCredited; amount > room {
		return nil, fmt.Errorf("credit note on %s: %w: at most %d can still be credited", number, ErrInvalid, int64(room))
	}
	last, err := seq{"credit_note"}.last(s.db)
	if err != nil {
		return nil, err
	}
	now := s.now()
	cn := &CreditNote{Number: fmt.Sprintf("CN-%08d", last+1), Invoice: number, Tenant: inv.Tenant, Amount: amount,
		Currency: inv.Currency.Code, Reason: reason, CreatedAt: now}
	reduce := min(amount, inv.AmountRemaining)
	cn.ToCredit = amount - reduce
	inv.AmountCredited += amount
	inv.AmountRemaining -= reduce
	s.settle(inv, now)
	b := s.db.NewBatch()
	defer b.Close()
	if refunded > cn.ToCredit {
		return nil, fmt.Errorf("credit note on %s: %w: %d refunded, but only %d of it had been paid", number, ErrConflict, int64(refunded), int64(cn.ToCredit))
	}
	cn.Refunded = refunded
	if left := cn.ToCredit - refunded; left > 0 {
		if err := s.addCredit(b, inv.Tenant, left); err != nil {
			return nil, err
		}
	}
	if err := putJSON(b, []byte(pInv+inv.Number), inv); err != nil {
		return nil, err
	}
	lifted, err := s.unmarkOpen(b, inv, false)
	if err != nil {
		return nil, err
	}
	if err := putJSON(b, []byte(pCN+cn.Number), cn); err != nil {
		return nil, err
	}
	if err := b.Set(key(pTCN, inv.Tenant, cn.Number), nil, nil); err != nil {
		return nil, err
	}
	if err := (seq{"credit_note"}).set(b, last+1); err != nil {
		return nil, err
	}
	if extra != nil {
		if err := extra(b, cn); err != nil {
			return nil, err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, fmt.Errorf("credit note on %s: %w", number, err)
	}
	if lifted {
		s.invalidateHolds()
	}
	return cn, nil
}

// CreditNotes lists credit notes of a tenant, or of every tenant when tenant is "".
func (s *Service) CreditNotes(_ context.Context, tenant string) ([]*CreditNote, error) {
	var out []*CreditNote
	err := scan(s.db, []byte(pCN), func(_, v []byte) error {
		var cn CreditNote
		if err := jsonUnmarshal(v, &cn); err != nil {
			return err
		}
		if tenant == "" || cn.Tenant == tenant {
			out = append(out, &cn)
		}
		return nil
	})
	return out, err
}

// Payments lists payments of a tenant, or of every tenant when tenant is "".
func (s *Service) Payments(_ context.Context, tenant string) ([]*Payment, error) {
	var out []*Payment
	err := scan(s.db, []byte(pPay), func(_, v []byte) error {
		var p Payment
		if err := jsonUnmarshal(v, &p); err != nil {
			return err
		}
		if tenant == "" || p.Tenant == tenant {
			out = append(out, &p)
		}
		return nil
	})
	return out, err
}

// Balance is what the tenant owes now.
func (s *Service) Balance(ctx context.Context, tenant string) (Balance, error) {
	cat := s.Catalogue()
	b := Balance{Tenant: tenant, Currency: cat.CurrencyOf(tenant).Code}
	invs, err := s.List(ctx, Filter{Tenant: tenant})
	if err != nil {
		return b, err
	}
	for _, inv := range invs {
		if inv.Status == Finalized {
			b.Outstanding += inv.AmountRemaining
			b.OpenInvoices++
		}
	}
	c, err := getInt(s.db, key(pCredit, tenant))
	if err != nil {
		return b, err
	}
	b.Credit = money.Amount(c)
	b.Balance = b.Outstanding - b.Credit
	return b, nil
}

// Statement lists the tenant's invoices, voids, payments and credit notes in time order with a
// running balance. The final running balance equals Balance().Balance: the statement is derived
// from the same documents, not kept separately.
func (s *Service) Statement(ctx context.Context, tenant string) (Statement, error) {
	st := Statement{Tenant: tenant, Entries: []Entry{}}
	invs, err := s.List(ctx, Filter{Tenant: tenant})
	if err != nil {
		return st, err
	}
	for _, inv := range invs {
		if inv.Number == "" {
			continue
		}
		e := Entry{Time: *inv.FinalizedAt, Kind: "invoice", Reference: inv.Number,
			Description: "Invoice " + inv.Number + " for " + inv.Period.String()}
		if inv.Gross() >= 0 {
			e.Debit = inv.Gross()
		} else {
			e.Credit = -inv.Gross()
		}
		st.Entries = append(st.Entries, e)
		if inv.Status == Void {
			st.Entries = append(st.Entries, Entry{Time: *inv.VoidedAt, Kind: "void", Reference: inv.Number,
				Description: "Void " + inv.Number + ": " + inv.VoidReason, Debit: e.Credit, Credit: e.Debit})
		}
	}
	pays, err := s.Payments(ctx, tenant)
	if err != nil {
		return st, err
	}
	for _, p := range pays {
		d := "Payment " + p.ID + " (" + p.Method + ")"
		if p.Invoice != "" {
			d += " for " + p.Invoice
		}
		st.Entries = append(st.Entries, Entry{Time: p.CreatedAt, Kind: "payment", Reference: p.ID, Description: d, Credit: p.Amount})
		for _, r := range p.Refunds {
			st.Entries = append(st.Entries, Entry{Time: r.At, Kind: "refund", Reference: p.ID, Description: "Refund of payment " + p.ID, Debit: r.Amount})
		}
	}
	cns, err := s.CreditNotes(ctx, tenant)
	if err != nil {
		return st, err
	}
	for _, cn := range cns {
		st.Entries = append(st.Entries, Entry{Time: cn.CreatedAt, Kind: "credit_note", Reference: cn.Number,
			Description: "Credit note " + cn.Number + " on " + cn.Invoice + ": " + cn.Reason, Credit: cn.Amount})
		if cn.Refunded > 0 {
			st.Entries = append(st.Entries, Entry{Time: cn.CreatedAt, Kind: "refund", Reference: cn.Number,
				Description: "Refunded with credit note " + cn.Number, Debit: cn.Refunded})
		}
	}
	sort.SliceStable(st.Entries, func(i, j int) bool { return st.Entries[i].Time.Before(st.Entries[j].Time) })
	// Documents archived by retention leave their net as an opening balance (archive.go).
	if opening, err := getInt(s.db, key(pOpening, tenant)); err != nil {
		return st, err
	} else if opening != 0 {
		e := Entry{Kind: "opening", Description: "Opening balance: archived documents"}
		if opening > 0 {
			e.Debit = money.Amount(opening)
		} else {
			e.Credit = money.Amount(-opening)
		}
		st.Entries = append([]Entry{e}, st.Entries...)
	}
	var run money.Amount
	for i := range st.Entries {
		run += st.Entries[i].Debit - st.Entries[i].Credit
		st.Entries[i].Balance = run
	}
	if st.Balance, err = s.Balance(ctx, tenant); err != nil {
		return st, err
	}
	st.Currency = st.Balance.Currency
	return st, nil
}

package invoice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/rating"
)

// Retention of invoices. A billing month can be archived (and then deleted from the store) once
// every invoice of the period is settled, paid or void: balances count only what is still owed
// and the stored prepaid credit, so removing settled documents leaves every balance exact. The
// statement is a running balance over documents, so what the archived documents added to it is
// kept per tenant as an opening balance (b/opening/<tenant>) and shown as the statement's first
// line. Payments and credit notes of the period's invoices go with them.
const pOpening = "b/opening/"

// ErrUnsettled refuses to archive a period that still has money owed or drafts.
var ErrUnsettled = errors.New("the period has invoices that are not settled (paid or void)")

// archiveDoc is one key (and value) that archiving a period takes out of the store.
type archiveDoc struct {
	k, v []byte
}

// ExportPeriod calls fn with every stored key and value that archiving the period removes, in a
// stable order: invoices with their indexes, then their credit notes and payments, and the
// period's closing marker.
func (s *Service) ExportPeriod(_ context.Context, p rating.Period, fn func(k, v []byte) error) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	docs, _, err := s.periodDocs(p)
	if err != nil {
		return 0, err
	}
	for _, d := range docs {
		if err := fn(d.k, d.v); err != nil {
			return 0, err
		}
	}
	return len(docs), nil
}

// periodDocs collects a settled period's documents and the net each tenant's statement loses.
func (s *Service) periodDocs(p rating.Period) ([]archiveDoc, map[string]money.Amount, error) {
	if has, err := exists(s.db, []byte(pDraft), p.String()+"\x00"); err != nil || has {
		if err == nil {
			err = fmt.Errorf("%s: %w (drafts exist)", p, ErrUnsettled)
		}
		return nil, nil, err
	}
	var docs []archiveDoc
	net := map[string]money.Amount{}
	numbers := map[string]bool{}
	add := func(k []byte) error {
		v, ok, err := get(s.db, k)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("index names a missing document %q", k)
		}
		docs = append(docs, archiveDoc{bytes.Clone(k), v})
		return nil
	}
	err := scan(s.db, key(pPInv, p.String()+"\x00"), func(k, _ []byte) error {
		parts := strings.Split(string(k[len(pPInv):]), "\x00")
		if len(parts) != 3 {
			return fmt.Errorf("malformed index key %q", k)
		}
		tenant, number := parts[1], parts[2]
		var inv Invoice
		if _, err := getJSON(s.db, key(pInv, number), &inv); err != nil {
			return err
		}
		if inv.Status != Paid && inv.Status != Void {
			return fmt.Errorf("%s: %w (%s is %s)", p, ErrUnsettled, number, inv.Status)
		}
		numbers[number] = true
		// What the statement shows for the invoice (and its void): see Statement.
		if inv.Status != Void {
			net[tenant] += inv.Gross()
		}
		docs = append(docs, archiveDoc{bytes.Clone(k), nil})
		if err := add(key(pInv, number)); err != nil {
			return err
		}
		docs = append(docs, archiveDoc{key(pTInv, tenant, number), nil})
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	err = scan(s.db, []byte(pCN), func(k, v []byte) error {
		var cn CreditNote
		if err := json.Unmarshal(v, &cn); err != nil {
			return fmt.Errorf("credit note %q: %w", k, err)
		}
		if numbers[cn.Invoice] {
			net[cn.Tenant] -= cn.Amount - cn.Refunded // as the statement shows it (credit, then refund)
			docs = append(docs, archiveDoc{bytes.Clone(k), bytes.Clone(v)}, archiveDoc{key(pTCN, cn.Tenant, cn.Number), nil})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	err = scan(s.db, []byte(pPay), func(k, v []byte) error {
		var pay Payment
		if err := json.Unmarshal(v, &pay); err != nil {
			return fmt.Errorf("payment %q: %w", k, err)
		}
		if pay.Invoice != "" && numbers[pay.Invoice] {
			net[pay.Tenant] -= pay.Amount - pay.refunded() // as the statement shows it (payment, then refunds)
			docs = append(docs, archiveDoc{bytes.Clone(k), bytes.Clone(v)}, archiveDoc{key(pTPay, pay.Tenant, pay.ID), nil})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if v, ok, err := get(s.db, key(pClosed, p.String())); err != nil {
		return nil, nil, err
	} else if ok {
		docs = append(docs, archiveDoc{key(pClosed, p.String()), v})
	}
	return docs, net, nil
}

// DeleteArchived deletes a settled period's documents, once the caller holds a verified
// archive of exactly what ExportPeriod produced (next yields its keys, then ErrArchiveEnd), and
// carries their net into each tenant's opening balance. It refuses if the documents changed.
func (s *Service) DeleteArchived(_ context.Context, p rating.Period, next func() ([]byte, error)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	docs, net, err := s.periodDocs(p)
	if err != nil {
		return 0, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	n := 0
	for {
		k, err := next()
		if errors.Is(err, ErrArchiveEnd) {
			break
		}
		if err != nil {
			return 0, err
		}
		if n >= len(docs) || !bytes.Equal(k, docs[n].k) {
			return 0, fmt.Errorf("%s: the archive does not match the stored documents (at %q): nothing deleted", p, k)
		}
		if err := b.Delete(k, nil); err != nil {
			return 0, err
		}
		n++
	}
	if n != len(docs) {
		return 0, fmt.Errorf("%s: the archive holds %d of %d documents: nothing deleted", p, n, len(docs))
	}
	if err := s.addOpening(b, net, 1); err != nil {
		return 0, err
	}
	return n, b.Commit(pebble.Sync)
}

// RestorePeriod writes an archived period's documents back and takes their net out of the
// opening balances again, in one batch.
func (s *Service) RestorePeriod(_ context.Context, p rating.Period, next func() ([]byte, []byte, error)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	net := map[string]money.Amount{}
	n := 0
	for {
		k, v, err := next()
		if errors.Is(err, ErrArchiveEnd) {
			break
		}
		if err != nil {
			return 0, err
		}
		if !bytes.HasPrefix(k, []byte("b/")) {
			return 0, fmt.Errorf("archive holds %q, which is not billing data", k)
		}
		// The same nets periodDocs computed when the period was archived.
		switch {
		case bytes.HasPrefix(k, []byte(pInv)):
			var inv Invoice
			if err := json.Unmarshal(v, &inv); err != nil {
				return 0, fmt.Errorf("archived invoice %q: %w", k, err)
			}
			if inv.Status != Void {
				net[inv.Tenant] += inv.Gross()
			}
		case bytes.HasPrefix(k, []byte(pCN)):
			var cn CreditNote
			if err := json.Unmarshal(v, &cn); err != nil {
				return 0, fmt.Errorf("archived credit note %q: %w", k, err)
			}
			net[cn.Tenant] -= cn.Amount - cn.Refunded
		case bytes.HasPrefix(k, []byte(pPay)):
			var pay Payment
			if err := json.Unmarshal(v, &pay); err != nil {
				return 0, fmt.Errorf("archived payment %q: %w", k, err)
			}
			net[pay.Tenant] -= pay.Amount - pay.refunded()
		}
		if err := b.Set(k, v, nil); err != nil {
			return 0, err
		}
		n++
	}
	if err := s.addOpening(b, net, -1); err != nil {
		return 0, err
	}
	return n, b.Commit(pebble.Sync)
}

func (s *Service) addOpening(b *pebble.Batch, net map[string]money.Amount, sign int64) error {
	for tenant, amount := range net {
		cur, err := getInt(s.db, key(pOpening, tenant))
		if err != nil {
			return err
		}
		if err := putInt(b, key(pOpening, tenant), cur+sign*int64(amount)); err != nil {
			return err
		}
	}
	return nil
}

// ErrArchiveEnd ends the iterators of DeleteArchived and RestorePeriod.
var ErrArchiveEnd = errors.New("end of archive")

func exists(db *pebble.DB, prefix []byte, sub string) (bool, error) {
	found := false
	err := scan(db, append(bytes.Clone(prefix), sub...), func([]byte, []byte) error {
		found = true
		return errStop
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return found, err
}

var errStop = errors.New("stop")

// OldestPeriod is the earliest period with a finalized invoice still in the store.
func (s *Service) OldestPeriod(_ context.Context) (rating.Period, bool, error) {
	var p rating.Period
	found := false
	err := scan(s.db, []byte(pPInv), func(k, _ []byte) error {
		rest := string(k[len(pPInv):])
		if i := strings.IndexByte(rest, 0); i > 0 {
			var err error
			if p, err = rating.ParsePeriod(rest[:i]); err != nil {
				return err
			}
			found = true
		}
		return errStop
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return p, found, err
}

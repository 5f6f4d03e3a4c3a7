package invoice

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// DunningEntry is one step taken on an unpaid invoice.
type DunningEntry struct {
	Step   int       `json:"step"` // 1-based step of the plan's schedule
	At     time.Time `json:"at"`
	Action string    `json:"action"` // reminder, stripe_retry_charge, stripe_resend, hold
	Result string    `json:"result"`
}

// Dunning is the dunning state of one invoice: the steps taken and whether the tenant is held.
type Dunning struct {
	Invoice string         `json:"invoice"`
	Tenant  string         `json:"tenant"`
	Plan    string         `json:"plan"`
	Step    int            `json:"step"`  // last step taken
	Steps   int            `json:"steps"` // the schedule's length
	Held    bool           `json:"held"`  // the consequence applies until the invoice is settled
	History []DunningEntry `json:"history"`
}

// holdCache keeps the tenants on hold in memory: quota admission asks on every request.
type holdCache struct {
	mu     sync.RWMutex
	loaded bool
	byTen  map[string]string // tenant → reason
}

// markOpen indexes a finalized invoice that still owes something, by number, with its due
// date: dunning reads this index instead of every invoice ever issued.
func markOpen(b *pebble.Batch, inv *Invoice) error {
	if inv.Status != Finalized || inv.AmountRemaining <= 0 || inv.DueAt == nil {
		return nil
	}
	return b.Set([]byte(pOpen+inv.Number), binary.BigEndian.AppendUint64(nil, uint64(inv.DueAt.UnixNano())), nil)
}

// unmarkOpen drops a settled or voided invoice from the open index and lifts any hold it
// caused, in the batch that settles it. It reports whether a hold was lifted. An invoice the
// provider is collecting, settled here by other means (byProvider false), goes back on the
// collection queue, so that the collector closes it at the provider (void, or paid out of band).
func (s *Service) unmarkOpen(b *pebble.Batch, inv *Invoice, byProvider bool) (bool, error) {
	if inv.Status == Finalized {
		return false, nil
	}
	if err := b.Delete([]byte(pOpen+inv.Number), nil); err != nil {
		return false, err
	}
	if !byProvider {
		var c Collection
		found, err := getJSON(s.db, []byte(pColl+inv.Number), &c)
		if err != nil {
			return false, err
		}
		if found && c.Invoice != "" {
			if err := b.Set([]byte(pCollQ+inv.Number), nil, nil); err != nil {
				return false, err
			}
		}
	}
	hk := key(pHold, inv.Tenant, inv.Number)
	_, held, err := get(s.db, hk)
	if err != nil || !held {
		return false, err
	}
	return true, b.Delete(hk, nil)
}

// invalidateHolds makes the next Hold read the holds again.
func (s *Service) invalidateHolds() {
	s.holds.mu.Lock()
	s.holds.loaded = false
	s.holds.mu.Unlock()
}

// Hold reports whether the tenant is on a dunning hold (an overdue invoice past the last step
// of a schedule whose consequence is hard_deny), and why.
func (s *Service) Hold(_ context.Context, tenant string) (string, bool, error) {
	s.holds.mu.RLock()
	if s.holds.loaded {
		r, ok := s.holds.byTen[tenant]
		s.holds.mu.RUnlock()
		return r, ok, nil
	}
	s.holds.mu.RUnlock()
	s.holds.mu.Lock()
	defer s.holds.mu.Unlock()
	if !s.holds.loaded {
		m := map[string]string{}
		if err := scan(s.db, []byte(pHold), func(k, v []byte) error {
			rest := string(k[len(pHold):])
			t := rest[:strings.IndexByte(rest, 0)]
			if _, ok := m[t]; !ok {
				m[t] = string(v)
			}
			return nil
		}); err != nil {
			return "", false, err
		}
		s.holds.byTen, s.holds.loaded = m, true
	}
	r, ok := s.holds.byTen[tenant]
	return r, ok, nil
}

// Holds lists the tenants on hold with the reason.
func (s *Service) Holds(ctx context.Context) (map[string]string, error) {
	if _, _, err := s.Hold(ctx, ""); err != nil {
		return nil, err
	}
	s.holds.mu.RLock()
	defer s.holds.mu.RUnlock()
	out := make(map[string]string, len(s.holds.byTen))
	for t, r := range s.holds.byTen {
		out[t] = r
	}
	return out, nil
}

// ensureOpenIndex builds the open-invoice index once for a database written before it existed.
func (s *Service) ensureOpenIndex() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, done, err := get(s.db, []byte(pMeta+"open_index"))
	if err != nil || done {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := scan(s.db, []byte(pInv), func(_, v []byte) error {
		var inv Invoice
		if err := jsonUnmarshal(v, &inv); err != nil {
			return err
		}
		return markOpen(b, &inv)
	}); err != nil {
		return err
	}
	if err := b.Set([]byte(pMeta+"open_index"), nil, nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// Overdue lists the finalized invoices that still owe something and were due before now, in
// number order, with their collection record.
func (s *Service) Overdue(ctx context.Context, now time.Time) ([]*Invoice, error) {
	if err := s.ensureOpenIndex(); err != nil {
		return nil, fmt.Errorf("open invoice index: %w", err)
	}
	var nums []string
	if err := scan(s.db, []byte(pOpen), func(k, v []byte) error {
		if len(v) == 8 && time.Unix(0, int64(binary.BigEndian.Uint64(v))).Before(now) {
			nums = append(nums, string(k[len(pOpen):]))
		}
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]*Invoice, 0, len(nums))
	for _, n := range nums {
		inv, err := s.Get(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	return out, nil
}

// DunningOf reads an invoice's dunning record (nil when no step was taken).
func (s *Service) DunningOf(_ context.Context, number string) (*Dunning, error) {
	var d Dunning
	found, err := getJSON(s.db, []byte(pDun+number), &d)
	if err != nil || !found {
		return nil, err
	}
	return &d, nil
}

// RecordDunningStep records a step taken on an overdue invoice, synced, and puts the tenant on
// hold when hold is set. It refuses (ErrConflict) when the invoice was settled in the meantime.
func (s *Service) RecordDunningStep(_ context.Context, d *Dunning, e DunningEntry, hold bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv, err := s.getStored(d.Invoice)
	if err != nil {
		return err
	}
	if inv.Status != Finalized || inv.AmountRemaining <= 0 {
		return fmt.Errorf("dunning %s: %w: the invoice is %s", d.Invoice, ErrConflict, inv.Status)
	}
	d.Step = e.Step
	d.History = append(d.History, e)
	b := s.db.NewBatch()
	defer b.Close()
	if hold {
		d.Held = true
		reason := fmt.Sprintf("invoice %s is overdue since %s (dunning step %d of %d)", inv.Number, inv.DueAt.UTC().Format(time.DateOnly), e.Step, d.Steps)
		if err := b.Set(key(pHold, inv.Tenant, inv.Number), []byte(reason), nil); err != nil {
			return err
		}
	}
	if err := putJSON(b, []byte(pDun+d.Invoice), d); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("dunning %s: %w", d.Invoice, err)
	}
	if hold {
		s.invalidateHolds()
	}
	return nil
}

// RecordProviderFailure records a failed payment the provider reported on an invoice it
// collects, idempotently on the provider's event id. It reports whether the event was seen.
func (s *Service) RecordProviderFailure(_ context.Context, provider, eventID, number, reason string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	marker := key(pHook, provider, eventID)
	_, seen, err := get(s.db, marker)
	if err != nil || seen {
		return seen, err
	}
	var c Collection
	found, err := getJSON(s.db, []byte(pColl+number), &c)
	if err != nil {
		return false, err
	}
	if !found {
		return false, fmt.Errorf("payment failure on %s: %w: not collected through %s", number, ErrNotFound, provider)
	}
	c.PaymentFailures++
	c.LastError = reason
	c.UpdatedAt = s.now().UTC()
	b := s.db.NewBatch()
	defer b.Close()
	if err := putJSON(b, []byte(pColl+number), &c); err != nil {
		return false, err
	}
	if err := b.Set(marker, nil, nil); err != nil {
		return false, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return false, fmt.Errorf("payment failure on %s: %w", number, err)
	}
	return false, nil
}

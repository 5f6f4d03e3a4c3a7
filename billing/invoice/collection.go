package invoice

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Collection states of an invoice sent to a payment provider.
const (
	CollectQueued  = "queued"  // finalized, waiting to be sent
	CollectStarted = "started" // an attempt began; the provider may hold objects we have not recorded
	CollectCreated = "created" // the provider's invoice exists and its id is recorded
	CollectSent    = "sent"    // finalized and sent (or charged) at the provider
	CollectSkipped = "skipped" // settled or voided here before it was sent
	CollectClosed  = "closed"  // settled or voided here after it was sent: closed at the provider too
)

// Collection is how one finalized invoice is collected through a payment provider. It is kept
// beside the invoice (b/coll/<number>), not inside it: the invoice is the source of truth for
// what is owed and its payment state; this record holds the provider's ids and progress.
type Collection struct {
	Provider string `json:"provider"`
	Status   string `json:"status"`
	// Customer and Invoice are the provider's ids (cus_..., in_...).
	Customer string `json:"customer,omitempty"`
	Invoice  string `json:"invoice,omitempty"`
	// ProviderNumber and HostedURL are what the provider shows the customer.
	ProviderNumber string     `json:"provider_number,omitempty"`
	HostedURL      string     `json:"hosted_url,omitempty"`
	Attempts       int        `json:"attempts"` // send attempts started
	LastError      string     `json:"last_error,omitempty"`
	SentAt         *time.Time `json:"sent_at,omitempty"`
	UpdatedAt      time.Time  `json:"updated_at"`
	// Dunning: failed payments the provider reported, the schedule step reached (reminders
	// sent), and whether the plan's consequence applies now.
	PaymentFailures int    `json:"payment_failures,omitempty"`
	DunningStep     int    `json:"dunning_step,omitempty"`
	Consequence     string `json:"consequence,omitempty"`
}

// Collection reads an invoice's collection record (nil when it is collected manually).
func (s *Service) Collection(_ context.Context, number string) (*Collection, error) {
	var c Collection
	found, err := getJSON(s.db, []byte(pColl+number), &c)
	if err != nil || !found {
		return nil, err
	}
	return &c, nil
}

// PutCollection stores an invoice's collection record, synced. done takes the invoice off the
// collection queue in the same batch, so a crash leaves it either queued or recorded as sent.
func (s *Service) PutCollection(_ context.Context, number string, c *Collection, done bool) error {
	c.UpdatedAt = s.now().UTC()
	b := s.db.NewBatch()
	defer b.Close()
	if err := putJSON(b, []byte(pColl+number), c); err != nil {
		return err
	}
	if c.Invoice != "" { // webhooks about the provider's invoice find ours through this
		if err := b.Set(key(pPRef, c.Provider, c.Invoice), []byte(number), nil); err != nil {
			return err
		}
	}
	if done {
		if err := b.Delete([]byte(pCollQ+number), nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("record collection of %s: %w", number, err)
	}
	return nil
}

// CollectionQueue lists the invoices waiting to be sent to their provider, in number order.
func (s *Service) CollectionQueue(_ context.Context) ([]string, error) {
	var nums []string
	err := scan(s.db, []byte(pCollQ), func(k, _ []byte) error {
		nums = append(nums, string(k[len(pCollQ):]))
		return nil
	})
	return nums, err
}

// ProviderCustomer is the provider's customer id for a tenant, and the fingerprint of the
// details last sent to it ("" when none is recorded).
func (s *Service) ProviderCustomer(_ context.Context, provider, tenant string) (id, fingerprint string, err error) {
	var rec struct{ ID, Fingerprint string }
	found, err := getJSON(s.db, key(pCust, provider, tenant), &rec)
	if err != nil || !found {
		return "", "", err
	}
	return rec.ID, rec.Fingerprint, nil
}

// SetProviderCustomer records the provider's customer id for a tenant, synced.
func (s *Service) SetProviderCustomer(_ context.Context, provider, tenant, id, fingerprint string) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := putJSON(b, key(pCust, provider, tenant), struct{ ID, Fingerprint string }{id, fingerprint}); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("record %s customer of %s: %w", provider, tenant, err)
	}
	return nil
}

// queueCollection puts a just-finalized invoice on the collection queue, in its finalization
// batch: an invoice is never finalized without being queued, nor queued without being final.
func queueCollection(b *pebble.Batch, inv *Invoice, provider string, now time.Time) (*Collection, error) {
	c := &Collection{Provider: provider, Status: CollectQueued, UpdatedAt: now.UTC()}
	if err := putJSON(b, []byte(pColl+inv.Number), c); err != nil {
		return nil, err
	}
	return c, b.Set([]byte(pCollQ+inv.Number), nil, nil)
}

package billing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/usagemeter/usagemeter/billing/pricing"
	"github.com/usagemeter/usagemeter/billing/stripecollect"
)

// ErrNoCollector is returned when invoices wait for Stripe but no Stripe API key is set.
var ErrNoCollector = errors.New("stripe collection is not configured")

// collector builds the Stripe collector from the catalogue in force (settings and the API key
// are read on every call, so a configuration reload or a rotated key needs no restart).
type collector struct {
	mu   sync.Mutex // one collection run at a time
	http *http.Client
}

// Collect sends the invoices queued for Stripe. It answers ErrNoCollector when some are queued
// and no API key is set.
func (s *Service) Collect(ctx context.Context) (stripecollect.Result, error) {
	s.coll.mu.Lock()
	defer s.coll.mu.Unlock()
	q, err := s.CollectionQueue(ctx)
	if err != nil || len(q) == 0 {
		return stripecollect.Result{}, err
	}
	cat := s.Catalogue()
	c, err := stripecollect.New(stripecollect.Options{Store: s.Service, APIKey: cat.Stripe.APIKey(), Settings: cat.Stripe,
		HTTPClient: s.coll.http, Logger: s.log})
	if err != nil {
		return stripecollect.Result{Queued: len(q)}, fmt.Errorf("%w: %v", ErrNoCollector, err)
	}
	return c.Collect(ctx)
}

// collectsThroughStripe reports whether any tenant's invoices go to Stripe.
func collectsThroughStripe(cat pricing.Catalogue) bool {
	if cat.DefaultCollection == pricing.CollectStripe {
		return true
	}
	for _, m := range cat.Collections {
		if m == pricing.CollectStripe {
			return true
		}
	}
	return false
}

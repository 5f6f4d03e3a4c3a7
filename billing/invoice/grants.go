package invoice

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/rating"
)

// Grant kinds.
const (
	GrantPromotional = "promotional" // given away: a launch offer, a goodwill gesture
	GrantPurchased   = "purchased"   // bought: a prepaid bundle
)

// Grant is credit given to a tenant: drawn down by its invoices at finalization, in priority
// order (lower first), then the one expiring first, then the oldest; usable from Effective
// until Expires (nil: never). What is left at expiry is recorded as expired, never used.
type Grant struct {
	ID        string       `json:"id"` // GR-00000001
	Tenant    string       `json:"tenant"`
	Kind      string       `json:"kind"` // promotional or purchased
	Reason    string       `json:"reason,omitempty"`
	Amount    money.Amount `json:"amount"`
	Currency  string       `json:"currency"`
	Priority  int          `json:"priority"`
	Effective time.Time    `json:"effective"`
	Expires   *time.Time   `json:"expires,omitempty"`
	Used      money.Amount `json:"used"`
	Expired   money.Amount `json:"expired"` // left at expiry, recorded by ExpireGrants
	CreatedAt time.Time    `json:"created_at"`
	// Uses lists the invoices that drew on the grant.
	Uses []GrantUse `json:"uses,omitempty"`
}

// GrantUse is an amount of a grant applied to an invoice.
type GrantUse struct {
	Grant   string       `json:"grant"`
	Invoice string       `json:"invoice,omitempty"`
	Amount  money.Amount `json:"amount"`
}

// Remaining is what the grant still holds (0 once expired).
func (g *Grant) Remaining() money.Amount { return g.Amount - g.Used - g.Expired }

// usableAt reports whether the grant may be drawn on at t.
func (g *Grant) usableAt(t time.Time) bool {
	return !t.Before(g.Effective) && (g.Expires == nil || t.Before(*g.Expires)) && g.Remaining() > 0
}

// GrantInput is a grant to create.
type GrantInput struct {
	Tenant    string       `json:"tenant"`
	Kind      string       `json:"kind"`
	Reason    string       `json:"reason"`
	Amount    money.Amount `json:"amount"`
	Currency  string       `json:"currency"`
	Priority  int          `json:"priority"`
	Effective time.Time    `json:"effective"`
	Expires   *time.Time   `json:"expires"`
}

// GrantBalance is a tenant's grants and what they hold now.
type GrantBalance struct {
	Tenant    string       `json:"tenant"`
	Currency  string       `json:"currency"`
	Available money.Amount `json:"available"` // usable now
	Pending   money.Amount `json:"pending"`   // effective later
	Granted   money.Amount `json:"granted"`
	Used      money.Amount `json:"used"`
	Expired   money.Amount `json:"expired"`
	Grants    []*Grant     `json:"grants"`
}

// CreateGrant records a credit grant.
func (s *Service) CreateGrant(_ context.Context, in GrantInput) (*Grant, error) {
	cat := s.Catalogue()
	switch {
	case in.Tenant == "":
		return nil, fmt.Errorf("credit grant: %w: a tenant is required", ErrInvalid)
	case in.Amount <= 0:
		return nil, fmt.Errorf("credit grant: %w: amount must be positive", ErrInvalid)
	case in.Kind != GrantPromotional && in.Kind != GrantPurchased:
		return nil, fmt.Errorf("credit grant: %w: kind must be promotional or purchased, got %q", ErrInvalid, in.Kind)
	case in.Currency != "" && in.Currency != cat.CurrencyOf(in.Tenant).Code:
		return nil, fmt.Errorf("credit grant: %w: currency %s, the tenant is billed in %s", ErrInvalid, in.Currency, cat.CurrencyOf(in.Tenant).Code)
	}
	now := s.now().UTC()
	if in.Effective.IsZero() {
		in.Effective = now
	}
	if in.Expires != nil && !in.Expires.After(in.Effective) {
		return nil, fmt.Errorf("credit grant: %w: expires must be after effective", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	last, err := seq{"grant"}.last(s.db)
	if err != nil {
		return nil, err
	}
	g := &Grant{ID: fmt.Sprintf("GR-%08d", last+1), Tenant: in.Tenant, Kind: in.Kind, Reason: in.Reason, Amount: in.Amount,
		Currency: cat.CurrencyOf(in.Tenant).Code, Priority: in.Priority, Effective: in.Effective.UTC(), CreatedAt: now}
	if in.Expires != nil {
		e := in.Expires.UTC()
		g.Expires = &e
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := putJSON(b, key(pGrant, g.Tenant, g.ID), g); err != nil {
		return nil, err
	}
	if err := (seq{"grant"}).set(b, last+1); err != nil {
		return nil, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, fmt.Errorf("credit grant: %w", err)
	}
	s.log.Info("credit grant", "id", g.ID, "tenant", g.Tenant, "kind", g.Kind, "amount", int64(g.Amount), "priority", g.Priority)
	return g, nil
}

// grantsOf reads a tenant's grants ("" for every tenant), keyed by tenant.
func (s *Service) grantsOf(tenant string) (map[string][]*Grant, error) {
	prefix := []byte(pGrant)
	if tenant != "" {
		prefix = append(key(pGrant, tenant), 0)
	}
	out := map[string][]*Grant{}
	err := scan(s.db, prefix, func(_, v []byte) error {
		var g Grant
		if err := jsonUnmarshal(v, &g); err != nil {
			return err
		}
		out[g.Tenant] = append(out[g.Tenant], &g)
		return nil
	})
	return out, err
}

// Grants is a tenant's grants and their balance at the service's now.
func (s *Service) Grants(_ context.Context, tenant string) (GrantBalance, error) {
	all, err := s.grantsOf(tenant)
	if err != nil {
		return GrantBalance{}, err
	}
	now := s.now()
	cat := s.Catalogue()
	bal := GrantBalance{Tenant: tenant, Currency: cat.CurrencyOf(tenant).Code, Grants: all[tenant]}
	if bal.Grants == nil {
		bal.Grants = []*Grant{}
	}
	for _, g := range bal.Grants {
		bal.Granted += g.Amount
		bal.Used += g.Used
		bal.Expired += g.Expired
		switch {
		case g.usableAt(now):
			bal.Available += g.Remaining()
		case now.Before(g.Effective):
			bal.Pending += g.Remaining()
		}
	}
	return bal, nil
}

// drawOrder sorts grants as they are drawn down: priority, then expiry (none last), then age.
func drawOrder(gs []*Grant) {
	sort.SliceStable(gs, func(i, j int) bool {
		a, b := gs[i], gs[j]
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		switch {
		case a.Expires != nil && b.Expires != nil && !a.Expires.Equal(*b.Expires):
			return a.Expires.Before(*b.Expires)
		case (a.Expires == nil) != (b.Expires == nil):
			return a.Expires != nil
		}
		return a.ID < b.ID
	})
}

// drawGrants applies a tenant's usable grants to up to amount, in draw order, and writes the
// changed grants into the batch. It returns the uses.
func drawGrants(b *pebble.Batch, gs []*Grant, number string, amount money.Amount, at time.Time) ([]GrantUse, error) {
	drawOrder(gs)
	var uses []GrantUse
	for _, g := range gs {
		if amount <= 0 {
			break
		}
		if !g.usableAt(at) {
			continue
		}
		take := min(amount, g.Remaining())
		g.Used += take
		amount -= take
		u := GrantUse{Grant: g.ID, Invoice: number, Amount: take}
		g.Uses = append(g.Uses, u)
		uses = append(uses, u)
		if err := putJSON(b, key(pGrant, g.Tenant, g.ID), g); err != nil {
			return nil, err
		}
	}
	return uses, nil
}

// returnGrants gives back what a voided invoice drew on grants (an expired grant records the
// returned amount as expired).
func (s *Service) returnGrants(b *pebble.Batch, inv *Invoice) error {
	if len(inv.Grants) == 0 {
		return nil
	}
	all, err := s.grantsOf(inv.Tenant)
	if err != nil {
		return err
	}
	byID := map[string]*Grant{}
	for _, g := range all[inv.Tenant] {
		byID[g.ID] = g
	}
	now := s.now()
	for _, u := range inv.Grants {
		g := byID[u.Grant]
		if g == nil {
			return fmt.Errorf("void %s: grant %s is missing", inv.Number, u.Grant)
		}
		g.Used -= u.Amount
		g.Uses = append(g.Uses, GrantUse{Grant: g.ID, Invoice: inv.Number, Amount: -u.Amount})
		if g.Expires != nil && !now.Before(*g.Expires) {
			g.Expired += u.Amount
		}
		if err := putJSON(b, key(pGrant, g.Tenant, g.ID), g); err != nil {
			return err
		}
	}
	return nil
}

// ExpireGrants records, for every grant past its expiry, what was left in it as expired. It
// returns the total expired by this call.
func (s *Service) ExpireGrants(_ context.Context) (money.Amount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.grantsOf("")
	if err != nil {
		return 0, err
	}
	now := s.now()
	b := s.db.NewBatch()
	defer b.Close()
	var total money.Amount
	for _, gs := range all {
		for _, g := range gs {
			if g.Expires == nil || now.Before(*g.Expires) || g.Remaining() <= 0 {
				continue
			}
			left := g.Remaining()
			g.Expired += left
			total += left
			if err := putJSON(b, key(pGrant, g.Tenant, g.ID), g); err != nil {
				return 0, err
			}
			s.log.Info("credit grant expired", "id", g.ID, "tenant", g.Tenant, "expired", int64(left))
		}
	}
	if total == 0 {
		return 0, nil
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("expire credit grants: %w", err)
	}
	return total, nil
}

// GrantTotals sums the grants of a tenant ("" for all) for a billing period: granted is the
// amount of grants effective in it, used what the period's invoices drew, expired what was left
// in grants expiring in it (as recorded by ExpireGrants).
//
// Only grants in currency count: sums across currencies mean nothing.
func (s *Service) GrantTotals(_ context.Context, tenant string, p rating.Period, currency string) (GrantBalance, error) {
	from, to := p.Start(), p.End()
	all, err := s.grantsOf(tenant)
	if err != nil {
		return GrantBalance{}, err
	}
	in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	used := map[string]money.Amount{} // invoice number → grant amounts drawn
	var out GrantBalance
	for _, gs := range all {
		for _, g := range gs {
			if g.Currency != currency {
				continue
			}
			if in(g.Effective) {
				out.Granted += g.Amount
			}
			if g.Expires != nil && in(*g.Expires) {
				out.Expired += g.Expired
			}
			for _, u := range g.Uses {
				used[u.Invoice] += u.Amount
			}
		}
	}
	for number, amount := range used {
		inv, err := s.getStored(number)
		if err != nil {
			return GrantBalance{}, err
		}
		if inv.Period == p && inv.Status != Void {
			out.Used += amount
		}
	}
	return out, nil
}

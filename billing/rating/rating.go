// Package rating turns exact usage into invoice lines: for one tenant and one month, every
// charge of the plan in force becomes a line with its quantity, its price or tier breakdown and
// its amount. A plan change in the month splits the month into segments, each rated on its own
// plan and prorated by the seconds of the month it covers.
//
// Proration rule (documented in docs/billing.md): a segment [from, to) of a month of S seconds
// has the fraction f = (to-from)/S, kept exact. The base fee, the minimum commitment and flat
// fees are multiplied by f. For flow meters, the usage inside the segment is rated with the
// included allowance floor(included*f); tier bounds are not prorated. For stock meters (levels,
// such as storage), the level at the segment's end is rated with the full allowance and the
// resulting amount is multiplied by f, so that a level held all month is charged once.
// Each line's exact amount is rounded once with money.Round.
package rating

import (
	"context"
	"fmt"
	"math/big"
	"time"

	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/pricing"
)

// Usage is what rating needs from the ledger.
type Usage interface {
	// Total is the exact aggregate of a meter for one tenant over [from, to): for flow meters the
	// aggregate inside the window, for stock meters the level at `to`.
	Total(ctx context.Context, tenant, meter string, from, to time.Time) (int64, error)
	Tenants(ctx context.Context, from, to time.Time) ([]string, error) // tenants with any usage
}

// Line kinds.
const (
	KindBase       = "base"
	KindUsage      = "usage"
	KindMinimum    = "minimum"
	KindAdjustment = "adjustment"
)

// Line is one invoice line.
type Line struct {
	// Key identifies the line within the period it bills; re-rating a period gives the same keys,
	// which is how late usage is found (see package invoice).
	Key         string    `json:"key"`
	Period      Period    `json:"period"` // the period billed (earlier than the invoice's for adjustments)
	Kind        string    `json:"kind"`
	Description string    `json:"description"`
	Plan        string    `json:"plan,omitempty"`
	Meter       string    `json:"meter,omitempty"`
	Model       string    `json:"model,omitempty"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	Quantity    int64     `json:"quantity"`
	Included    int64     `json:"included,omitempty"`
	Billable    int64     `json:"billable,omitempty"`
	// Proration is the segment's share of the month, "seconds/seconds"; empty for a whole month.
	Proration string              `json:"proration,omitempty"`
	UnitPrice *money.Price        `json:"unit_price,omitempty"` // per_unit: minor units, exact
	Tiers     []pricing.TierUsage `json:"tiers,omitempty"`
	Exact     string              `json:"exact_amount"` // minor units before rounding
	Amount    money.Amount        `json:"amount"`       // minor units
}

// Segment is a stretch of a period spent on one plan.
type Segment struct {
	Plan     string
	From, To time.Time
}

// Rater rates periods. It is safe for concurrent use if Usage is.
type Rater struct {
	Catalogue *pricing.Catalogue
	Usage     Usage
	// Stock reports whether a meter is a level (stock) rather than a flow; nil means every meter
	// is a flow. The lead wires it from the meter definitions.
	Stock func(meter string) bool
	// Limits returns a plan's quota limits by meter (the configuration's plans[].limits); a plan
	// whose limits the tenant's usage exceeds is never suggested. Nil means no limits.
	Limits func(plan string) map[string]int64
}

// Rate rates a tenant's period over the given segments, which must tile the period in order.
// The lines come in a stable order: per segment the base fee then the charges in catalogue
// order, then the minimum commitment top-up if any.
func (r *Rater) Rate(ctx context.Context, tenant string, p Period, segs []Segment) ([]Line, error) {
	return r.rate(ctx, tenant, p, segs, newMemo(r.Usage), true)
}

// rate builds the lines; without detail only keys and amounts are filled (plan comparisons).
func (r *Rater) rate(ctx context.Context, tenant string, p Period, segs []Segment, m *memo, detail bool) ([]Line, error) {
	if err := checkSegments(p, segs); err != nil {
		return nil, err
	}
	monthSecs := int64(p.End().Sub(p.Start()) / time.Second)
	var lines []Line
	minimum := new(big.Rat)
	var subtotal money.Amount
	for si, s := range segs {
		plan, ok := r.Catalogue.Plan(s.Plan)
		if !ok {
			return nil, fmt.Errorf("rate %s %s: plan %q has no price in the catalogue", tenant, p, s.Plan)
		}
		secs := int64(s.To.Sub(s.From) / time.Second)
		frac := big.NewRat(secs, monthSecs)
		prorated := ""
		if secs != monthSecs {
			prorated = fmt.Sprintf("%d/%d", secs, monthSecs)
		}
		minimum.Add(minimum, new(big.Rat).Mul(frac, big.NewRat(int64(plan.Minimum), 1)))
		if plan.BaseFee != 0 {
			exact := new(big.Rat).Mul(frac, big.NewRat(int64(plan.BaseFee), 1))
			l := Line{Kind: KindBase, Amount: money.Round(exact)}
			if detail {
				l = Line{Key: fmt.Sprintf("base/%d/%s", si, plan.Name), Period: p, Kind: KindBase, Plan: plan.Name,
					Description: "Base fee, plan " + plan.Name, From: s.From, To: s.To, Quantity: 1, Proration: prorated,
					Exact: money.FormatRat(exact, 0), Amount: l.Amount}
			}
			lines = append(lines, l)
			subtotal += l.Amount
		}
		for ci := range plan.Charges {
			ch := &plan.Charges[ci]
			qty, err := m.total(ctx, tenant, ch.Meter, s.From, s.To)
			if err != nil {
				return nil, fmt.Errorf("rate %s %s: %w", tenant, p, err)
			}
			stock := r.Stock != nil && r.Stock(ch.Meter)
			included := ch.Included
			if !stock {
				included = new(big.Int).Quo(new(big.Int).Mul(big.NewInt(ch.Included), frac.Num()), frac.Denom()).Int64()
			}
			var res pricing.Result
			if detail {
				res = ch.Apply(qty, included)
			} else {
				res = pricing.Result{Exact: ch.Amount(qty, included)}
			}
			exact := res.Exact
			if stock || ch.Model == pricing.Flat {
				exact = new(big.Rat).Mul(exact, frac)
			}
			if !detail {
				a := money.Round(exact)
				lines = append(lines, Line{Kind: KindUsage, Amount: a})
				subtotal += a
				continue
			}
			desc := ch.Description
			if desc == "" {
				desc = ch.Meter
			}
			l := Line{Key: fmt.Sprintf("usage/%d/%s/%s", si, plan.Name, ch.Meter), Period: p, Kind: KindUsage,
				Description: desc, Plan: plan.Name, Meter: ch.Meter, Model: string(ch.Model), From: s.From, To: s.To,
				Quantity: qty, Included: included, Billable: res.Billable, Proration: prorated, Tiers: res.Tiers,
				Exact: money.FormatRat(exact, 0), Amount: money.Round(exact)}
			if ch.Model == pricing.PerUnit {
				up := ch.UnitPrice
				l.UnitPrice = &up
			}
			lines = append(lines, l)
			subtotal += l.Amount
		}
	}
	if minAmt := money.Round(minimum); minAmt > subtotal {
		top := minAmt - subtotal
		lines = append(lines, Line{Key: "minimum", Period: p, Kind: KindMinimum,
			Description: "Minimum commitment top-up to " + minAmt.Format(r.Catalogue.Currency) + " " + r.Catalogue.Currency.Code,
			From:        p.Start(), To: p.End(), Quantity: 1, Exact: fmt.Sprint(int64(top)), Amount: top})
	}
	return lines, nil
}

// Sum adds line amounts.
func Sum(lines []Line) money.Amount {
	var s money.Amount
	for _, l := range lines {
		s += l.Amount
	}
	return s
}

// Suggestion says that another plan would have cost the tenant less for the same usage.
type Suggestion struct {
	Period      Period       `json:"period"`
	CurrentPlan string       `json:"current_plan"`
	CurrentCost money.Amount `json:"current_cost"`
	Plan        string       `json:"plan"`
	Cost        money.Amount `json:"cost"`
	Saving      money.Amount `json:"saving"`
	// Upgrade is set when the suggested plan's base fee is above the current plan's: a larger
	// plan whose included usage makes it cheaper. Only upgrades are shown to customers (the
	// invoice PDF); a cheaper, smaller plan is for account managers (JSON).
	Upgrade bool `json:"upgrade"`
}

// Suggest rates the whole period under every plan of the catalogue whose limits the usage fits
// and returns the cheapest when it is cheaper than `current`; nil when `current` is already the
// cheapest. (A free plan costs nothing, but its hard limits usually rule it out.)
func (r *Rater) Suggest(ctx context.Context, tenant string, p Period, current string) (*Suggestion, error) {
	return r.suggest(ctx, tenant, p, current, newMemo(r.Usage))
}

func (r *Rater) suggest(ctx context.Context, tenant string, p Period, current string, m *memo) (*Suggestion, error) {
	whole := func(plan string) (money.Amount, error) {
		lines, err := r.rate(ctx, tenant, p, []Segment{{Plan: plan, From: p.Start(), To: p.End()}}, m, false)
		return Sum(lines), err
	}
	cur, err := whole(current)
	if err != nil {
		return nil, err
	}
	best := &Suggestion{Period: p, CurrentPlan: current, CurrentCost: cur, Plan: current, Cost: cur}
	for _, pl := range r.Catalogue.Plans {
		if pl.Name == current {
			continue
		}
		fits, err := r.fits(ctx, tenant, p, pl.Name, m)
		if err != nil {
			return nil, err
		}
		if !fits {
			continue
		}
		c, err := whole(pl.Name)
		if err != nil {
			return nil, err
		}
		if c < best.Cost {
			best.Plan, best.Cost = pl.Name, c
		}
	}
	if best.Plan == current {
		return nil, nil
	}
	best.Saving = cur - best.Cost
	if to, ok := r.Catalogue.Plan(best.Plan); ok {
		if from, ok := r.Catalogue.Plan(current); ok {
			best.Upgrade = to.BaseFee > from.BaseFee
		}
	}
	return best, nil
}

// fits reports whether the tenant's usage in p stays within the plan's limits.
func (r *Rater) fits(ctx context.Context, tenant string, p Period, plan string, m *memo) (bool, error) {
	if r.Limits == nil {
		return true, nil
	}
	for meter, limit := range r.Limits(plan) {
		used, err := m.total(ctx, tenant, meter, p.Start(), p.End())
		if err != nil {
			return false, err
		}
		if used > limit {
			return false, nil
		}
	}
	return true, nil
}

// RateAndSuggest rates the period and computes the suggestion against the plan in force at the
// period's end, sharing one set of ledger reads between the two.
func (r *Rater) RateAndSuggest(ctx context.Context, tenant string, p Period, segs []Segment) ([]Line, *Suggestion, error) {
	m := newMemo(r.Usage)
	lines, err := r.rate(ctx, tenant, p, segs, m, true)
	if err != nil {
		return nil, nil, err
	}
	s, err := r.suggest(ctx, tenant, p, segs[len(segs)-1].Plan, m)
	return lines, s, err
}

func checkSegments(p Period, segs []Segment) error {
	if len(segs) == 0 {
		return fmt.Errorf("rate %s: no plan segments", p)
	}
	at := p.Start()
	for _, s := range segs {
		if !s.From.Equal(at) || !s.To.After(s.From) {
			return fmt.Errorf("rate %s: segments must tile the period in order (got %s..%s at %s)", p, s.From, s.To, at)
		}
		at = s.To
	}
	if !at.Equal(p.End()) {
		return fmt.Errorf("rate %s: segments end at %s, not at the period's end", p, at)
	}
	return nil
}

// memo remembers ledger totals for one rating run, so that a meter charged by several plans
// (suggestions) is read once.
type memo struct {
	u Usage
	m map[memoKey]int64
}

type memoKey struct {
	meter    string
	from, to int64
}

func newMemo(u Usage) *memo { return &memo{u: u, m: map[memoKey]int64{}} }

func (m *memo) total(ctx context.Context, tenant, meter string, from, to time.Time) (int64, error) {
	k := memoKey{meter, from.UnixNano(), to.UnixNano()}
	if v, ok := m.m[k]; ok {
		return v, nil
	}
	v, err := m.u.Total(ctx, tenant, meter, from, to)
	if err != nil {
		return 0, fmt.Errorf("usage of %s for %s: %w", meter, tenant, err)
	}
	m.m[k] = v
	return v, nil
}

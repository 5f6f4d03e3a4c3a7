package stats

import (
	"context"
	"math"
	"sort"
	"time"

	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// Change compares a window with the one before it. For flow meters the values are the usage
// inside each window; for stock meters the level at each window's end; for unique_count meters
// the distinct identities in each window.
type Change struct {
	From         time.Time `json:"from"`
	To           time.Time `json:"to"`
	PreviousFrom time.Time `json:"previous_from"`
	Current      int64     `json:"current"`
	Previous     int64     `json:"previous"`
	Delta        int64     `json:"delta"`
	// Percent is 100*(current-previous)/previous; absent when previous is zero.
	Percent *float64 `json:"percent,omitempty"`
}

// Growth is a tenant's week-over-week and month-over-month change of one meter.
type Growth struct {
	Tenant string `json:"tenant"`
	Meter  string `json:"meter"`
	Unit   string `json:"unit"`
	// WeekOverWeek compares the 7 days before at with the 7 days before those.
	WeekOverWeek Change `json:"week_over_week"`
	// MonthOverMonth compares the last complete calendar month before at with the one before.
	MonthOverMonth Change `json:"month_over_month"`
}

// Trend computes a tenant's growth of one meter at instant at (truncated to the hour).
func Trend(ctx context.Context, st *ledger.Store, tenant, meterName string, at time.Time) (Growth, error) {
	d, err := meterDef(st, meterName)
	if err != nil {
		return Growth{}, err
	}
	at = HourFloor(at)
	g := Growth{Tenant: tenant, Meter: meterName, Unit: d.Unit}
	if g.WeekOverWeek, err = change(ctx, st, tenant, meterName, at.Add(-14*Day), at.Add(-7*Day), at); err != nil {
		return g, err
	}
	m := MonthStart(at)
	g.MonthOverMonth, err = change(ctx, st, tenant, meterName, m.AddDate(0, -2, 0), m.AddDate(0, -1, 0), m)
	return g, err
}

func change(ctx context.Context, st *ledger.Store, tenant, meterName string, prevFrom, from, to time.Time) (Change, error) {
	c := Change{From: from, To: to, PreviousFrom: prevFrom}
	var err error
	if c.Current, err = Total(ctx, st, tenant, meterName, from, to); err != nil {
		return c, err
	}
	if c.Previous, err = Total(ctx, st, tenant, meterName, prevFrom, from); err != nil {
		return c, err
	}
	c.Delta = c.Current - c.Previous
	c.Percent = ratio(c.Current, c.Previous)
	return c, nil
}

// Trends computes the growth of every tenant for each meter, ordered by the size of the
// week-over-week change (largest movers first, ties by tenant then meter).
func Trends(ctx context.Context, st *ledger.Store, tenants, meters []string, at time.Time) ([]Growth, error) {
	var out []Growth
	for _, t := range tenants {
		for _, m := range meters {
			g, err := Trend(ctx, st, t, m, at)
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
	}
	SortMovers(out)
	return out, nil
}

// SortMovers orders growths by the magnitude of their week-over-week delta relative to the
// previous week (a tenant appearing from nothing ranks by its absolute delta after the others).
func SortMovers(gs []Growth) {
	key := func(g Growth) (float64, float64) {
		if g.WeekOverWeek.Percent != nil {
			return math.Abs(*g.WeekOverWeek.Percent), 0
		}
		return -1, math.Abs(float64(g.WeekOverWeek.Delta))
	}
	sort.SliceStable(gs, func(i, j int) bool {
		pi, ai := key(gs[i])
		pj, aj := key(gs[j])
		if pi != pj {
			return pi > pj
		}
		if ai != aj {
			return ai > aj
		}
		if gs[i].Tenant != gs[j].Tenant {
			return gs[i].Tenant < gs[j].Tenant
		}
		return gs[i].Meter < gs[j].Meter
	})
}

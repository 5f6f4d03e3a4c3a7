// Package stats computes the analytics served under /v1/analytics: growth trends, seasonality
// profiles, forecasts with their backtest error, feature adoption and retention, user
// engagement and ingestion patterns. Every figure is derived from the ledger's exact rollups
// (Store.Usage and Store.Total), never from Prometheus samples, so it matches /v1/usage.
package stats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Day is 24 hours; all analytics are in UTC.
const Day = 24 * time.Hour

// ErrBadRequest marks errors in the caller's parameters.
var ErrBadRequest = errors.New("bad request")

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// meterDef returns a meter's definition or a bad-request error.
func meterDef(st *ledger.Store, name string) (*meter.Def, error) {
	d, ok := st.Meter(name)
	if !ok {
		return nil, badf("unknown meter %q", name)
	}
	return d, nil
}

// HourlySeries returns one value per hour of [from, to) (zero where nothing happened).
func HourlySeries(ctx context.Context, st *ledger.Store, tenant, meterName string, from, to time.Time) ([]float64, error) {
	return series(ctx, st, tenant, meterName, from, to, ledger.WindowHour, time.Hour)
}

// DailySeries returns one value per UTC day of [from, to); from and to must be midnights.
func DailySeries(ctx context.Context, st *ledger.Store, tenant, meterName string, from, to time.Time) ([]float64, error) {
	return series(ctx, st, tenant, meterName, from, to, ledger.WindowDay, Day)
}

func series(ctx context.Context, st *ledger.Store, tenant, meterName string, from, to time.Time, window string, step time.Duration) ([]float64, error) {
	n := int(to.Sub(from) / step)
	if n <= 0 {
		return nil, badf("empty range %s..%s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	rows, err := st.UngroupedUsage(ctx, ledger.Query{Meter: meterName, Tenant: tenant, From: from, To: to, Window: window})
	if err != nil {
		return nil, err
	}
	out := make([]float64, n)
	for _, r := range rows {
		i := int(r.WindowStart.Sub(from) / step)
		if i >= 0 && i < n {
			out[i] += float64(r.Value)
		}
	}
	return out, nil
}

// Total is a meter's exact aggregate for a tenant over [from, to), as ledger.Store.Total: whole
// calendar months of flow meters from the month totals, anything else from the rollups without
// groups (ledger.Store.UngroupedUsage, cheaper than a grouped Usage).
func Total(ctx context.Context, st *ledger.Store, tenant, meterName string, from, to time.Time) (int64, error) {
	if from.Equal(MonthStart(from)) && to.Equal(from.AddDate(0, 1, 0)) {
		return st.Total(ctx, tenant, meterName, from, to)
	}
	rows, err := st.UngroupedUsage(ctx, ledger.Query{Meter: meterName, Tenant: tenant, From: from, To: to})
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, r := range rows {
		sum += r.Value
	}
	return sum, nil
}

// HourFloor is t truncated to the hour, in UTC: the ledger answers on hour boundaries.
func HourFloor(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// DayFloor is t truncated to its UTC midnight.
func DayFloor(t time.Time) time.Time { return t.UTC().Truncate(Day) }

// MonthStart is the first instant of t's calendar month (UTC).
func MonthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// ratio returns 100*(cur-prev)/prev, or nil when prev is zero (growth from nothing is not a
// percentage).
func ratio(cur, prev int64) *float64 {
	if prev == 0 {
		return nil
	}
	r := 100 * float64(cur-prev) / float64(prev)
	return &r
}

package stats

import (
	"context"
	"errors"
	"time"

	"github.com/usagemeter/usagemeter/analytics/forecast"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Seasons of a forecast.
const (
	SeasonDaily  = "daily"  // hourly points, a season of 24
	SeasonWeekly = "weekly" // daily points, a season of 7
)

// Point is one forecast value.
type Point struct {
	Time  time.Time `json:"time"`
	Value float64   `json:"value"`
}

// Forecast is a meter's prediction with the error its model made on the held-out tail.
type Forecast struct {
	Tenant     string              `json:"tenant"`
	Meter      string              `json:"meter"`
	Season     string              `json:"season"`
	Step       string              `json:"step"` // "1h" or "24h"
	History    int                 `json:"history_points"`
	Params     forecast.Parameters `json:"parameters"`
	Backtest   forecast.Errors     `json:"backtest"`
	Points     []Point             `json:"points"`
	Total      float64             `json:"forecast_total"` // the sum of Points
	HistoryEnd time.Time           `json:"history_end"`
}

// ForecastOptions select the forecast.
type ForecastOptions struct {
	Season  string // SeasonDaily (default) or SeasonWeekly
	History int    // points of history; default 28 days of hours, or 12 weeks of days
	Horizon int    // points to predict; default one season
	At      time.Time
}

// Predict fits additive Holt-Winters to the history ending at opts.At (truncated to the hour or
// the day), reports its backtest on the last season of that history (fitted without it), and
// forecasts the horizon from the model fitted on all of it. Forecasts of a flow never go below
// zero.
func Predict(ctx context.Context, st *ledger.Store, tenant, meterName string, o ForecastOptions) (Forecast, error) {
	d, err := meterDef(st, meterName)
	if err != nil {
		return Forecast{}, err
	}
	period, step := 24, time.Hour
	end := HourFloor(o.At)
	daily := false
	switch o.Season {
	case "", SeasonDaily:
		o.Season = SeasonDaily
		if o.History == 0 {
			o.History = 28 * 24
		}
	case SeasonWeekly:
		period, step, daily = 7, Day, true
		end = DayFloor(o.At)
		if o.History == 0 {
			o.History = 12 * 7
		}
	default:
		return Forecast{}, badf("season %q must be daily or weekly", o.Season)
	}
	if o.Horizon <= 0 {
		o.Horizon = period
	}
	if o.History < 3*period || o.History > 400*24 || o.Horizon > 10*period {
		return Forecast{}, badf("history must hold 3 to %d points (got %d) and the horizon at most %d (got %d)", 400*24, o.History, 10*period, o.Horizon)
	}
	from := end.Add(-time.Duration(o.History) * step)
	var y []float64
	if daily {
		y, err = DailySeries(ctx, st, tenant, meterName, from, end)
	} else {
		y, err = HourlySeries(ctx, st, tenant, meterName, from, end)
	}
	if err != nil {
		return Forecast{}, err
	}
	f := Forecast{Tenant: tenant, Meter: meterName, Season: o.Season, Step: step.String(), History: len(y), HistoryEnd: end}
	if f.Backtest, err = forecast.Backtest(y, period, period); err != nil {
		return f, badf("%v", err)
	}
	m, err := forecast.Fit(y, period)
	if err != nil {
		if errors.Is(err, forecast.ErrTooShort) {
			return f, badf("%v", err)
		}
		return f, err
	}
	f.Params = m.Params()
	for i, v := range m.Forecast(o.Horizon) {
		if d.Kind == meter.Flow && v < 0 {
			v = 0
		}
		f.Points = append(f.Points, Point{Time: end.Add(time.Duration(i) * step), Value: v})
		f.Total += v
	}
	return f, nil
}

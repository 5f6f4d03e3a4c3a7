// Package forecast predicts a usage series with additive Holt-Winters exponential smoothing and
// measures how good the prediction is by backtesting it on a held-out tail of the history.
//
// Additive Holt-Winters keeps a level, a trend and one seasonal offset per position in the
// season (24 for hourly data with a daily cycle, 7 for daily data with a weekly cycle). Its
// smoothing parameters are chosen by a grid search minimising the one-step-ahead squared error
// on the history, so the caller never tunes anything.
package forecast

import (
	"errors"
	"fmt"
	"math"
)

// Model is a fitted Holt-Winters model.
type Model struct {
	Period             int       `json:"period"` // season length; 0 or 1: no seasonal component (Holt's linear trend)
	Alpha, Beta, Gamma float64   `json:"-"`
	Level, Trend       float64   `json:"-"`
	Season             []float64 `json:"-"`
	// SSE is the one-step-ahead squared error over the history the model was fitted on.
	SSE float64 `json:"-"`
	n   int
}

// Parameters exposes the chosen smoothing parameters.
type Parameters struct {
	Alpha float64 `json:"alpha"`
	Beta  float64 `json:"beta"`
	Gamma float64 `json:"gamma"`
}

// Params returns the smoothing parameters.
func (m *Model) Params() Parameters { return Parameters{m.Alpha, m.Beta, m.Gamma} }

// ErrTooShort is returned when the history cannot initialise the model.
var ErrTooShort = errors.New("history too short")

// The grid: coarse enough to stay cheap (a month of hourly points fits in milliseconds), fine
// enough that a clean seasonal signal is tracked.
var (
	alphas = []float64{0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9}
	betas  = []float64{0, 0.01, 0.05, 0.1, 0.2}
	gammas = []float64{0.05, 0.1, 0.2, 0.3, 0.5, 0.8}
)

// Fit chooses the parameters that minimise the one-step-ahead error and returns the model fitted
// on the whole history. A seasonal model needs two full seasons of history, a trend model two
// points.
func Fit(y []float64, period int) (*Model, error) {
	if period <= 1 {
		period = 0
	}
	need := 2
	if period > 0 {
		need = 2 * period
	}
	if len(y) < need {
		return nil, fmt.Errorf("%w: %d points, need %d for a season of %d", ErrTooShort, len(y), need, period)
	}
	gs := gammas
	if period == 0 {
		gs = []float64{0}
	}
	var best *Model
	for _, a := range alphas {
		for _, b := range betas {
			for _, g := range gs {
				m := run(y, period, a, b, g)
				if best == nil || m.SSE < best.SSE {
					best = m
				}
			}
		}
	}
	return best, nil
}

// run smooths y with fixed parameters.
func run(y []float64, period int, a, b, g float64) *Model {
	m := &Model{Period: period, Alpha: a, Beta: b, Gamma: g, n: len(y)}
	start := 0
	if period > 0 {
		// Initial level: the first season's mean; trend: the change of the mean between the
		// first two seasons per step; offsets: the first season's deviations from its mean.
		var s1, s2 float64
		for i := range period {
			s1 += y[i]
			s2 += y[period+i]
		}
		s1 /= float64(period)
		s2 /= float64(period)
		m.Level = s1
		m.Trend = (s2 - s1) / float64(period)
		m.Season = make([]float64, period)
		for i := range period {
			m.Season[i] = y[i] - (s1 + (float64(i)-float64(period-1)/2)*m.Trend)
		}
		// The level describes the middle of the first season; move it to its last point so
		// that the recursion below starts at y[period].
		m.Level = s1 + float64(period-1)/2*m.Trend
		start = period
	} else {
		m.Level = y[0]
		m.Trend = y[1] - y[0]
		start = 1
	}
	for t := start; t < len(y); t++ {
		s := 0.0
		if period > 0 {
			s = m.Season[t%period]
		}
		pred := m.Level + m.Trend + s
		e := y[t] - pred
		m.SSE += e * e
		prevLevel := m.Level
		m.Level = a*(y[t]-s) + (1-a)*(m.Level+m.Trend)
		m.Trend = b*(m.Level-prevLevel) + (1-b)*m.Trend
		if period > 0 {
			m.Season[t%period] = g*(y[t]-m.Level) + (1-g)*s
		}
	}
	return m
}

// Forecast predicts the h points that follow the history.
func (m *Model) Forecast(h int) []float64 {
	out := make([]float64, h)
	for i := range h {
		v := m.Level + float64(i+1)*m.Trend
		if m.Period > 0 {
			v += m.Season[(m.n+i)%m.Period]
		}
		out[i] = v
	}
	return out
}

// Errors of a backtest.
type Errors struct {
	// MAPE is the mean absolute percentage error, in percent, over the held-out points whose
	// actual value is not zero (a percentage of zero is undefined); MAPEPoints counts them.
	MAPE       float64 `json:"mape_percent"`
	MAPEPoints int     `json:"mape_points"`
	RMSE       float64 `json:"rmse"`
	Holdout    int     `json:"holdout"`
}

// Backtest fits the model on all but the last holdout points, forecasts them and measures the
// error against what actually happened.
func Backtest(y []float64, period, holdout int) (Errors, error) {
	if holdout <= 0 || holdout >= len(y) {
		return Errors{}, fmt.Errorf("holdout %d must be between 1 and %d", holdout, len(y)-1)
	}
	train, test := y[:len(y)-holdout], y[len(y)-holdout:]
	m, err := Fit(train, period)
	if err != nil {
		return Errors{}, fmt.Errorf("backtest: %w", err)
	}
	return Measure(test, m.Forecast(holdout)), nil
}

// Measure compares predictions with actual values.
func Measure(actual, predicted []float64) Errors {
	e := Errors{Holdout: len(actual)}
	var se, ape float64
	for i, a := range actual {
		d := a - predicted[i]
		se += d * d
		if a != 0 {
			ape += math.Abs(d / a)
			e.MAPEPoints++
		}
	}
	if len(actual) > 0 {
		e.RMSE = math.Sqrt(se / float64(len(actual)))
	}
	if e.MAPEPoints > 0 {
		e.MAPE = 100 * ape / float64(e.MAPEPoints)
	}
	return e
}

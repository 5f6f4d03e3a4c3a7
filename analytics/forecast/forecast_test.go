package forecast

import (
	"errors"
	"math"
	"testing"
)

// seasonal is 14 days of hourly points: a level of 200, a trend of +0.5 per hour and a daily
// sinusoid of amplitude 40 peaking at hour 6.
func seasonal(n int) []float64 {
	y := make([]float64, n)
	for t := range y {
		y[t] = 200 + 0.5*float64(t) + 40*math.Sin(2*math.Pi*float64(t)/24)
	}
	return y
}

// The bound the seasonal model must meet on a clean daily pattern, and that a model blind to
// seasonality must miss: the same bound, the same data, the same code.
const mapeBound = 1.0 // percent

func TestBacktestSeasonalMeetsBound(t *testing.T) {
	y := seasonal(14 * 24)
	e, err := Backtest(y, 24, 24)
	if err != nil {
		t.Fatal(err)
	}
	if e.Holdout != 24 || e.MAPEPoints != 24 {
		t.Fatalf("holdout %d, mape points %d; want 24, 24", e.Holdout, e.MAPEPoints)
	}
	if e.MAPE >= mapeBound {
		t.Fatalf("seasonal MAPE %.4f%% >= bound %.1f%% (RMSE %.3f)", e.MAPE, mapeBound, e.RMSE)
	}
	if e.RMSE >= 3 {
		t.Fatalf("seasonal RMSE %.3f >= 3", e.RMSE)
	}
}

func TestBacktestWithoutSeasonalityFailsBound(t *testing.T) {
	y := seasonal(14 * 24)
	e, err := Backtest(y, 0, 24)
	if err != nil {
		t.Fatal(err)
	}
	// A straight line cannot follow a ±40 daily swing around a level near 370: the error is
	// several percent. This proves the bound above can fail.
	if e.MAPE < mapeBound {
		t.Fatalf("non-seasonal MAPE %.4f%% < bound %.1f%%: the seasonal test could not fail", e.MAPE, mapeBound)
	}
	if e.RMSE < 15 {
		t.Fatalf("non-seasonal RMSE %.3f < 15", e.RMSE)
	}
}

func TestWeeklySeason(t *testing.T) {
	// Daily points with a weekly pattern: weekends at 40 % of weekdays, 8 weeks, flat level.
	week := []float64{100, 100, 100, 100, 100, 40, 40}
	var y []float64
	for range 8 {
		y = append(y, week...)
	}
	m, err := Fit(y, 7)
	if err != nil {
		t.Fatal(err)
	}
	got := m.Forecast(7)
	for i, v := range got {
		if math.Abs(v-week[i]) > 1e-6 {
			t.Fatalf("day %d: forecast %.6f, want %.0f (all %v)", i, v, week[i], got)
		}
	}
	if m.SSE > 1e-9 {
		t.Fatalf("SSE %.3g on a perfectly periodic series", m.SSE)
	}
}

func TestLinearTrendIsExact(t *testing.T) {
	y := []float64{10, 12, 14, 16, 18, 20}
	m, err := Fit(y, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := m.Forecast(3)
	for i, want := range []float64{22, 24, 26} {
		if math.Abs(got[i]-want) > 1e-9 {
			t.Fatalf("forecast %v, want 22 24 26", got)
		}
	}
}

func TestTooShort(t *testing.T) {
	if _, err := Fit(make([]float64, 47), 24); !errors.Is(err, ErrTooShort) {
		t.Fatalf("47 hourly points with a daily season: err %v, want ErrTooShort", err)
	}
	if _, err := Backtest(make([]float64, 10), 0, 10); err == nil {
		t.Fatal("holdout of the whole series accepted")
	}
}

func TestMeasureExact(t *testing.T) {
	e := Measure([]float64{100, 0, 50}, []float64{90, 5, 60})
	// MAPE over the non-zero actuals: (10/100 + 10/50)/2 = 15 %; RMSE sqrt((100+25+100)/3).
	if e.MAPEPoints != 2 || math.Abs(e.MAPE-15) > 1e-12 || math.Abs(e.RMSE-math.Sqrt(75)) > 1e-12 {
		t.Fatalf("got %+v", e)
	}
}

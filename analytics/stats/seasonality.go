package stats

import (
	"context"
	"time"

	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Profile is a meter's seasonality over a range: the mean per hour of the day and the mean
// daily total per day of the week. Hours and days with no usage count as zero, so the means
// are comparable between quiet and busy periods.
type Profile struct {
	Tenant string    `json:"tenant"`
	Meter  string    `json:"meter"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	// HourOfDay[h] is the mean usage in hour h (UTC) over the days of the range.
	HourOfDay [24]float64 `json:"hour_of_day"`
	// DayOfWeek[d] is the mean daily usage on weekday d (0 = Sunday, as time.Weekday).
	DayOfWeek [7]float64 `json:"day_of_week"`
	PeakHour  int        `json:"peak_hour"`
	PeakDay   string     `json:"peak_day"`
	// DailyAmplitude is (max-min)/mean of HourOfDay: 0 for flat usage.
	DailyAmplitude float64 `json:"daily_amplitude"`
}

// Seasonality profiles a flow or unique_count meter of a tenant over [from, to), which must
// be whole UTC days.
func Seasonality(ctx context.Context, st *ledger.Store, tenant, meterName string, from, to time.Time) (Profile, error) {
	d, err := meterDef(st, meterName)
	if err != nil {
		return Profile{}, err
	}
	if d.Kind == meter.Stock && d.Aggregation != meter.UniqueCount {
		return Profile{}, badf("meter %s is a level (stock): seasonality is defined for flows", meterName)
	}
	from, to = DayFloor(from), DayFloor(to)
	if !from.Before(to) {
		return Profile{}, badf("the range must hold at least one whole UTC day")
	}
	hours, err := HourlySeries(ctx, st, tenant, meterName, from, to)
	if err != nil {
		return Profile{}, err
	}
	p := Profile{Tenant: tenant, Meter: meterName, From: from, To: to}
	var hourN [24]int
	var daySum [7]float64
	var dayN [7]int
	for i, v := range hours {
		t := from.Add(time.Duration(i) * time.Hour)
		p.HourOfDay[t.Hour()] += v
		hourN[t.Hour()]++
		daySum[t.Weekday()] += v
		if t.Hour() == 0 {
			dayN[t.Weekday()]++
		}
	}
	for h := range 24 {
		if hourN[h] > 0 {
			p.HourOfDay[h] /= float64(hourN[h])
		}
		if p.HourOfDay[h] > p.HourOfDay[p.PeakHour] {
			p.PeakHour = h
		}
	}
	peak := 0
	for d := range 7 {
		if dayN[d] > 0 {
			p.DayOfWeek[d] = daySum[d] / float64(dayN[d])
		}
		if p.DayOfWeek[d] > p.DayOfWeek[peak] {
			peak = d
		}
	}
	p.PeakDay = time.Weekday(peak).String()
	lo, hi := p.HourOfDay[0], p.HourOfDay[0]
	for _, v := range p.HourOfDay {
		lo, hi = min(lo, v), max(hi, v)
	}
	if m := mean(p.HourOfDay[:]); m > 0 {
		p.DailyAmplitude = (hi - lo) / m
	}
	return p, nil
}

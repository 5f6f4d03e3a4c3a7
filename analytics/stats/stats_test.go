package stats

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/analytics/internal/ledgertest"
)

var ctx = context.Background()

var at = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func d(m time.Month, day, hour int) time.Time {
	return time.Date(2026, m, day, hour, 0, 0, 0, time.UTC)
}

var ev = ledgertest.E

func ai(t time.Time, tenant string, tokens int) ledgertest.Event {
	return ev("ai.tokens", t, "tenant", tenant, "user", "u", "feature", "chat", "model", "m", "input_tokens", tokens, "output_tokens", 0)
}

func login(t time.Time, user string, session int) ledgertest.Event {
	if session < 0 {
		return ev("user.login", t, "tenant", "acme", "user", user)
	}
	return ev("user.login", t, "tenant", "acme", "user", user, "session_seconds", session)
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestTrend(t *testing.T) {
	st := ledgertest.Open(t)
	ledgertest.Load(t, st,
		ai(d(9, 10, 0), "acme", 500),
		ai(d(10, 3, 0), "acme", 400), ai(d(10, 30, 23), "acme", 600),
		ai(d(11, 6, 0), "acme", 200),                                  // previous week [Nov 6, Nov 13)
		ai(d(11, 13, 0), "acme", 100), ai(d(11, 19, 23), "acme", 200), // current week
		ai(d(11, 20, 0), "acme", 999), // at: excluded
		ev("document.created", d(11, 1, 0), "tenant", "acme", "user", "u", "document_id", "a", "doc_type", "pdf", "bytes", 1),
		ev("document.created", d(11, 15, 0), "tenant", "acme", "user", "u", "document_id", "b", "doc_type", "pdf", "bytes", 1),
		ai(d(11, 15, 0), "beta", 10),
	)
	g, err := Trend(ctx, st, "acme", "ai_tokens", at.Add(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	w, m := g.WeekOverWeek, g.MonthOverMonth
	if w.Current != 300 || w.Previous != 200 || w.Delta != 100 || w.Percent == nil || !near(*w.Percent, 50) || !w.From.Equal(d(11, 13, 0)) {
		t.Errorf("week over week %+v", w)
	}
	if m.Current != 1000 || m.Previous != 500 || !near(*m.Percent, 100) || !m.From.Equal(d(10, 1, 0)) || !m.To.Equal(d(11, 1, 0)) {
		t.Errorf("month over month %+v", m)
	}
	// A stock meter compares levels: 2 documents now, 1 a week ago.
	g, err = Trend(ctx, st, "acme", "documents", at)
	if err != nil {
		t.Fatal(err)
	}
	if g.WeekOverWeek.Current != 2 || g.WeekOverWeek.Previous != 1 || g.Unit != "documents" {
		t.Errorf("documents %+v", g.WeekOverWeek)
	}
	all, err := Trends(ctx, st, []string{"acme", "beta"}, []string{"ai_tokens"}, at)
	if err != nil {
		t.Fatal(err)
	}
	// acme moved +50 %; beta appeared from nothing (no percentage) and ranks after it.
	if len(all) != 2 || all[0].Tenant != "acme" || all[1].Tenant != "beta" || all[1].WeekOverWeek.Percent != nil || all[1].WeekOverWeek.Delta != 10 {
		t.Errorf("movers %+v", all)
	}
	if _, err := Trend(ctx, st, "acme", "nope", at); err == nil {
		t.Error("unknown meter accepted")
	}
}

func TestSeasonality(t *testing.T) {
	st := ledgertest.Open(t)
	var evs []ledgertest.Event
	// Two weeks from Monday 2026-11-02: on weekdays 3 logins at 09:00 and 1 at 15:00.
	for day := 2; day < 16; day++ {
		t0 := d(11, day, 0)
		if wd := t0.Weekday(); wd == time.Saturday || wd == time.Sunday {
			continue
		}
		for range 3 {
			evs = append(evs, login(t0.Add(9*time.Hour), "u1", 60))
		}
		evs = append(evs, login(t0.Add(15*time.Hour+30*time.Minute), "u2", 60))
	}
	ledgertest.Load(t, st, evs...)
	p, err := Seasonality(ctx, st, "acme", "logins", d(11, 2, 0), d(11, 16, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !near(p.HourOfDay[9], 30.0/14) || !near(p.HourOfDay[15], 10.0/14) || p.HourOfDay[10] != 0 {
		t.Errorf("hour of day %v", p.HourOfDay)
	}
	if p.DayOfWeek != [7]float64{0, 4, 4, 4, 4, 4, 0} || p.PeakHour != 9 || p.PeakDay != "Monday" {
		t.Errorf("day of week %v peak %d %s", p.DayOfWeek, p.PeakHour, p.PeakDay)
	}
	// (max-min)/mean = (30/14) / (40/14/24) = 18.
	if !near(p.DailyAmplitude, 18) {
		t.Errorf("amplitude %v", p.DailyAmplitude)
	}
	if _, err := Seasonality(ctx, st, "acme", "documents", d(11, 2, 0), d(11, 16, 0)); err == nil {
		t.Error("seasonality of a stock accepted")
	}
}

func TestPredictSeasonalFromLedger(t *testing.T) {
	st := ledgertest.Open(t)
	start := d(11, 1, 0)
	pattern := func(i int) int {
		return int(math.Round(200 + 0.5*float64(i) + 40*math.Sin(2*math.Pi*float64(i)/24)))
	}
	var evs []ledgertest.Event
	for i := range 14 * 24 {
		evs = append(evs, ai(start.Add(time.Duration(i)*time.Hour+10*time.Minute), "acme", pattern(i)))
	}
	ledgertest.Load(t, st, evs...)
	end := start.Add(14 * 24 * time.Hour)
	f, err := Predict(ctx, st, "acme", "ai_tokens", ForecastOptions{Season: SeasonDaily, History: 14 * 24, At: end})
	if err != nil {
		t.Fatal(err)
	}
	if f.History != 336 || len(f.Points) != 24 || !f.Points[0].Time.Equal(end) || f.Backtest.Holdout != 24 {
		t.Fatalf("shape: history %d points %d first %s holdout %d", f.History, len(f.Points), f.Points[0].Time, f.Backtest.Holdout)
	}
	// The pattern continues exactly: the forecast must stay within 1 % of it, and the backtest
	// on the last day of history too (the rounding to whole tokens is the only noise).
	if f.Backtest.MAPE >= 1 {
		t.Errorf("backtest MAPE %.3f%% >= 1%%", f.Backtest.MAPE)
	}
	var ape float64
	for i, p := range f.Points {
		want := float64(pattern(336 + i))
		ape += math.Abs(p.Value-want) / want
	}
	if mape := 100 * ape / 24; mape >= 1 {
		t.Errorf("forecast MAPE against the continued pattern %.3f%% >= 1%%", mape)
	}
	// The same data, forecast by day with a weekly season, has 14 points: too short for 3 seasons.
	if _, err := Predict(ctx, st, "acme", "ai_tokens", ForecastOptions{Season: SeasonWeekly, History: 14, At: end}); err == nil {
		t.Error("a 14-day weekly forecast was accepted")
	}
}

func TestEngagement(t *testing.T) {
	st := ledgertest.Open(t)
	var evs []ledgertest.Event
	for i := range 30 { // u1: every day from Oct 21 to Nov 19
		evs = append(evs, login(d(10, 21, 8).AddDate(0, 0, i), "u1", 100))
	}
	for day := 17; day <= 19; day++ {
		evs = append(evs, login(d(11, day, 12), "u2", 400))
	}
	evs = append(evs, login(d(10, 5, 12), "u3", -1))
	ledgertest.Load(t, st, evs...)
	e, err := Engage(ctx, st, "acme", at.Add(5*time.Hour), 30, true)
	if err != nil {
		t.Fatal(err)
	}
	if e.DAU != 2 || e.WAU != 2 || e.MAU != 2 || !near(e.AvgDAU, 33.0/30) || !near(e.Stickiness, 33.0/30/2) {
		t.Errorf("dau %d wau %d mau %d avg %v stickiness %v", e.DAU, e.WAU, e.MAU, e.AvgDAU, e.Stickiness)
	}
	if e.KnownUsers != 3 || e.InactiveUsers != 1 || !slices.Equal(e.Inactive, []string{"u3"}) {
		t.Errorf("known %d inactive %d %v", e.KnownUsers, e.InactiveUsers, e.Inactive)
	}
	if e.Logins != 33 || e.LoginUsers != 2 || !near(e.LoginsPerUser, 16.5) || !near(e.LoginsPerUserMed, 16.5) {
		t.Errorf("logins %d users %d per user %v median %v", e.Logins, e.LoginUsers, e.LoginsPerUser, e.LoginsPerUserMed)
	}
	if e.SessionSeconds != 4200 || !near(e.AvgSessionSeconds, 4200.0/33) {
		t.Errorf("sessions %d avg %v", e.SessionSeconds, e.AvgSessionSeconds)
	}
	e, err = Engage(ctx, st, "acme", at, 30, false)
	if err != nil || e.Inactive != nil || e.InactiveUsers != 1 {
		t.Errorf("without per-user permission: %v %v", e.Inactive, err)
	}
}

func TestAdoptionAndRetention(t *testing.T) {
	st := ledgertest.Open(t)
	use := func(t time.Time, user, feature string) ledgertest.Event {
		return ev("feature.used", t, "tenant", "acme", "user", user, "feature", feature)
	}
	ledgertest.Load(t, st,
		use(d(11, 2, 10), "u1", "export"), use(d(11, 10, 10), "u1", "export"),
		use(d(11, 3, 10), "u2", "share"), use(d(11, 10, 11), "u2", "export"),
		login(d(11, 4, 10), "u3", 10),
		use(d(11, 16, 0), "u4", "export"), // outside [Nov 2, Nov 16)
	)
	a, err := Adopt(ctx, st, "acme", d(11, 2, 0), d(11, 16, 0))
	if err != nil {
		t.Fatal(err)
	}
	if a.ActiveUsers != 3 || a.Weeks != 2 || len(a.Features) != 2 {
		t.Fatalf("active %d weeks %d features %d", a.ActiveUsers, a.Weeks, len(a.Features))
	}
	ex, sh := a.Features[0], a.Features[1]
	if ex.Feature != "export" || ex.Adopters != 2 || ex.Uses != 3 || !near(ex.Percent, 200.0/3) || !slices.Equal(ex.Curve, []int{1, 2}) || !ex.FirstUse.Equal(d(11, 2, 0)) {
		t.Errorf("export %+v", ex)
	}
	if sh.Feature != "share" || sh.Adopters != 1 || sh.Uses != 1 || !slices.Equal(sh.Curve, []int{1, 1}) {
		t.Errorf("share %+v", sh)
	}
	c0, c1 := a.Cohorts[0], a.Cohorts[1]
	if c0.Users != 3 || !slices.Equal(c0.Active, []int{3, 2}) || !near(c0.Retention[1], 2.0/3) || c1.Users != 0 || !slices.Equal(c1.Active, []int{0}) {
		t.Errorf("cohorts %+v %+v", c0, c1)
	}
}

func TestIngestion(t *testing.T) {
	st := ledgertest.Open(t)
	var evs []ledgertest.Event
	job := func(t time.Time, src string, ms int) ledgertest.Event {
		return ev("ingest.completed", t, "tenant", "acme", "source", src, "bytes", 10, "records", 1, "duration_ms", ms)
	}
	for h := range 48 {
		evs = append(evs, job(d(11, 18, 0).Add(time.Duration(h)*time.Hour+time.Minute), "s3", 1000))
	}
	for range 20 {
		evs = append(evs, job(d(11, 18, 5).Add(7*time.Minute), "kafka", 5000))
	}
	ledgertest.Load(t, st, evs...)
	in, err := Ingest(ctx, st, "acme", d(11, 18, 0), at)
	if err != nil {
		t.Fatal(err)
	}
	if in.Jobs != 68 || !near(in.AvgDurationMS, 148000.0/68) || len(in.Sources) != 2 {
		t.Fatalf("jobs %d avg %v sources %d", in.Jobs, in.AvgDurationMS, len(in.Sources))
	}
	k, s := in.Sources[0], in.Sources[1]
	if k.Source != "kafka" || k.Jobs != 20 || k.Bytes != 200 || k.Records != 20 || k.DurationMS != 100000 || k.PeakHourly != 20 ||
		!slices.Equal(k.BurstHours, []time.Time{d(11, 18, 5)}) || !k.Slow || !k.Silent || k.ActiveHours != 1 || !near(k.JobsPerDay, 10) {
		t.Errorf("kafka %+v", k)
	}
	if s.Source != "s3" || s.Jobs != 48 || s.ActiveHours != 48 || len(s.BurstHours) != 0 || s.Slow || s.Silent || !near(s.JobsPerDay, 24) || !near(s.MeanHourly, 1) || !near(s.AvgDurationMS, 1000) {
		t.Errorf("s3 %+v", s)
	}
}

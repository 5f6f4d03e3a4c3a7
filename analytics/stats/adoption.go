package stats

import (
	"context"
	"sort"
	"time"

	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// UserActivityMeters are the flow meters whose events name a user: a user is active on a day
// when any of them has an event of theirs that day.
var UserActivityMeters = []string{"logins", "feature_uses", "ai_requests", "documents_created", "ingest_jobs"}

// FeatureAdoption is one feature's adoption over a range.
type FeatureAdoption struct {
	Feature  string    `json:"feature"`
	Uses     int64     `json:"uses"`
	Adopters int       `json:"adopters"` // distinct users who used it
	Percent  float64   `json:"percent"`  // adopters / active users of the range
	FirstUse time.Time `json:"first_use"`
	// Curve[w] is the cumulative adopters by the end of week w of the range.
	Curve []int `json:"curve"`
}

// Cohort is the users first active in one week of the range and how many of them were active
// in each week since.
type Cohort struct {
	Week      time.Time `json:"week"` // start of the cohort's week
	Users     int       `json:"users"`
	Active    []int     `json:"active"`    // Active[k]: cohort users active in week Week+k
	Retention []float64 `json:"retention"` // Active[k] / Users
}

// Adoption is a tenant's feature adoption and retention over [From, To).
type Adoption struct {
	Tenant      string            `json:"tenant"`
	From        time.Time         `json:"from"`
	To          time.Time         `json:"to"`
	Weeks       int               `json:"weeks"`
	ActiveUsers int               `json:"active_users"` // distinct users active in the range
	Features    []FeatureAdoption `json:"features"`
	// Cohorts group users by the week of their first activity inside the range (activity
	// before From is not looked at: a cohort is "first seen in the range").
	Cohorts []Cohort `json:"cohorts"`
}

// userDays returns, per user, the set of day indexes (from `from`) with activity.
func userDays(ctx context.Context, st *ledger.Store, tenant string, from, to time.Time) (map[string]map[int]bool, error) {
	out := map[string]map[int]bool{}
	for _, m := range UserActivityMeters {
		if _, ok := st.Meter(m); !ok {
			continue
		}
		rows, err := st.Usage(ctx, ledger.Query{Meter: m, Tenant: tenant, From: from, To: to, GroupBy: []string{"user"}, Window: ledger.WindowDay})
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			u := r.Group["user"]
			if u == "" || r.Value == 0 {
				continue
			}
			if out[u] == nil {
				out[u] = map[int]bool{}
			}
			out[u][int(r.WindowStart.Sub(from)/Day)] = true
		}
	}
	return out, nil
}

// Adopt computes feature adoption and weekly retention cohorts over [from, to) (whole days).
func Adopt(ctx context.Context, st *ledger.Store, tenant string, from, to time.Time) (Adoption, error) {
	from, to = DayFloor(from), DayFloor(to)
	days := int(to.Sub(from) / Day)
	if days < 1 || days > 400 {
		return Adoption{}, badf("the range must hold 1 to 400 whole UTC days")
	}
	weeks := (days + 6) / 7
	a := Adoption{Tenant: tenant, From: from, To: to, Weeks: weeks}
	act, err := userDays(ctx, st, tenant, from, to)
	if err != nil {
		return a, err
	}
	a.ActiveUsers = len(act)

	rows, err := st.Usage(ctx, ledger.Query{Meter: "feature_uses", Tenant: tenant, From: from, To: to, GroupBy: []string{"feature", "user"}, Window: ledger.WindowDay})
	if err != nil {
		return a, err
	}
	type feat struct {
		uses  int64
		first map[string]int // user → first day
		start time.Time
	}
	feats := map[string]*feat{}
	for _, r := range rows {
		f := feats[r.Group["feature"]]
		if f == nil {
			f = &feat{first: map[string]int{}, start: r.WindowStart}
			feats[r.Group["feature"]] = f
		}
		f.uses += r.Value
		if r.WindowStart.Before(f.start) {
			f.start = r.WindowStart
		}
		d := int(r.WindowStart.Sub(from) / Day)
		if cur, ok := f.first[r.Group["user"]]; !ok || d < cur {
			f.first[r.Group["user"]] = d
		}
	}
	for name, f := range feats {
		fa := FeatureAdoption{Feature: name, Uses: f.uses, Adopters: len(f.first), FirstUse: f.start, Curve: make([]int, weeks)}
		if a.ActiveUsers > 0 {
			fa.Percent = 100 * float64(fa.Adopters) / float64(a.ActiveUsers)
		}
		for _, d := range f.first {
			for w := d / 7; w < weeks; w++ {
				fa.Curve[w]++
			}
		}
		a.Features = append(a.Features, fa)
	}
	sort.Slice(a.Features, func(i, j int) bool {
		if a.Features[i].Adopters != a.Features[j].Adopters {
			return a.Features[i].Adopters > a.Features[j].Adopters
		}
		return a.Features[i].Feature < a.Features[j].Feature
	})

	cohorts := make([]Cohort, weeks)
	for w := range cohorts {
		cohorts[w] = Cohort{Week: from.Add(time.Duration(7*w) * Day), Active: make([]int, weeks-w)}
	}
	for _, ds := range act {
		first := days
		weeksActive := map[int]bool{}
		for d := range ds {
			first = min(first, d)
			weeksActive[d/7] = true
		}
		c := &cohorts[first/7]
		c.Users++
		for w := range weeksActive {
			c.Active[w-first/7]++
		}
	}
	for w := range cohorts {
		c := &cohorts[w]
		c.Retention = make([]float64, len(c.Active))
		for k, n := range c.Active {
			if c.Users > 0 {
				c.Retention[k] = float64(n) / float64(c.Users)
			}
		}
	}
	a.Cohorts = cohorts
	return a, nil
}

package stats

import (
	"context"
	"sort"
	"time"

	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// ActivityMeter is the unique_count meter whose identities are users.
const ActivityMeter = "active_users"

// Engagement is a tenant's user engagement over the 30 days before At.
type Engagement struct {
	Tenant string    `json:"tenant"`
	At     time.Time `json:"at"`
	// DAU is the distinct users of the last whole UTC day before At; WAU of the last 7 days,
	// MAU of the last 30 days.
	DAU int64 `json:"dau"`
	WAU int64 `json:"wau"`
	MAU int64 `json:"mau"`
	// AvgDAU is the mean of the 30 daily distinct-user counts; Stickiness = AvgDAU / MAU.
	AvgDAU     float64 `json:"avg_dau"`
	Stickiness float64 `json:"stickiness"`
	// Users known ever (with a last activity), and those inactive for InactiveDays or more.
	KnownUsers    int      `json:"known_users"`
	InactiveDays  int      `json:"inactive_days"`
	InactiveUsers int      `json:"inactive_users"`
	Inactive      []string `json:"inactive,omitempty"` // only with per-user permission
	// Logins in the 30 days, users who logged in, and logins per such user (mean and median).
	Logins            int64   `json:"logins"`
	LoginUsers        int     `json:"login_users"`
	LoginsPerUser     float64 `json:"logins_per_user"`
	LoginsPerUserMed  float64 `json:"logins_per_user_median"`
	SessionSeconds    int64   `json:"session_seconds"`
	AvgSessionSeconds float64 `json:"avg_session_seconds"` // session_seconds / logins
	ActivityMeter     string  `json:"activity_meter"`
}

// Engage computes engagement. withUsers lists the inactive users by id (per-user detail).
func Engage(ctx context.Context, st *ledger.Store, tenant string, at time.Time, inactiveDays int, withUsers bool) (Engagement, error) {
	if inactiveDays <= 0 {
		inactiveDays = 30
	}
	day := DayFloor(at)
	e := Engagement{Tenant: tenant, At: day, InactiveDays: inactiveDays, ActivityMeter: ActivityMeter}
	var err error
	if e.DAU, err = Total(ctx, st, tenant, ActivityMeter, day.Add(-Day), day); err != nil {
		return e, err
	}
	if e.WAU, err = Total(ctx, st, tenant, ActivityMeter, day.Add(-7*Day), day); err != nil {
		return e, err
	}
	if e.MAU, err = Total(ctx, st, tenant, ActivityMeter, day.Add(-30*Day), day); err != nil {
		return e, err
	}
	daily, err := DailySeries(ctx, st, tenant, ActivityMeter, day.Add(-30*Day), day)
	if err != nil {
		return e, err
	}
	e.AvgDAU = mean(daily)
	if e.MAU > 0 {
		e.Stickiness = e.AvgDAU / float64(e.MAU)
	}
	seen, err := st.LastSeen(ctx, ActivityMeter, tenant)
	if err != nil {
		return e, err
	}
	e.KnownUsers = len(seen)
	cut := day.Add(-time.Duration(inactiveDays) * Day)
	for u, t := range seen {
		if t.Before(cut) {
			e.InactiveUsers++
			if withUsers {
				e.Inactive = append(e.Inactive, u)
			}
		}
	}
	sort.Strings(e.Inactive)
	rows, err := st.Usage(ctx, ledger.Query{Meter: "logins", Tenant: tenant, From: day.Add(-30 * Day), To: day, GroupBy: []string{"user"}})
	if err != nil {
		return e, err
	}
	var per []float64
	for _, r := range rows {
		if r.Value > 0 {
			e.Logins += r.Value
			per = append(per, float64(r.Value))
		}
	}
	e.LoginUsers = len(per)
	if len(per) > 0 {
		e.LoginsPerUser = float64(e.Logins) / float64(len(per))
		sort.Float64s(per)
		if n := len(per); n%2 == 1 {
			e.LoginsPerUserMed = per[n/2]
		} else {
			e.LoginsPerUserMed = (per[n/2-1] + per[n/2]) / 2
		}
	}
	if e.SessionSeconds, err = Total(ctx, st, tenant, "session_seconds", day.Add(-30*Day), day); err != nil {
		return e, err
	}
	if e.Logins > 0 {
		e.AvgSessionSeconds = float64(e.SessionSeconds) / float64(e.Logins)
	}
	return e, nil
}

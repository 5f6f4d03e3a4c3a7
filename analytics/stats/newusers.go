package stats

import (
	"context"
	"sort"
	"time"

	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// maxNewUserWindows bounds the windows of one answer (a year and a half by the hour).
const maxNewUserWindows = 13_000

// NewUsers is a tenant's new users in [From, To): the users whose first activity ever (the
// first hour any event named them, ActivityMeter's presence) lies in the period, in total and
// per window.
type NewUsers struct {
	Tenant   string           `json:"tenant"`
	From     time.Time        `json:"from"`
	To       time.Time        `json:"to"`
	Window   string           `json:"window"`
	NewUsers int              `json:"new_users"`
	Windows  []NewUsersWindow `json:"windows"`
	// HistoryFrom is set when retention archived (and deleted) presence rollups: activity before
	// it is not in the store, so a user last active before it counts as new when they return.
	HistoryFrom   *time.Time      `json:"history_from,omitempty"`
	Users         []FirstSeenUser `json:"users,omitempty"` // only with per-user permission
	ActivityMeter string          `json:"activity_meter"`
}

// NewUsersWindow is the count of new users of one window.
type NewUsersWindow struct {
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	NewUsers    int       `json:"new_users"`
}

// FirstSeenUser is a new user and the hour of their first activity.
type FirstSeenUser struct {
	User      string    `json:"user"`
	FirstSeen time.Time `json:"first_seen"`
}

// NewUsersOf counts the new users of a tenant over [from, to) (hour boundaries) per window (hour,
// day or month: UTC, the first and last windows clipped to the period). withUsers lists them
// (per-user detail).
func NewUsersOf(ctx context.Context, st *ledger.Store, tenant string, from, to time.Time, window string, withUsers bool) (NewUsers, error) {
	from, to = from.UTC(), to.UTC()
	out := NewUsers{Tenant: tenant, From: from, To: to, Window: window, ActivityMeter: ActivityMeter}
	if !from.Before(to) {
		return out, badf("from %s must be before to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if !from.Equal(HourFloor(from)) || !to.Equal(HourFloor(to)) {
		return out, badf("from and to must be on hour boundaries (activity is kept hourly)")
	}
	var next func(time.Time) time.Time
	switch window {
	case ledger.WindowHour:
		next = func(t time.Time) time.Time { return t.Add(time.Hour) }
	case ledger.WindowDay:
		next = func(t time.Time) time.Time { return DayFloor(t).Add(Day) }
	case ledger.WindowMonth:
		next = func(t time.Time) time.Time { return MonthStart(t).AddDate(0, 1, 0) }
	default:
		return out, badf("window %q: want hour, day or month", window)
	}
	for t := from; t.Before(to); t = next(t) {
		if len(out.Windows) == maxNewUserWindows {
			return out, badf("more than %d %s windows: choose a longer window or a shorter period", maxNewUserWindows, window)
		}
		out.Windows = append(out.Windows, NewUsersWindow{WindowStart: t, WindowEnd: minTime(next(t), to)})
	}
	first, err := st.FirstSeen(ctx, ActivityMeter, tenant, from, to)
	if err != nil {
		return out, err
	}
	out.NewUsers = len(first)
	for u, t := range first {
		// The window holding t: the last whose start is not after it.
		i := sort.Search(len(out.Windows), func(i int) bool { return out.Windows[i].WindowStart.After(t) }) - 1
		out.Windows[i].NewUsers++
		if withUsers {
			out.Users = append(out.Users, FirstSeenUser{User: u, FirstSeen: t})
		}
	}
	sort.Slice(out.Users, func(i, j int) bool {
		a, b := out.Users[i], out.Users[j]
		return a.FirstSeen.Before(b.FirstSeen) || a.FirstSeen.Equal(b.FirstSeen) && a.User < b.User
	})
	archived, err := st.ArchivedMonths(ctx, ledger.ClassRollups)
	if err != nil {
		return out, err
	}
	for _, m := range archived {
		if h := MonthStart(m).AddDate(0, 1, 0); out.HistoryFrom == nil || h.After(*out.HistoryFrom) {
			out.HistoryFrom = &h
		}
	}
	return out, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

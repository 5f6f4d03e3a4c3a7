package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/analytics/internal/ledgertest"
	"github.com/usagemeter/usagemeter/analytics/stats"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// TestNewUsersEndpoint: the new users per day, per hour and per month, and their list, match a
// recomputation from the events loaded (each user's earliest event), for periods that cut
// through users' histories (returning users are not new).
func TestNewUsersEndpoint(t *testing.T) {
	st := ledgertest.Open(t)
	rng := rand.New(rand.NewPCG(3, 5))
	start := d(8, 1, 0)
	var evs []ledgertest.Event
	first := map[string]time.Time{}
	for i := range 600 {
		tenant := []string{"acme", "beta"}[i%2]
		k := rng.IntN(30)
		// User k joins around day 3k after start, then comes back at random.
		at := start.Add(time.Duration(3*k)*stats.Day + time.Duration(rng.Int64N(int64(100*stats.Day-time.Duration(3*k)*stats.Day))))
		user := fmt.Sprintf("user-%02d", k)
		if rng.IntN(2) == 0 {
			evs = append(evs, ledgertest.E("user.login", at, "tenant", tenant, "user", user, "session_seconds", 30))
		} else {
			evs = append(evs, ledgertest.E("feature.used", at, "tenant", tenant, "user", user, "feature", "chat"))
		}
		if tenant == "acme" {
			if f, ok := first[user]; !ok || at.Before(f) {
				first[user] = at
			}
		}
	}
	ledgertest.Load(t, st, evs...)
	srv, _ := server(t, st)

	for _, c := range []struct {
		from, to time.Time
		window   string
	}{
		{d(9, 1, 0), d(10, 1, 0), "day"},
		{d(8, 1, 0), d(11, 9, 0), "month"},
		{d(9, 15, 5), d(9, 17, 13), "hour"},
		{d(10, 20, 0), d(11, 20, 0), "day"},
	} {
		q := url.Values{"tenant": {"acme"}, "from": {c.from.Format(time.RFC3339)}, "to": {c.to.Format(time.RFC3339)}, "window": {c.window}, "users": {"true"}}
		resp, body := get(t, srv.URL+"/v1/analytics/new-users?"+q.Encode())
		var got stats.NewUsers
		if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil {
			t.Fatalf("%v: %d %s", c, resp.StatusCode, body)
		}
		// The recomputation: each user's earliest event, by the hour, bucketed by window.
		step := map[string]func(time.Time) time.Time{
			"hour":  func(t time.Time) time.Time { return t.Truncate(time.Hour) },
			"day":   func(t time.Time) time.Time { return t.Truncate(stats.Day) },
			"month": func(t time.Time) time.Time { return stats.MonthStart(t) },
		}[c.window]
		perWindow := map[time.Time]int{}
		var users []stats.FirstSeenUser
		for u, f := range first {
			h := f.Truncate(time.Hour)
			if !h.Before(c.from) && h.Before(c.to) {
				ws := step(h)
				if ws.Before(c.from) {
					ws = c.from // the first window is clipped to the period
				}
				perWindow[ws]++
				users = append(users, stats.FirstSeenUser{User: u, FirstSeen: h})
			}
		}
		total := 0
		for i, w := range got.Windows {
			if w.NewUsers != perWindow[w.WindowStart] {
				t.Errorf("%v: window %s: %d new users, want %d", c, w.WindowStart, w.NewUsers, perWindow[w.WindowStart])
			}
			if i > 0 && !w.WindowStart.Equal(got.Windows[i-1].WindowEnd) || i == 0 && !w.WindowStart.Equal(c.from) {
				t.Errorf("%v: windows not contiguous from the period's start at %d", c, i)
			}
			total += w.NewUsers
		}
		if n := len(got.Windows); n == 0 || !got.Windows[n-1].WindowEnd.Equal(c.to) {
			t.Errorf("%v: windows do not end at the period's end", c)
		}
		if got.NewUsers != len(users) || total != len(users) || len(got.Users) != len(users) {
			t.Errorf("%v: %d new users (windows %d, listed %d), want %d", c, got.NewUsers, total, len(got.Users), len(users))
		}
		for _, u := range got.Users {
			if f := first[u.User].Truncate(time.Hour); !u.FirstSeen.Equal(f) {
				t.Errorf("%v: %s first seen %s, want %s", c, u.User, u.FirstSeen, f)
			}
		}
		if c.window == "day" && c.from.Equal(d(9, 1, 0)) && (got.NewUsers == 0 || got.NewUsers == len(first)) {
			t.Fatalf("the fixture should have some new and some returning users in September, got %d of %d", got.NewUsers, len(first))
		}
	}

	// Per-user detail needs usage.read_users; counts do not.
	q := "/v1/analytics/new-users?tenant=acme&from=2026-09-01T00:00:00Z&to=2026-10-01T00:00:00Z"
	if resp, body := get(t, srv.URL+q+"&users=true", "X-Deny-Users", "1"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("users without permission: %d %s", resp.StatusCode, body)
	}
	resp, body := get(t, srv.URL+q, "X-Deny-Users", "1")
	var counts stats.NewUsers
	if resp.StatusCode != 200 || json.Unmarshal(body, &counts) != nil || counts.Users != nil || counts.Window != "day" || len(counts.Windows) != 30 {
		t.Errorf("counts: %d %s", resp.StatusCode, body)
	}
	if counts.HistoryFrom != nil {
		t.Errorf("history_from %s with nothing archived", counts.HistoryFrom)
	}

	for _, bad := range []string{"?from=2026-09-01T00:00:00Z", "?tenant=acme&window=week", "?tenant=acme&from=2026-09-01T00:30:00Z&to=2026-09-02T00:00:00Z",
		"?tenant=acme&from=2026-09-02T00:00:00Z&to=2026-09-01T00:00:00Z", "?tenant=acme&from=2020-01-01T00:00:00Z&to=2026-09-01T00:00:00Z&window=hour"} {
		if resp, body := get(t, srv.URL+"/v1/analytics/new-users"+bad); resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s", bad, resp.StatusCode, body)
		}
	}

	// Once retention archived presence, the answer says from when it is complete.
	if err := st.MarkArchived(ledger.ClassRollups, d(8, 1, 0), true); err != nil {
		t.Fatal(err)
	}
	got, err := stats.NewUsersOf(context.Background(), st, "acme", d(9, 1, 0), d(10, 1, 0), "day", false)
	if err != nil {
		t.Fatal(err)
	}
	if want := d(9, 1, 0); got.HistoryFrom == nil || !reflect.DeepEqual(*got.HistoryFrom, want) {
		t.Errorf("history_from %v, want %s", got.HistoryFrom, want)
	}
}

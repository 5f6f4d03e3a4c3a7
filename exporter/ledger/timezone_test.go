package ledger

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
)

func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestTimeZoneWindows: day and month windows follow the query's zone, so a tenant in Tokyo sees
// its own days; a daylight saving change makes a 25-hour day; ungrouped reads agree; a zone whose
// days do not begin on a UTC hour is refused.
func TestTimeZoneWindows(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	// 2026-11-10 14:00 UTC is 23:00 in Tokyo (UTC+9), 15:00 UTC is midnight there: UTC's one day
	// holds two Tokyo days.
	tok := func(id string, at time.Time, n string) string {
		return ev(id, "ai.tokens", at, `{"tenant":"a","user":"u1","feature":"chat","model":"m","input_tokens":`+n+`,"output_tokens":0}`)
	}
	body := tok("1", t0.Add(14*time.Hour), "1") + tok("2", t0.Add(15*time.Hour), "10") + tok("3", t0.Add(16*time.Hour), "100") +
		// New York leaves daylight saving time on 2026-11-01 at 06:00 UTC: that day has 25 hours.
		tok("4", time.Date(2026, 11, 1, 4, 30, 0, 0, time.UTC), "1000") + // Nov 1, 00:30 EDT
		tok("5", time.Date(2026, 11, 2, 4, 30, 0, 0, time.UTC), "10000") // Nov 1, 23:30 EST
	d := &event.Decoder{Now: func() time.Time { return t0.AddDate(0, 0, 10) }}
	evs, err := d.Decode("application/x-ndjson", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, evs); err != nil {
		t.Fatal(err)
	}
	tokyo := zone(t, "Asia/Tokyo")
	q := Query{Meter: "ai_tokens", Tenant: "a", From: t0, To: t0.AddDate(0, 0, 2), Window: WindowDay, Where: map[string]string{"direction": "input"}}
	utcRows := usage(t, s, q)
	if len(utcRows) != 1 || utcRows[0].Value != 111 {
		t.Fatalf("UTC days: %+v, want one day of 111", utcRows)
	}
	q.Location = tokyo
	rows := usage(t, s, q)
	want := []struct {
		start string
		value int64
	}{{"2026-11-10T09:00:00+09:00", 1}, {"2026-11-11T00:00:00+09:00", 110}}
	if len(rows) != len(want) {
		t.Fatalf("Tokyo days: %+v", rows)
	}
	for i, w := range want {
		if got := rows[i].WindowStart.Format(time.RFC3339); got != w.start || rows[i].Value != w.value {
			t.Errorf("Tokyo row %d: %s = %d, want %s = %d", i, got, rows[i].Value, w.start, w.value)
		}
	}
	// The first window is clipped to from (09:00 Tokyo); the second ends at Tokyo's midnight.
	if got := rows[1].WindowEnd.Format(time.RFC3339); got != "2026-11-12T00:00:00+09:00" {
		t.Errorf("second Tokyo day ends %s", got)
	}
	flat, err := s.UngroupedUsage(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(flat) != 2 || flat[0].Value != 1 || flat[1].Value != 110 || !flat[1].WindowStart.Equal(rows[1].WindowStart) {
		t.Errorf("ungrouped Tokyo days: %+v", flat)
	}

	ny := zone(t, "America/New_York")
	q = Query{Meter: "ai_tokens", Tenant: "a", From: time.Date(2026, 11, 1, 4, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 3, 5, 0, 0, 0, time.UTC),
		Window: WindowDay, Location: ny, Where: map[string]string{"direction": "input"}}
	rows = usage(t, s, q)
	if len(rows) != 1 || rows[0].Value != 11000 || rows[0].WindowEnd.Sub(rows[0].WindowStart) != 25*time.Hour {
		t.Errorf("New York's 25-hour day: %+v", rows)
	}
	q.Window = WindowMonth
	q.From, q.To = time.Date(2026, 10, 1, 4, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 5, 0, 0, 0, time.UTC)
	rows = usage(t, s, q)
	if len(rows) != 1 || rows[0].WindowStart.Format(time.RFC3339) != "2026-11-01T00:00:00-04:00" || rows[0].Value != 11111 {
		t.Errorf("New York's November: %+v", rows)
	}

	// India is UTC+5:30: its days begin at half past a UTC hour, which hourly rollups cannot split.
	q = Query{Meter: "ai_tokens", Tenant: "a", From: t0, To: t0.AddDate(0, 0, 2), Window: WindowDay, Location: zone(t, "Asia/Kolkata")}
	_, err = s.Usage(ctx, q)
	var qe *QueryError
	if !errors.As(err, &qe) || qe.Field != "tz" || !strings.Contains(qe.Msg, "whole hours") {
		t.Errorf("Kolkata days: %v, want a tz error", err)
	}
	// Hour windows need no calendar: any zone does.
	q.Window = WindowHour
	if rows := usage(t, s, q); len(rows) != 3 {
		t.Errorf("Kolkata hours: %+v", rows)
	}
}

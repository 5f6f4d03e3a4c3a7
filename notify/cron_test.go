package notify

import (
	"testing"
	"time"
)

func TestCronPrev(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string, loc *time.Location) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		expr, now, want string
		loc             *time.Location
	}{
		{"0 8 * * 1", "2026-12-09 10:00", "2026-12-07 08:00", paris},       // Monday 8:00, Paris
		{"0 8 * * 1", "2026-12-07 08:00", "2026-12-07 08:00", paris},       // at the minute itself
		{"0 8 * * 1", "2026-12-07 07:59", "2026-11-30 08:00", paris},       // just before: the week before
		{"*/15 * * * *", "2026-12-06 21:44", "2026-12-06 21:30", time.UTC}, // steps
		{"30 9 1 * *", "2026-12-06 00:00", "2026-12-01 09:30", time.UTC},   // first of the month
		{"0 0 1 1 *", "2026-12-06 00:00", "2026-01-01 00:00", time.UTC},    // yearly
		{"0 12 13 * 5", "2026-12-06 13:00", "2026-12-04 12:00", time.UTC},  // day 13 OR Friday
		{"0 2 * * 0", "2026-03-30 00:00", "2026-03-22 02:00", paris},       // 2:00 does not exist on 29 March (DST): skipped
		{"0-10/5 6,18 * * 7", "2026-12-06 19:00", "2026-12-06 18:10", time.UTC},
	} {
		cr, err := ParseCron(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		got, ok := cr.Prev(at(c.now, c.loc), c.loc)
		if want := at(c.want, c.loc); !ok || !got.Equal(want) {
			t.Errorf("%s before %s: %s (%v), want %s", c.expr, c.now, got, ok, want)
		}
	}
	for _, bad := range []string{"", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *", "a * * * *", "5-1 * * * *"} {
		if _, err := ParseCron(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	never, _ := ParseCron("0 0 31 2 *")
	if _, ok := never.Prev(time.Now(), time.UTC); ok {
		t.Error("31 February found")
	}
}

package notify

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // schedules name IANA time zones; the host may have no zoneinfo
)

// Cron is a parsed five-field cron expression (minute hour day-of-month month day-of-week):
// numbers, *, ranges a-b, steps */n and a-b/n, lists. Day of week 0-7 (0 and 7: Sunday). As in
// Vixie cron, when both day fields are restricted a day matching either is a match.
type Cron struct {
	minute, hour, dom, month, dow [64]bool
	domAny, dowAny                bool
}

// ParseCron parses a cron expression.
func ParseCron(expr string) (*Cron, error) {
	f := strings.Fields(expr)
	if len(f) != 5 {
		return nil, fmt.Errorf("cron %q: want 5 fields (minute hour day-of-month month day-of-week)", expr)
	}
	c := &Cron{domAny: f[2] == "*", dowAny: f[4] == "*"}
	for i, spec := range []struct {
		set      *[64]bool
		min, max int
	}{{&c.minute, 0, 59}, {&c.hour, 0, 23}, {&c.dom, 1, 31}, {&c.month, 1, 12}, {&c.dow, 0, 7}} {
		if err := parseField(f[i], spec.min, spec.max, spec.set); err != nil {
			return nil, fmt.Errorf("cron %q field %d: %w", expr, i+1, err)
		}
	}
	if c.dow[7] {
		c.dow[0] = true
	}
	return c, nil
}

func parseField(s string, lo, hi int, set *[64]bool) error {
	for _, part := range strings.Split(s, ",") {
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 {
				return fmt.Errorf("bad step %q", part)
			}
			step = n
		}
		a, b := lo, hi
		if rng != "*" {
			from, to, isRange := strings.Cut(rng, "-")
			var err error
			if a, err = strconv.Atoi(from); err != nil {
				return fmt.Errorf("bad value %q", part)
			}
			b = a
			if isRange {
				if b, err = strconv.Atoi(to); err != nil {
					return fmt.Errorf("bad range %q", part)
				}
			} else if hasStep {
				b = hi
			}
		}
		if a < lo || b > hi || a > b {
			return fmt.Errorf("%q outside %d-%d", part, lo, hi)
		}
		for v := a; v <= b; v += step {
			set[v] = true
		}
	}
	return nil
}

func (c *Cron) dayMatches(t time.Time) bool {
	if !c.month[int(t.Month())] {
		return false
	}
	dom, dow := c.dom[t.Day()], c.dow[int(t.Weekday())]
	switch {
	case c.domAny && c.dowAny:
		return true
	case c.domAny:
		return dow
	case c.dowAny:
		return dom
	default:
		return dom || dow
	}
}

// Prev returns the latest scheduled minute at or before t, in loc; false when none within
// about five years (an expression such as 31 February).
func (c *Cron) Prev(t time.Time, loc *time.Location) (time.Time, bool) {
	t = t.In(loc)
	t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, loc)
	for range 100000 {
		switch {
		case !c.dayMatches(t):
			t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc).Add(-time.Minute)
		case !c.hour[t.Hour()]:
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), 0, 0, 0, loc).Add(-time.Minute)
		case !c.minute[t.Minute()]:
			t = t.Add(-time.Minute)
		default:
			return t, true
		}
	}
	return time.Time{}, false
}

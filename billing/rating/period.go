package rating

import (
	"fmt"
	"time"
)

// Period is a calendar month in UTC, the billing period.
type Period struct {
	Year  int
	Month time.Month
}

// ParsePeriod reads "2026-10".
func ParsePeriod(s string) (Period, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return Period{}, fmt.Errorf("period %q: want YYYY-MM", s)
	}
	return Period{Year: t.Year(), Month: t.Month()}, nil
}

// PeriodOf is the period holding t.
func PeriodOf(t time.Time) Period {
	t = t.UTC()
	return Period{Year: t.Year(), Month: t.Month()}
}

// Start is the first instant of the period.
func (p Period) Start() time.Time { return time.Date(p.Year, p.Month, 1, 0, 0, 0, 0, time.UTC) }

// End is the first instant after the period.
func (p Period) End() time.Time { return p.Start().AddDate(0, 1, 0) }

// Prev is the period before p.
func (p Period) Prev() Period { return PeriodOf(p.Start().AddDate(0, -1, 0)) }

// Next is the period after p.
func (p Period) Next() Period { return PeriodOf(p.End()) }

// Before reports whether p is earlier than q.
func (p Period) Before(q Period) bool { return p.Start().Before(q.Start()) }

func (p Period) String() string { return fmt.Sprintf("%04d-%02d", p.Year, int(p.Month)) }

// MarshalText writes "2026-10".
func (p Period) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads "2026-10".
func (p *Period) UnmarshalText(b []byte) error {
	q, err := ParsePeriod(string(b))
	*p = q
	return err
}

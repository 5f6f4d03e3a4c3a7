// Package timeparse reads the times and months users type, and says in words what was wrong
// with one, instead of Go's layout errors (`parsing time "2026-11-01" as
// "2006-01-02T15:04:05Z07:00": cannot parse "" as "T"`).
package timeparse

import (
	"errors"
	"fmt"
	"time"
)

// RFC3339 parses an RFC 3339 time; the error names the parameter and shows the expected form.
func RFC3339(name, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", name, Explain(err))
	}
	return t, nil
}

// Month parses YYYY-MM (the first instant of the month, UTC).
func Month(name, s string) (time.Time, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", name, Explain(err))
	}
	return t, nil
}

// Explain returns err with any time parse error in it told in words: the value given, the form
// wanted and an example. Other errors are returned unchanged.
func Explain(err error) error {
	var pe *time.ParseError
	if !errors.As(err, &pe) {
		return err
	}
	form, example := forms[pe.Layout], ""
	if form == "" {
		form, example = "a time", time.RFC3339
	} else {
		example = examples[pe.Layout]
	}
	why := ""
	if pe.Message != "" { // a value out of range: ": month out of range"
		why = " (" + pe.Message[2:] + ")"
	}
	return &Error{Value: pe.Value, Msg: fmt.Sprintf("%q is not %s%s; write it like %s", pe.Value, form, why, example)}
}

// Error is a value that is not a time of the wanted form.
type Error struct{ Value, Msg string }

func (e *Error) Error() string { return e.Msg }

var (
	forms = map[string]string{
		time.RFC3339:     "an RFC 3339 time (date, T, time and zone)",
		time.RFC3339Nano: "an RFC 3339 time (date, T, time and zone)",
		"2006-01":        "a month (YYYY-MM)",
		time.DateOnly:    "a date (YYYY-MM-DD)",
	}
	examples = map[string]string{
		time.RFC3339:     "2026-11-01T00:00:00Z",
		time.RFC3339Nano: "2026-11-01T00:00:00Z",
		"2006-01":        "2026-11",
		time.DateOnly:    "2026-11-01",
	}
)

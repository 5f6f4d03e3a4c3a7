package timeparse

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestErrorsAreWords(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{func() error { _, err := RFC3339("--effective", "2026-11-01"); return err }(), `--effective: "2026-11-01" is not an RFC 3339 time (date, T, time and zone); write it like 2026-11-01T00:00:00Z`},
		{func() error { _, err := RFC3339("from", "2026-13-01T00:00:00Z"); return err }(), `from: "2026-13-01T00:00:00Z" is not an RFC 3339 time (date, T, time and zone) (month out of range); write it like 2026-11-01T00:00:00Z`},
		{func() error { _, err := Month("--period", "2026-1"); return err }(), `--period: "2026-1" is not a month (YYYY-MM); write it like 2026-11`},
		{Explain(json.Unmarshal([]byte(`{"at":"yesterday"}`), &struct{ At time.Time }{})), `"yesterday" is not an RFC 3339 time`},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) || strings.Contains(c.err.Error(), "2006") {
			t.Errorf("got %v, want %q and no Go layout", c.err, c.want)
		}
	}
	if tm, err := RFC3339("at", "2026-11-01T10:00:00Z"); err != nil || !tm.Equal(time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("a good time: %v %v", tm, err)
	}
	if err := Explain(json.Unmarshal([]byte(`{`), new(any))); err == nil || strings.Contains(err.Error(), "is not") {
		t.Errorf("other errors must pass unchanged: %v", err)
	}
}

package quotastate

import "testing"

func TestOf(t *testing.T) {
	for _, c := range []struct {
		used, limit int64
		warning     float64
		state       string
		ratio       float64
	}{
		{0, 100, 0.8, OK, 0},
		{79, 100, 0.8, OK, 0.79},
		{80, 100, 0.8, Warning, 0.8},
		{100, 100, 0.8, Warning, 1}, // at the limit: not yet a breach (the rules fire above 1)
		{101, 100, 0.8, Exceeded, 1.01},
		{0, 0, 0.8, OK, 0},
		{1, 0, 0.8, Exceeded, ZeroLimitRatio}, // any usage of a zero limit
		{5, 10, 1, OK, 0.5},
		{10, 10, 1, Warning, 1},
	} {
		state, ratio := Of(c.used, c.limit, c.warning)
		if state != c.state || ratio != c.ratio {
			t.Errorf("Of(%d, %d, %v) = %s %v, want %s %v", c.used, c.limit, c.warning, state, ratio, c.state, c.ratio)
		}
	}
}

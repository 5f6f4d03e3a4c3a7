package main

import (
	"math"
	"testing"
)

func TestTheilSenIgnoresAnOutlier(t *testing.T) {
	xs := []float64{0, 1, 2, 3, 4, 5, 6}
	ys := []float64{10, 12, 14, 100, 18, 20, 22} // slope 2, one wild sample
	if got := theilSen(xs, ys); math.Abs(got-2) > 1e-9 {
		t.Fatalf("slope = %v, want 2", got)
	}
}

func TestCheckTrend(t *testing.T) {
	xs := []float64{1, 2, 3, 4, 5, 6, 7, 8}
	flat := []float64{400, 402, 399, 401, 400, 430, 400, 401} // a spike, no trend
	leak := []float64{400, 410, 420, 430, 440, 450, 460, 470} // +70 MiB over the window
	for _, c := range []struct {
		name string
		ys   []float64
		fail bool
	}{{"flat", flat, false}, {"leak", leak, true}} {
		tr, err := checkTrend(c.name, "MiB", xs, c.ys, 0.10, 32)
		if err != nil {
			t.Fatal(err)
		}
		if tr.Failed != c.fail {
			t.Errorf("%s: failed = %v, want %v (%s)", c.name, tr.Failed, c.fail, tr)
		}
	}
	// Growth above the relative tolerance but under the absolute floor passes.
	if tr, _ := checkTrend("tiny", "ms", xs, []float64{1, 1.2, 1.4, 1.6, 1.8, 2, 2.2, 2.4}, 0.5, 5); tr.Failed {
		t.Errorf("tiny growth failed: %s", tr)
	}
	if _, err := checkTrend("short", "ms", xs[:2], flat[:2], 0.5, 5); err == nil {
		t.Error("two samples were judged")
	}
}

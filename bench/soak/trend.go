package main

import (
	"fmt"
	"slices"
)

// The trend test. A soak fails when a resource keeps growing once the exporter is warm: its
// caches (the block cache, memtables, the dedupe filter's pages) fill during the first minutes,
// and only growth after that is a leak. Over the samples after the warm-up, the slope is the
// Theil–Sen estimator (the median of the slopes between every pair of samples): one slow
// minute on a shared machine (a compaction, another process) moves it much less than it moves
// a least-squares fit. The projected growth over the measured window, slope × span, fails the
// run when it exceeds both a relative tolerance (of the window's median) and an absolute floor
// (so that a flat, tiny series does not fail on noise).

// theilSen is the median pairwise slope of ys sampled at xs.
func theilSen(xs, ys []float64) float64 {
	var slopes []float64
	for i := range xs {
		for j := i + 1; j < len(xs); j++ {
			if xs[j] != xs[i] {
				slopes = append(slopes, (ys[j]-ys[i])/(xs[j]-xs[i]))
			}
		}
	}
	if len(slopes) == 0 {
		return 0
	}
	slices.Sort(slopes)
	n := len(slopes)
	if n%2 == 1 {
		return slopes[n/2]
	}
	return (slopes[n/2-1] + slopes[n/2]) / 2
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// trend is the verdict on one series.
type trend struct {
	Name      string
	Unit      string
	Slope     float64 // unit per minute
	Growth    float64 // projected over the window: slope × span
	Median    float64
	Tolerance float64 // relative, of the median
	Floor     float64 // absolute, in unit
	Failed    bool
}

// checkTrend judges ys (sampled at minutes xs) against a relative tolerance and an absolute
// floor; it needs at least three samples.
func checkTrend(name, unit string, xs, ys []float64, tolerance, floor float64) (trend, error) {
	if len(xs) < 3 {
		return trend{}, fmt.Errorf("%s: %d samples after the warm-up, the trend test needs 3: run longer or sample more often", name, len(xs))
	}
	t := trend{Name: name, Unit: unit, Slope: theilSen(xs, ys), Median: median(ys), Tolerance: tolerance, Floor: floor}
	t.Growth = t.Slope * (xs[len(xs)-1] - xs[0])
	t.Failed = t.Growth > tolerance*t.Median && t.Growth > floor
	return t, nil
}

func (t trend) String() string {
	verdict := "flat"
	if t.Failed {
		verdict = "GROWING"
	}
	return fmt.Sprintf("%-16s slope %+.3f %s/min, projected %+.2f %s over the window (median %.2f; fails above %.0f%% and %.0f %s): %s",
		t.Name, t.Slope, t.Unit, t.Growth, t.Unit, t.Median, 100*t.Tolerance, t.Floor, t.Unit, verdict)
}

// Package seriescap applies the per-metric series cap (metrics.series_limit) to the metric
// families rendered at scrape time from state that is not a ledger series: distinct active
// users per window, and the quota and plan gauges. The ledger admits its own series when it
// first writes them (exporter/ledger, persisted); these families have no such moment, so they
// are admitted here, in memory, the first time a scrape renders them.
//
// Admission is sticky: a label set admitted once stays admitted for the life of the process,
// so a series never moves between its own labels and __overflow__ from one scrape to the next
// (which would break rate() and alerts). Callers offer label sets in a stable order (sorted by
// tenant), so a restart admits the same ones given the same tenants.
package seriescap

import "sync"

// Overflow is the label value of the series that stands for the folded ones.
const Overflow = "__overflow__"

// Admission admits the label sets of scrape-time metric families under one cap per family.
type Admission struct {
	limit int

	mu       sync.Mutex
	families map[string]*family
}

type family struct {
	admitted map[string]int // key → series it stands for
	series   int            // series admitted
	folded   map[string]int // key → series folded (the most it ever stood for)
	nfolded  int            // series folded since start
}

// New returns an admission with the cap of each family: limit series (at least 1).
func New(limit int) *Admission {
	return &Admission{limit: max(limit, 1), families: map[string]*family{}}
}

// Limit is the cap of each family.
func (a *Admission) Limit() int { return a.limit }

func (a *Admission) family(metric string) *family {
	f := a.families[metric]
	if f == nil {
		f = &family{admitted: map[string]int{}, folded: map[string]int{}}
		a.families[metric] = f
	}
	return f
}

// Declare names families, so that their overflow count is exposed (as 0) before anything
// was folded.
func (a *Admission) Declare(metrics ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range metrics {
		a.family(m)
	}
}

// Admit reports whether the label set key of metric, standing for width series (a tenant's
// windows, say), has its own series; false means it is folded into __overflow__. A key
// admitted before stays admitted; a new one is admitted while the family's series stay within
// the cap. A key whose width grows past what the cap leaves is folded from then on.
func (a *Admission) Admit(metric, key string, width int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.family(metric)
	if w, ok := f.admitted[key]; ok {
		if width <= w {
			return true
		}
		if f.series+width-w <= a.limit {
			f.series += width - w
			f.admitted[key] = width
			return true
		}
		// Too wide now: fold it, and free what it held.
		delete(f.admitted, key)
		f.series -= w
	} else if _, wasFolded := f.folded[key]; !wasFolded && f.series+width <= a.limit {
		f.admitted[key] = width
		f.series += width
		return true
	}
	if width > f.folded[key] {
		f.nfolded += width - f.folded[key]
		f.folded[key] = width
	}
	return false
}

// Folded returns, per declared or admitted family, how many series were folded into
// __overflow__ since the process started (a counter: it never decreases).
func (a *Admission) Folded() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.families))
	for m, f := range a.families {
		out[m] = f.nfolded
	}
	return out
}

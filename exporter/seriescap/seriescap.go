// Package seriescap applies the per-metric series cap (metrics.series_limit) to the metric
// families rendered at scrape time from state that is not a ledger series: distinct active
// users per window, and the quota and plan gauges. The ledger admits its own series when it
// first writes them (exporter/ledger, persisted); these families have no such moment, so they
// are admitted here, in memory, the first time a scrape renders them.
//
// Admission is sticky: a label set admitted once stays admitted for the life of the process,
// and admitted sets never leave, so once a family is full every new set is folded; a series
// does not move between its own labels and __overflow__ from one scrape to the next (which
// would break rate() and alerts). Only the admitted sets are remembered (at most the cap per
// family), whatever the number of tenants. Callers offer label sets in a stable order (sorted
// by tenant), so a restart admits the same ones given the same tenants.
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
	folded   int            // the most series one scrape folded
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
		f = &family{admitted: map[string]int{}}
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
// the cap. Once the cap is reached every new key is folded, so a folded key stays folded
// without being remembered: only admitted keys (at most the cap) are kept in memory, however
// many tenants there are. A key whose width grows past what the cap leaves is folded from then
// on, and the series it held may admit another key.
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
		delete(f.admitted, key)
		f.series -= w
		return false
	}
	if f.series+width <= a.limit {
		f.admitted[key] = width
		f.series += width
		return true
	}
	return false
}

// ObserveFolded records that a scrape folded n series of metric into __overflow__.
func (a *Admission) ObserveFolded(metric string, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.family(metric)
	f.folded = max(f.folded, n)
}

// Folded returns, per family, the most series a scrape folded into __overflow__ since the
// process started: a counter (it never decreases) of the label sets kept out by the cap.
func (a *Admission) Folded() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.families))
	for m, f := range a.families {
		out[m] = f.folded
	}
	return out
}

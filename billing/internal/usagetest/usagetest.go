// Package usagetest is an in-memory rating.Usage for tests, standing in for the ledger: flow
// meters sum the points inside a window, stock meters answer the last level set before its end.
package usagetest

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

type point struct {
	t time.Time
	v int64
}

// Usage is safe for concurrent use.
type Usage struct {
	mu     sync.RWMutex
	stock  map[string]bool
	points map[string]map[string][]point // tenant → meter → points
}

// New makes an empty Usage; stock names the level meters.
func New(stock ...string) *Usage {
	u := &Usage{stock: map[string]bool{}, points: map[string]map[string][]point{}}
	for _, m := range stock {
		u.stock[m] = true
	}
	return u
}

// IsStock reports level meters (for rating.Rater.Stock).
func (u *Usage) IsStock(meter string) bool { return u.stock[meter] }

// Add records v at t: an increment for flow meters, the new level for stock meters.
func (u *Usage) Add(tenant, meter string, t time.Time, v int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := u.points[tenant]
	if m == nil {
		m = map[string][]point{}
		u.points[tenant] = m
	}
	m[meter] = append(m[meter], point{t, v})
	sort.SliceStable(m[meter], func(i, j int) bool { return m[meter][i].t.Before(m[meter][j].t) })
}

// Total implements rating.Usage.
func (u *Usage) Total(_ context.Context, tenant, meter string, from, to time.Time) (int64, error) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	var sum int64
	for _, p := range u.points[tenant][meter] {
		if !p.t.Before(to) {
			break
		}
		if u.stock[meter] {
			sum = p.v
		} else if !p.t.Before(from) {
			sum += p.v
		}
	}
	return sum, nil
}

// Tenants implements rating.Usage.
func (u *Usage) Tenants(_ context.Context, from, to time.Time) ([]string, error) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	var out []string
	for t, meters := range u.points {
		found := false
		for _, ps := range meters {
			for _, p := range ps {
				if !p.t.Before(from) && p.t.Before(to) {
					found = true
				}
			}
		}
		if found {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out, nil
}

// OpenDB opens an in-memory Pebble DB for a test, closed at its end. Pebble's informational
// messages are dropped; errors fail the test.
func OpenDB(t testing.TB) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), Logger: quiet{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

type quiet struct{ t testing.TB }

func (quiet) Infof(string, ...any)                {}
func (q quiet) Errorf(format string, args ...any) { q.t.Errorf("pebble: "+format, args...) }
func (q quiet) Fatalf(format string, args ...any) { q.t.Fatalf("pebble: "+format, args...) }

package rating

import (
	"context"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/billing/internal/usagetest"
	"github.com/usagemeter/usagemeter/billing/pricing"
)

func catalogue(t *testing.T, src string) *pricing.Catalogue {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	c, err := pricing.ParseConfig(&n)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

const twoPlans = `
currency: USD
plans:
  - name: a
    base_fee: "31.00"
    charges:
      - {meter: calls, model: per_unit, unit_price: "0.01", included: 310}
      - {meter: storage, model: package, package_size: 10, package_price: "1.00"}
  - name: b
    base_fee: "62.00"
    minimum_commitment: "200.00"
    charges:
      - {meter: calls, model: per_unit, unit_price: "0.02", included: 620}
      - {meter: storage, model: per_unit, unit_price: "0.10"}
`

// TestProration: October 2026 has 2678400 s; a change at Oct 16 00:00 gives 1296000 s on plan a
// and 1382400 s on plan b. Every amount below is worked out by hand in cents.
func TestProration(t *testing.T) {
	ctx := context.Background()
	u := usagetest.New("storage")
	oct := Period{2026, time.October}
	change := time.Date(2026, 10, 16, 0, 0, 0, 0, time.UTC)
	u.Add("t1", "calls", time.Date(2026, 10, 3, 0, 0, 0, 0, time.UTC), 200)
	u.Add("t1", "calls", time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC), 400)
	u.Add("t1", "storage", time.Date(2026, 10, 2, 0, 0, 0, 0, time.UTC), 25) // level 25 all month
	r := &Rater{Catalogue: catalogue(t, twoPlans), Usage: u, Stock: u.IsStock}
	lines, err := r.Rate(ctx, "t1", oct, []Segment{{"a", oct.Start(), change}, {"b", change, oct.End()}})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		key               string
		qty, incl, amount int64
	}{
		{"base/0/a", 1, 0, 1500},           // 3100 × 15/31
		{"usage/0/a/calls", 200, 150, 50},  // included floor(310×15/31)=150, 50 × 1c
		{"usage/0/a/storage", 25, 0, 145},  // 3 blocks × 100c × 15/31 = 145.16
		{"base/1/b", 1, 0, 3200},           // 6200 × 16/31
		{"usage/1/b/calls", 400, 320, 160}, // included floor(620×16/31)=320, 80 × 2c
		{"usage/1/b/storage", 25, 0, 129},  // 25 × 10c × 16/31 = 129.03
		{"minimum", 1, 0, 10323 - 5184},    // min 20000×16/31 = 10322.58 → 10323, minus the lines
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines: %+v", len(lines), lines)
	}
	for i, w := range want {
		l := lines[i]
		if l.Key != w.key || l.Quantity != w.qty || l.Included != w.incl || int64(l.Amount) != w.amount {
			t.Errorf("line %d = %s qty %d incl %d amount %d; want %+v", i, l.Key, l.Quantity, l.Included, l.Amount, w)
		}
	}
	if lines[0].Proration != "1296000/2678400" {
		t.Errorf("proration = %q", lines[0].Proration)
	}
	if Sum(lines) != 10323 {
		t.Errorf("total = %d, want the minimum commitment 10323", Sum(lines))
	}

	// A whole month on one plan: no proration, no top-up when usage exceeds the minimum.
	u.Add("t2", "calls", time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC), 1_000_620)
	lines, err = r.Rate(ctx, "t2", oct, []Segment{{"b", oct.Start(), oct.End()}})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 || Sum(lines) != 6200+2_000_000 || lines[1].Proration != "" {
		t.Errorf("t2 lines = %+v, total %d", lines, Sum(lines))
	}
}

func TestSegmentsMustTile(t *testing.T) {
	u := usagetest.New()
	r := &Rater{Catalogue: catalogue(t, twoPlans), Usage: u}
	oct := Period{2026, time.October}
	mid := time.Date(2026, 10, 10, 0, 0, 0, 0, time.UTC)
	for _, segs := range [][]Segment{
		nil,
		{{"a", oct.Start(), mid}},
		{{"a", oct.Start(), mid}, {"b", mid.Add(time.Hour), oct.End()}},
		{{"zzz", oct.Start(), oct.End()}},
	} {
		if _, err := r.Rate(context.Background(), "t", oct, segs); err == nil {
			t.Errorf("segments %v accepted", segs)
		}
	}
}

func TestSuggest(t *testing.T) {
	ctx := context.Background()
	u := usagetest.New()
	oct := Period{2026, time.October}
	r := &Rater{Catalogue: catalogue(t, twoPlans), Usage: u}
	// Light usage: a (31.00) is cheaper than b (minimum 200.00).
	u.Add("light", "calls", oct.Start(), 10)
	s, err := r.Suggest(ctx, "light", oct, "b")
	if err != nil || s == nil || s.Plan != "a" || s.Cost != 3100 || s.CurrentCost != 20000 || s.Saving != 16900 {
		t.Fatalf("suggestion = %+v, %v", s, err)
	}
	if s, err := r.Suggest(ctx, "light", oct, "a"); err != nil || s != nil {
		t.Fatalf("a is cheapest, got %+v, %v", s, err)
	}
	// A plan whose limits the usage exceeds is not suggested.
	limited := &Rater{Catalogue: r.Catalogue, Usage: u, Limits: func(plan string) map[string]int64 {
		if plan == "a" {
			return map[string]int64{"calls": 9}
		}
		return nil
	}}
	if s, err := limited.Suggest(ctx, "light", oct, "b"); err != nil || s != nil {
		t.Fatalf("over a's limit, got %+v, %v", s, err)
	}
	// Heavy usage: 2,000,000 calls cost 19,996.90 on a and 39,987.60 on b.
	u.Add("heavy", "calls", oct.Start(), 2_000_000)
	if s, err := r.Suggest(ctx, "heavy", oct, "b"); err != nil || s == nil || s.Plan != "a" || s.Cost != 3100+1_999_690 {
		t.Fatalf("heavy: %+v, %v", s, err)
	}
}

func TestPeriod(t *testing.T) {
	p, err := ParsePeriod("2026-12")
	if err != nil || p.Next().String() != "2027-01" || p.Prev().String() != "2026-11" {
		t.Fatalf("%v %v", p, err)
	}
	if !p.End().Equal(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("End = %v", p.End())
	}
	for _, bad := range []string{"2026-13", "2026-1", "26-10", ""} {
		if _, err := ParsePeriod(bad); err == nil {
			t.Errorf("ParsePeriod(%q) accepted", bad)
		}
	}
}

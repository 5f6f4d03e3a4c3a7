package ledger

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDimensionTotalsMatchUsage: the one-scan read of quota checks answers, for every user and
// feature and for both at once, exactly what Usage answers filtered by that dimension, including
// a user whose trailing dimension is the last of the meter's, events across hours and the edges
// of the range; stock meters are left to Usage.
func TestDimensionTotalsMatchUsage(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	var body strings.Builder
	users, features := []string{"alice", "bob", "carol"}, []string{"chat", "search"}
	n := 0
	for h := range 30 {
		for i, u := range users {
			n++
			body.WriteString(ev(fmt.Sprint(n), "ai.tokens", t0.Add(time.Duration(h)*time.Hour+time.Minute),
				fmt.Sprintf(`{"tenant":"acme","user":%q,"feature":%q,"model":"m%d","input_tokens":%d,"output_tokens":%d}`, u, features[(h+i)%2], h%3, h+i+1, i)))
		}
	}
	// Another tenant's usage is not counted.
	body.WriteString(ev("other", "ai.tokens", t0, `{"tenant":"beta","user":"alice","feature":"chat","model":"m","input_tokens":1000,"output_tokens":0}`))
	if _, err := s.Commit(ctx, decode(t, body.String())); err != nil {
		t.Fatal(err)
	}
	from, to := t0.Add(2*time.Hour), t0.Add(25*time.Hour) // a range inside the events
	want := func(dim, value string) int64 {
		var sum int64
		for _, r := range usage(t, s, Query{Meter: "ai_tokens", Tenant: "acme", From: from, To: to, Where: map[string]string{dim: value}}) {
			sum += r.Value
		}
		return sum
	}
	for _, u := range users {
		for _, f := range features {
			got, ok, err := s.DimensionTotals(ctx, "ai_tokens", "acme", from, to, map[string]string{"user": u, "feature": f})
			if err != nil || !ok {
				t.Fatalf("%s %s: %v %v", u, f, ok, err)
			}
			if got["user"] != want("user", u) || got["feature"] != want("feature", f) || got["user"] == 0 {
				t.Errorf("%s %s: got %v, want user %d feature %d", u, f, got, want("user", u), want("feature", f))
			}
		}
	}
	if got, _, _ := s.DimensionTotals(ctx, "ai_tokens", "acme", from, to, map[string]string{"user": "nobody"}); got["user"] != 0 {
		t.Errorf("a user without usage: %v", got)
	}
	if _, _, err := s.DimensionTotals(ctx, "ai_tokens", "acme", from, to, map[string]string{"colour": "x"}); err == nil {
		t.Error("a dimension the meter does not keep was accepted")
	}
	if _, ok, _ := s.DimensionTotals(ctx, "documents", "acme", from, to, map[string]string{"user": "alice"}); ok {
		t.Error("a stock meter was answered")
	}
}

func TestField(t *testing.T) {
	for _, c := range []struct {
		dims string
		i    int
		want string
	}{
		{"a\x00b\x00c", 0, "a"}, {"a\x00b\x00c", 1, "b"}, {"a\x00b\x00c", 2, "c"}, {"a\x00b", 2, ""},
		{"\x00\x00c", 1, ""}, {"a\x00b\x00", 2, ""},
	} {
		if got := string(field([]byte(c.dims), c.i)); got != c.want {
			t.Errorf("field(%q, %d) = %q, want %q", c.dims, c.i, got, c.want)
		}
	}
}

// TestDimensionSumsMatchUsage: one scan answers the month total (the in-memory month total's
// figure) and the usage of every user and every feature, as Usage grouped by each.
func TestDimensionSumsMatchUsage(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	var body strings.Builder
	for i := range 40 {
		body.WriteString(ev(fmt.Sprint(i), "ai.tokens", t0.Add(time.Duration(i)*time.Hour),
			fmt.Sprintf(`{"tenant":"acme","user":"u%d","feature":"f%d","model":"m","input_tokens":%d,"output_tokens":1}`, i%7, i%3, i)))
	}
	if _, err := s.Commit(ctx, decode(t, body.String())); err != nil {
		t.Fatal(err)
	}
	from, to := monthStart(monthOf(t0)), MonthEnd(t0)
	total, by, ok, err := s.DimensionSums(ctx, "ai_tokens", "acme", from, to, []string{"user", "feature"})
	if err != nil || !ok {
		t.Fatalf("%v %v", ok, err)
	}
	if cur, _ := s.Current("ai_tokens", "acme", t0); total != cur || total != 40*39/2+40 {
		t.Errorf("total %d, month total %d, want %d", total, cur, 40*39/2+40)
	}
	for _, dim := range []string{"user", "feature"} {
		want := map[string]int64{}
		for _, r := range usage(t, s, Query{Meter: "ai_tokens", Tenant: "acme", From: from, To: to, GroupBy: []string{dim}}) {
			want[r.Group[dim]] += r.Value
		}
		if fmt.Sprint(by[dim]) != fmt.Sprint(want) {
			t.Errorf("by %s: %v, want %v", dim, by[dim], want)
		}
	}
	if _, _, ok, _ := s.DimensionSums(ctx, "documents", "acme", from, to, []string{"user"}); ok {
		t.Error("a stock meter was answered")
	}
	if _, _, _, err := s.DimensionSums(ctx, "ai_tokens", "acme", from, to, []string{"colour"}); err == nil {
		t.Error("a dimension the meter does not keep was accepted")
	}
}

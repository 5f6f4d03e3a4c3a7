package ledger

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestFirstSeenMatchesRecomputation: the new users of random periods, read from the presence
// rollups, are exactly the users whose earliest event (recomputed from the events sent) falls in
// the period, with that event's hour.
func TestFirstSeenMatchesRecomputation(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	rng := rand.New(rand.NewPCG(7, 11))
	start := t0.Add(-4 * 24 * time.Hour) // inside the late window of decode's clock
	first := map[string]map[string]time.Time{"a": {}, "b": {}}
	var body strings.Builder
	types := []struct{ typ, data string }{
		{"user.login", `{"tenant":%q,"user":%q,"session_seconds":60}`},
		{"feature.used", `{"tenant":%q,"user":%q,"feature":"chat"}`},
		{"ai.tokens", `{"tenant":%q,"user":%q,"feature":"chat","model":"m","input_tokens":1,"output_tokens":1}`},
	}
	for i := range 3000 {
		tenant := []string{"a", "b"}[rng.IntN(2)]
		// Users join over time: user k is never active before day k/2.
		k := rng.IntN(40)
		at := start.Add(time.Duration(k)*12*time.Hour + time.Duration(rng.Int64N(int64(28*24*time.Hour-time.Duration(k)*12*time.Hour))))
		user := fmt.Sprintf("u%02d", k)
		tp := types[rng.IntN(len(types))]
		body.WriteString(ev(fmt.Sprint(i), tp.typ, at, fmt.Sprintf(tp.data, tenant, user)))
		if f, ok := first[tenant][user]; !ok || at.Before(f) {
			first[tenant][user] = at
		}
		if i%10 == 0 { // events without a user are nobody's presence
			body.WriteString(ev(fmt.Sprintf("n%d", i), "ingest.completed", at, fmt.Sprintf(`{"tenant":%q,"source":"s3","bytes":1,"records":1}`, tenant)))
		}
	}
	if _, err := s.Commit(ctx, decode(t, body.String())); err != nil {
		t.Fatal(err)
	}
	want := func(tenant string, from, to time.Time) map[string]time.Time {
		out := map[string]time.Time{}
		for u, f := range first[tenant] {
			if !f.Before(from) && f.Before(to) {
				out[u] = f.Truncate(time.Hour)
			}
		}
		return out
	}
	hours := 30 * 24
	periods := [][2]int{{0, hours}, {0, 1}, {hours - 24, hours}, {-48, 24}, {hours, hours + 48}}
	for range 40 {
		a, b := rng.IntN(hours), rng.IntN(hours)
		periods = append(periods, [2]int{min(a, b), max(a, b) + 1})
	}
	newUsers := 0
	for _, tenant := range []string{"a", "b", "nobody"} {
		for _, p := range periods {
			from, to := start.Add(time.Duration(p[0])*time.Hour), start.Add(time.Duration(p[1])*time.Hour)
			got, err := s.FirstSeen(ctx, "active_users", tenant, from, to)
			if err != nil {
				t.Fatal(err)
			}
			if w := want(tenant, from, to); !maps.Equal(got, w) {
				t.Fatalf("%s [%s, %s): %v, want %v", tenant, from, to, got, w)
			}
			newUsers += len(got)
		}
	}
	if newUsers == 0 {
		t.Fatal("no period had new users: the test data exercises nothing")
	}
}

func TestFirstSeenErrors(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	for _, c := range []struct {
		meter, tenant string
		from, to      time.Time
	}{
		{"ai_tokens", "a", t0, t0.Add(time.Hour)},
		{"active_users", "", t0, t0.Add(time.Hour)},
		{"active_users", "a", t0, t0},
		{"active_users", "a", t0.Add(time.Minute), t0.Add(time.Hour)},
	} {
		var qe *QueryError
		if _, err := s.FirstSeen(ctx, c.meter, c.tenant, c.from, c.to); !errors.As(err, &qe) {
			t.Errorf("%+v: error %v, want a QueryError", c, err)
		}
	}
}

package ledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

var allTypes = []string{"document.created", "document.deleted", "storage.measured", "ai.tokens", "ingest.completed", "user.login", "feature.used"}

// followed opens a store whose commits a Changes follows, as the exporter wires it (keeping the
// stored form of document events); no periodic flush, so that the tests decide when to flush.
func followed(t *testing.T, maxKeys int) (*Store, *Changes) {
	t.Helper()
	ch := NewChanges(maxKeys, "document.created", "document.deleted")
	s, err := Open(context.Background(), Options{Path: t.TempDir(), FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ch.Attach(s)
	return s, ch
}

// take is Take with the changes' keys.
func take(t *testing.T, ch *Changes) ([]EventKey, bool, error) {
	t.Helper()
	chs, complete, err := ch.Take(context.Background())
	if chs == nil {
		return nil, complete, err
	}
	keys := make([]EventKey, len(chs))
	for i, c := range chs {
		keys[i] = c.Key
	}
	return keys, complete, err
}

func commit(t *testing.T, s *Store, body string) Result {
	t.Helper()
	res, err := s.Commit(context.Background(), decode(t, body))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// keysOf lists the keys of every stored event, in key order.
func keysOf(t *testing.T, s *Store) []EventKey {
	t.Helper()
	var keys []EventKey
	if err := s.RawEventsOfTypesKeyed(context.Background(), time.Time{}, time.Time{}, allTypes, func(k EventKey, _ *event.Event) error {
		keys = append(keys, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

func login(id string, at time.Time) string {
	return ev(id, "user.login", at, `{"tenant":"a","user":"u1"}`)
}

func TestChangesFollowsCommits(t *testing.T) {
	ctx := context.Background()
	s, ch := followed(t, 0)
	commit(t, s, login("before", t0))
	if keys, complete, err := take(t, ch); err != nil || complete || keys != nil {
		t.Fatalf("before Start: %v %v %v, want nothing and incomplete", keys, complete, err)
	}
	if err := ch.Start(ctx); err != nil {
		t.Fatal(err)
	}
	before := keysOf(t, s)
	// Two requests, one event of the second a duplicate of an event stored before Start, and a
	// late event (older than every other): only the accepted ones are recorded.
	if res := commit(t, s, login("1", t0.Add(2*time.Hour))+login("2", t0.Add(time.Hour))); res.Accepted != 2 {
		t.Fatalf("first request: %+v", res)
	}
	if res := commit(t, s, login("before", t0)+login("3", t0.Add(-48*time.Hour))); res.Accepted != 1 || res.Duplicates != 1 {
		t.Fatalf("second request: %+v", res)
	}
	keys, complete, err := take(t, ch)
	if err != nil || !complete {
		t.Fatalf("Take: complete %v, %v", complete, err)
	}
	var want []EventKey
	for _, k := range keysOf(t, s) {
		if !slices.Contains(before, k) {
			want = append(want, k)
		}
	}
	slices.SortFunc(keys, EventKey.Compare)
	if !slices.Equal(keys, want) || len(keys) != 3 {
		t.Fatalf("recorded %v, want the 3 new events %v", keys, want)
	}
	if !keys[0].Time().Equal(t0.Add(-48 * time.Hour)) {
		t.Fatalf("the late event's key says %s", keys[0].Time())
	}
	// Flushes between Takes lose nothing: each group was recorded when it was committed.
	commit(t, s, login("4", t0))
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	commit(t, s, login("5", t0))
	if keys, complete, err := take(t, ch); err != nil || !complete || len(keys) != 2 {
		t.Fatalf("after a flush: %d keys, complete %v, %v", len(keys), complete, err)
	}
	if keys, complete, err := take(t, ch); err != nil || !complete || len(keys) != 0 {
		t.Fatalf("nothing new: %d keys, complete %v, %v", len(keys), complete, err)
	}
}

// Each change tells its event's type and tenant; only the types asked for carry the stored form,
// which decodes to the event.
func TestChangesCarryWhatReadersNeed(t *testing.T) {
	ctx := context.Background()
	s, ch := followed(t, 0)
	if err := ch.Start(ctx); err != nil {
		t.Fatal(err)
	}
	commit(t, s, login("1", t0)+ev("2", "document.created", t0.Add(time.Minute), `{"tenant":"b","user":"u1","document_id":"d1","doc_type":"pdf","bytes":100}`))
	chs, complete, err := ch.Take(ctx)
	if err != nil || !complete || len(chs) != 2 {
		t.Fatalf("Take: %v, complete %v, %v", chs, complete, err)
	}
	if c := chs[0]; c.Type != "user.login" || c.Tenant != "a" || c.Raw != nil {
		t.Errorf("login change %+v", c)
	}
	c := chs[1]
	if c.Type != "document.created" || c.Tenant != "b" || c.Raw == nil {
		t.Fatalf("document change %+v", c)
	}
	e, err := s.DecodeChange(c)
	if id, _ := e.Field("document_id"); err != nil || id != "d1" || !e.Time.Equal(t0.Add(time.Minute)) {
		t.Fatalf("DecodeChange: %+v, %v", e, err)
	}
}

func TestChangesOverflow(t *testing.T) {
	ctx := context.Background()
	s, ch := followed(t, 2)
	if err := ch.Start(ctx); err != nil {
		t.Fatal(err)
	}
	commit(t, s, login("1", t0)+login("2", t0))
	if keys, complete, err := take(t, ch); err != nil || !complete || len(keys) != 2 {
		t.Fatalf("at the limit: %d keys, complete %v, %v", len(keys), complete, err)
	}
	commit(t, s, login("3", t0)+login("4", t0)+login("5", t0))
	for range 2 { // reported until the next Start
		if keys, complete, err := take(t, ch); err != nil || complete || keys != nil {
			t.Fatalf("past the limit: %v, complete %v, %v", keys, complete, err)
		}
	}
	if err := ch.Start(ctx); err != nil {
		t.Fatal(err)
	}
	commit(t, s, login("6", t0))
	if keys, complete, err := take(t, ch); err != nil || !complete || len(keys) != 1 {
		t.Fatalf("after Start again: %d keys, complete %v, %v", len(keys), complete, err)
	}
}

// randomUsage commits AI tokens, document events and storage readings of a few tenants over a
// few days, some at the same instant, some late.
func randomUsage(t *testing.T, s *Store, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var b strings.Builder
	for i := range 600 {
		at := t0.Add(time.Duration(rng.IntN(96)) * time.Hour).Add(time.Duration(rng.IntN(60)) * time.Minute)
		tenant := []string{"a", "b", "c.d"}[rng.IntN(3)]
		user := fmt.Sprintf("u%d", rng.IntN(4))
		switch rng.IntN(4) {
		case 0:
			fmt.Fprint(&b, ev(fmt.Sprint(i), "document.created", at, fmt.Sprintf(`{"tenant":%q,"user":%q,"document_id":"d%d","doc_type":"pdf","bytes":%d}`, tenant, user, rng.IntN(20), rng.IntN(1000))))
		case 1:
			fmt.Fprint(&b, ev(fmt.Sprint(i), "storage.measured", at, fmt.Sprintf(`{"tenant":%q,"storage_class":"c%d","bytes":%d}`, tenant, rng.IntN(2), rng.IntN(5000))))
		default:
			fmt.Fprint(&b, ev(fmt.Sprint(i), "ai.tokens", at, fmt.Sprintf(`{"tenant":%q,"user":%q,"feature":"f%d","model":"m%d","input_tokens":%d,"output_tokens":%d}`, tenant, user, rng.IntN(2), rng.IntN(3), rng.IntN(100), rng.IntN(10))))
		}
	}
	commit(t, s, b.String())
}

// FlowCells, merged per group as Usage merges, answers what Usage answers for every tenant,
// whether the tenants are listed or all read.
func TestFlowCellsMatchesUsage(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	randomUsage(t, s, 1)
	tenants := []string{"a", "b", "c.d", "none"}
	for _, w := range [][2]time.Time{{t0, t0.Add(96 * time.Hour)}, {t0.Add(10 * time.Hour), t0.Add(50 * time.Hour)}, {t0.Add(-time.Hour), t0.Add(time.Hour)}} {
		for _, list := range [][]string{tenants, nil} {
			got := map[string]map[string]*meter.State{}
			err := s.FlowCells(ctx, "ai_tokens", list, w[0], w[1], []string{"model", "feature"}, func(tenant string, hour time.Time, group []byte, st meter.State) {
				if hour.Before(w[0]) || !hour.Before(w[1]) {
					t.Errorf("cell of %s outside [%s, %s)", hour, w[0], w[1])
				}
				if got[tenant] == nil {
					got[tenant] = map[string]*meter.State{}
				}
				a := got[tenant][string(group)]
				if a == nil {
					a = &meter.State{Agg: 'S'}
					got[tenant][string(group)] = a
				}
				a.Merge(st)
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, tenant := range tenants {
				rows := usage(t, s, Query{Meter: "ai_tokens", Tenant: tenant, From: w[0], To: w[1], GroupBy: []string{"model", "feature"}})
				if len(rows) != len(got[tenant]) {
					t.Fatalf("%s %v: %d groups, Usage %d", tenant, w, len(got[tenant]), len(rows))
				}
				for _, r := range rows {
					if a := got[tenant][r.Group["model"]+"\x00"+r.Group["feature"]]; a == nil || a.Value != r.Value {
						t.Fatalf("%s %v %v: %v, Usage %d", tenant, w, r.Group, a, r.Value)
					}
				}
			}
		}
	}
	for _, bad := range []struct {
		meter    string
		from     time.Time
		group    []string
		contains string
	}{
		{"documents", t0, nil, "not a flow meter"},
		{"ai_tokens", t0, []string{"colour"}, "not a dimension"},
		{"ai_tokens", t0.Add(time.Minute), nil, "hour boundaries"},
		{"nope", t0, nil, "unknown meter"},
	} {
		err := s.FlowCells(ctx, bad.meter, nil, bad.from, t0.Add(time.Hour), bad.group, func(string, time.Time, []byte, meter.State) {})
		if err == nil || !strings.Contains(err.Error(), bad.contains) {
			t.Errorf("FlowCells(%s, %v): %v, want %q", bad.meter, bad.group, err, bad.contains)
		}
	}
}

func TestStockLevelsMatchTotal(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	randomUsage(t, s, 2)
	tenants := []string{"a", "b", "c.d", "none"}
	for _, m := range []string{"document_bytes", "documents", "storage_bytes"} {
		for h := -1; h <= 98; h += 11 {
			at := t0.Add(time.Duration(h) * time.Hour)
			var got []string
			if err := s.StockLevels(ctx, m, tenants, at, func(tenant string, level int64) { got = append(got, fmt.Sprint(tenant, level)) }); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, tenant := range tenants {
				v, err := s.Total(ctx, tenant, m, at.Add(-time.Hour), at)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, fmt.Sprint(tenant, v))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s at %s: %v, Total %v", m, at, got, want)
			}
		}
	}
	if err := s.StockLevels(ctx, "ai_tokens", tenants, t0, func(string, int64) {}); err == nil {
		t.Fatal("levels of a flow meter")
	}
}

func TestLastSeenAllMatchesLastSeen(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	randomUsage(t, s, 3)
	tenants := []string{"a", "b", "c.d", "none"}
	n := 0
	if err := s.LastSeenAll(ctx, "active_users", tenants, func(tenant string, seen map[string]time.Time) {
		if tenant != tenants[n] {
			t.Fatalf("tenant %s, want %s", tenant, tenants[n])
		}
		n++
		want, err := s.LastSeen(ctx, "active_users", tenant)
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != len(want) {
			t.Fatalf("%s: %v, LastSeen %v", tenant, seen, want)
		}
		for u, at := range want {
			if !seen[u].Equal(at) {
				t.Fatalf("%s %s: %s, LastSeen %s", tenant, u, seen[u], at)
			}
		}
	}); err != nil || n != len(tenants) {
		t.Fatalf("LastSeenAll: %d tenants, %v", n, err)
	}
}

// The type filter reads the type of binary stored events without decoding them, searches JSON
// ones (an event with an extension attribute is kept as the JSON it came as).
func TestRawEventsOfTypesBothForms(t *testing.T) {
	ctx := context.Background()
	s, ch := followed(t, 0)
	if err := ch.Start(ctx); err != nil {
		t.Fatal(err)
	}
	withExtension := strings.Replace(ev("j", "document.deleted", t0, `{"tenant":"a","user":"u1","document_id":"d1","doc_type":"pdf","bytes":1}`), `"specversion"`, `"traceparent":"00-x","specversion"`, 1)
	commit(t, s, login("1", t0)+ev("2", "document.created", t0, `{"tenant":"a","user":"u1","document_id":"d1","doc_type":"pdf","bytes":1}`)+withExtension)
	var got []string
	if err := s.RawEventsOfTypes(ctx, time.Time{}, time.Time{}, []string{"document.created", "document.deleted"}, func(ev *event.Event) error {
		got = append(got, ev.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if slices.Sort(got); !slices.Equal(got, []string{"2", "j"}) {
		t.Fatalf("documents: %v", got)
	}
	keys, _, err := take(t, ch)
	if err != nil {
		t.Fatal(err)
	}
	json := 0
	for _, k := range keys {
		v, closer, err := s.db.Get(k.rawKey())
		if err != nil {
			t.Fatal(err)
		}
		if v[0] == '{' {
			json++
		}
		closer.Close()
	}
	if json != 1 {
		t.Fatalf("%d events stored as JSON, want the one with an extension", json)
	}
}

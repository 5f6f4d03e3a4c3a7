package insights

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/analytics/internal/ledgertest"
	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// pair is a fresh engine (every call scans) and an engine with an index over the same store.
type pair struct {
	st         *ledger.Store
	full, fast *Engine
	index      *Index
}

func newPair(t *testing.T) *pair {
	st, ch := ledgertest.OpenFollowed(t, RawTypes()...)
	// The clock after every instant the tests ask for: none is in the future.
	x := &Index{Store: st, Changes: ch, Now: func() time.Time { return time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC) }}
	fast := pricedEngine(t, st)
	fast.Index = x
	return &pair{st: st, full: pricedEngine(t, st), fast: fast, index: x}
}

// same runs Detect on both engines and fails unless the insights are identical.
func (p *pair) same(t *testing.T, tenants []string, at time.Time) []Insight {
	t.Helper()
	ctx := context.Background()
	// The index first: a scan flushes, and TestIndexRebuildsAfterGap needs the flush after.
	got, err := p.fast.Detect(ctx, tenants, at)
	if err != nil {
		t.Fatal(err)
	}
	want, err := p.full.Detect(ctx, tenants, at)
	if err != nil {
		t.Fatal(err)
	}
	for i := range max(len(got), len(want)) {
		var g, w []byte
		if i < len(got) {
			g, _ = json.Marshal(got[i])
		}
		if i < len(want) {
			w, _ = json.Marshal(want[i])
		}
		if string(g) != string(w) {
			t.Fatalf("at %s, tenants %v, insight %d of %d (scan: %d):\nindex %s\nscan  %s", at.Format(time.RFC3339), tenants, i, len(got), len(want), g, w)
		}
	}
	return got
}

func kinds(ins []Insight, tenant string) map[string]Insight {
	out := map[string]Insight{}
	for _, in := range ins {
		if in.Tenant == tenant {
			out[in.Kind] = in
		}
	}
	return out
}

// TestIndexFollowsCommits holds the index equal to a full recomputation through new events,
// deletions, late events inside the 35-day window and a moving instant, with one build.
func TestIndexFollowsCommits(t *testing.T) {
	p := newPair(t)
	ledgertest.Load(t, p.st, fixtureEvents()...)
	tenants := []string{"acme", "beta"}
	ins := p.same(t, tenants, at)
	if dd := kinds(ins, "acme")[KindDuplicateDocuments]; dd.Saving.Units != 2000 {
		t.Fatalf("fixture: duplicate documents %+v", dd.Saving)
	}

	// Events in the hour of at and later are not seen at at, and are seen an hour later.
	ledgertest.Load(t, p.st,
		doc("document.created", at.Add(10*time.Minute), "acme", "erin", "d7", "H2", 700),
		ingest(at.Add(20*time.Minute), "acme", "s3", "HY", 50, 5),
		ai(at.Add(30*time.Minute), "beta", "zed", "chat", "gpt-small", 1000, 0),
	)
	p.same(t, tenants, at)
	ins = p.same(t, tenants, at.Add(time.Hour))
	// d7 makes H2 a duplicate group again: 500 bytes (the smaller of 500 and 700) wasted.
	if dd := kinds(ins, "acme")[KindDuplicateDocuments]; dd.Saving.Units != 2500 {
		t.Fatalf("after d7: duplicate documents %+v", dd.Saving)
	}

	// Deletions: the largest of a group goes (its size must be found again), a document is
	// deleted twice, a never-created one is deleted, a deleted one is created again.
	now := at.Add(2 * time.Hour)
	ledgertest.Load(t, p.st,
		doc("document.deleted", now.Add(-90*time.Minute), "acme", "erin", "d7", "H2", 700),
		doc("document.deleted", now.Add(-80*time.Minute), "acme", "erin", "d7", "H2", 700),
		doc("document.deleted", now.Add(-70*time.Minute), "acme", "nobody", "zz", "", 0),
		doc("document.created", now.Add(-60*time.Minute), "acme", "carol", "d5", "H1", 1500),
	)
	p.same(t, tenants, now)

	// Late events inside the 35-day window: a copy created 20 days ago, a deletion dated before
	// its document's creation (the creation, later, still decides), repeated ingest and a
	// cheaper model serving a feature two weeks ago.
	ledgertest.Load(t, p.st,
		doc("document.created", now.Add(-20*24*time.Hour), "beta", "zed", "b1", "HB", 4000),
		doc("document.created", now.Add(-19*24*time.Hour), "beta", "zed", "b2", "HB", 4000),
		doc("document.deleted", now.Add(-21*24*time.Hour), "acme", "carol", "d5", "H1", 1500),
		ingest(now.Add(-15*24*time.Hour), "beta", "api", "HZ", 1000, 100),
		ingest(now.Add(-14*24*time.Hour), "beta", "api", "HZ", 3000, 300),
		ai(now.Add(-14*24*time.Hour), "acme", "alice", "search", "gpt-small", 100, 0),
		ai(now.Add(-13*24*time.Hour), "beta", "zed", "search", "embed-v2", 2000, 0),
	)
	ins = p.same(t, tenants, now)
	if di := kinds(ins, "beta")[KindDuplicateIngest]; di.Saving.Units != 3000 {
		t.Fatalf("late ingest: %+v", di.Saving)
	}
	if _, ok := kinds(ins, "beta")[KindDuplicateDocuments]; !ok {
		t.Fatal("late duplicate documents of beta not detected")
	}
	p.same(t, []string{"beta"}, now)

	// The instant moves on: the October ingest and tokens leave the lookback.
	for _, later := range []time.Duration{24 * time.Hour, 10 * 24 * time.Hour, 20 * 24 * time.Hour} {
		ledgertest.Load(t, p.st, ai(now.Add(later-3*time.Hour), "acme", "bob", "chat", "claude-mid", 500, 500))
		p.same(t, tenants, now.Add(later))
	}

	// An instant before the frontier is answered by scanning.
	p.same(t, tenants, at)
	s := p.index.Stats()
	if s.Builds != 1 || s.Scans != 1 || s.Updates < 8 || s.Events == 0 || s.Hours == 0 {
		t.Fatalf("index stats %+v: want one build, one scan, the rest incremental", s)
	}
}

// TestIndexRebuildsAfterOverflow: more events between two updates than its Changes records is a
// gap; the index notices and rebuilds rather than miss events.
func TestIndexRebuildsAfterOverflow(t *testing.T) {
	st, err := ledger.Open(context.Background(), ledger.Options{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ch := ledger.NewChanges(2, RawTypes()...) // at most 2 events between updates
	ch.Attach(st)
	x := &Index{Store: st, Changes: ch, Now: func() time.Time { return time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC) }}
	fast := pricedEngine(t, st)
	fast.Index = x
	p := &pair{st: st, full: pricedEngine(t, st), fast: fast, index: x}
	ledgertest.Load(t, st, fixtureEvents()...)
	tenants := []string{"acme", "beta"}
	p.same(t, tenants, at)

	// Within the limit: followed, no rebuild.
	ledgertest.Load(t, st, doc("document.created", at.Add(-time.Hour), "acme", "erin", "d8", "H1", 10))
	p.same(t, tenants, at.Add(time.Hour))
	if s := x.Stats(); s.Builds != 1 {
		t.Fatalf("builds %d before any gap", s.Builds)
	}
	ledgertest.Load(t, st,
		doc("document.deleted", at.Add(-time.Hour+time.Minute), "acme", "erin", "d8", "H1", 10),
		doc("document.created", at.Add(-time.Hour+2*time.Minute), "beta", "erin", "d9", "H2", 20),
		doc("document.created", at.Add(-time.Hour+3*time.Minute), "beta", "erin", "d10", "H2", 20))
	p.same(t, tenants, at.Add(time.Hour))
	if s := x.Stats(); s.Builds != 2 {
		t.Fatalf("builds %d after an overflow, want 2", s.Builds)
	}
}

// TestIndexRebuildsAfterRetention: retention deleting a month of raw events changes history
// behind the index's back; the archived mark makes it rebuild.
func TestIndexRebuildsAfterRetention(t *testing.T) {
	p := newPair(t)
	ctx := context.Background()
	ledgertest.Load(t, p.st, fixtureEvents()...)
	tenants := []string{"acme", "beta"}
	before := p.same(t, tenants, at)
	month := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	// The month's document and ingest events (their e/ keys), as an archive would hold them.
	var keys [][]byte
	if err := p.st.RawEventsOfTypesKeyed(ctx, month, month.AddDate(0, 1, 0), rawTypes, func(k ledger.EventKey, _ *event.Event) error {
		keys = append(keys, append([]byte("e/"), k[:]...))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.st.DeleteArchived(ctx, ledger.ClassRawEvents, month, func() ([]byte, error) {
		if len(keys) == 0 {
			return nil, ledger.ErrEnd
		}
		k := keys[0]
		keys = keys[1:]
		return k, nil
	}); err != nil {
		t.Fatal(err)
	}
	after := p.same(t, tenants, at)
	// d2 (October) is gone from the raw events: one redundant copy instead of two.
	if b, a := kinds(before, "acme")[KindDuplicateDocuments], kinds(after, "acme")[KindDuplicateDocuments]; b.Saving.Units != 2000 || a.Saving.Units != 1000 {
		t.Fatalf("duplicates before %d after %d, want 2000 then 1000", b.Saving.Units, a.Saving.Units)
	}
	if s := p.index.Stats(); s.Builds != 2 {
		t.Fatalf("builds %d, want 2", s.Builds)
	}
}

// TestIndexRandom applies random histories (documents created and deleted with colliding ids
// and hashes, events at the same instant, late events, hashed ingest, tokens of several
// models) while the clock moves, comparing the index with a full recomputation each time.
func TestIndexRandom(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			if seed%2 == 1 {
				// Token hours read again as a whole range rather than tenant by tenant.
				defer func(n int) { maxDirty = n }(maxDirty)
				maxDirty = 5
			}
			rng := rand.New(rand.NewPCG(seed, 7))
			p := newPair(t)
			tenants := []string{"t1", "t2", "t3"}
			users := []string{"u1", "u2", "u3"}
			hashes := []string{"", "A", "B", "C"}
			models := []string{"gpt-large", "claude-mid", "gpt-small", "embed-v2", "unpriced"}
			clock := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
			// Some old history: documents held for months by users idle since, deleted at random
			// later (by others), so that owners come and go.
			var evs []E
			for i := range 40 {
				evs = append(evs, doc("document.created", clock.Add(-time.Duration(100+i)*24*time.Hour), tenants[i%3], []string{"idle1", "idle2"}[i%2], fmt.Sprintf("d%d", 30+i%25), hashes[i%4], 100*(i%5)))
			}
			ledgertest.Load(t, p.st, evs...)
			for round := range 30 {
				evs = evs[:0]
				same := clock.Add(-time.Duration(rng.IntN(48)) * time.Hour)
				for range 20 + rng.IntN(40) {
					var when time.Time
					switch rng.IntN(4) {
					case 0: // late, up to 35 days
						when = clock.Add(-time.Duration(rng.Int64N(int64(35 * 24 * time.Hour))))
					case 1: // several events at one instant: ordered by arrival
						when = same
					default: // about now, up to 5 minutes ahead
						when = clock.Add(-time.Duration(rng.Int64N(int64(3*time.Hour))) + 5*time.Minute)
					}
					tn, u := tenants[rng.IntN(3)], users[rng.IntN(3)]
					switch rng.IntN(5) {
					case 0, 1:
						evs = append(evs, doc("document.created", when, tn, u, fmt.Sprintf("d%d", rng.IntN(30)), hashes[rng.IntN(4)], 100*rng.IntN(6)))
					case 2:
						evs = append(evs, doc("document.deleted", when, tn, u, fmt.Sprintf("d%d", rng.IntN(55)), "", 0))
					case 3:
						evs = append(evs, ingest(when, tn, []string{"s3", "api"}[rng.IntN(2)], hashes[rng.IntN(4)], 10*rng.IntN(5), rng.IntN(5)))
					default:
						evs = append(evs, ai(when, tn, u, []string{"chat", "search"}[rng.IntN(2)], models[rng.IntN(5)], rng.IntN(1000), rng.IntN(100)))
					}
				}
				ledgertest.Load(t, p.st, evs...)
				at := clock.Truncate(time.Hour)
				p.same(t, tenants, at)
				p.same(t, tenants[round%3:round%3+1], at)
				clock = clock.Add(time.Duration(rng.IntN(30)) * time.Hour)
			}
			if s := p.index.Stats(); s.Builds != 1 || s.Scans != 0 {
				t.Fatalf("index stats %+v: want one build and no scan", s)
			}
		})
	}
}

// TestIndexFollow: the background rounds keep the index current, so that a request finds
// nothing left to read, and its answers stay those of a full recomputation.
func TestIndexFollow(t *testing.T) {
	p := newPair(t)
	ctx := context.Background()
	now := at.Add(30 * time.Minute)
	p.index.Now = func() time.Time { return now }
	ledgertest.Load(t, p.st, fixtureEvents()...)
	if err := p.index.step(ctx); err != nil {
		t.Fatal(err)
	}
	if s := p.index.Stats(); s.Builds != 1 {
		t.Fatalf("after the first round: %+v", s)
	}
	// New and late events, applied by the next round; the hours they landed in are read again
	// only by a round that sees no more events in them.
	ledgertest.Load(t, p.st,
		doc("document.created", now.Add(-10*24*time.Hour), "beta", "zed", "b1", "HB", 4000),
		doc("document.created", now.Add(-10*24*time.Hour), "beta", "zed", "b2", "HB", 4000),
		ai(now.Add(-5*24*time.Hour), "acme", "alice", "search", "gpt-small", 100, 0),
	)
	if err := p.index.step(ctx); err != nil {
		t.Fatal(err)
	}
	if s := p.index.Stats(); s.Events != 3 || s.Hours != 0 {
		t.Fatalf("after the events: %+v", s)
	}
	if err := p.index.step(ctx); err != nil {
		t.Fatal(err)
	}
	s := p.index.Stats()
	if s.Hours == 0 {
		t.Fatalf("a quiet round read no hour again: %+v", s)
	}
	// Requests for the hour before and the current one are answered without reading anything.
	for _, when := range []time.Time{at.Add(-time.Hour), at} {
		ins := p.same(t, []string{"acme", "beta"}, when)
		if _, ok := kinds(ins, "beta")[KindDuplicateDocuments]; !ok {
			t.Fatalf("at %s: the late duplicates of beta are missing", when)
		}
	}
	if got := p.index.Stats(); got.Builds != 1 || got.Hours != s.Hours || got.Updates != 2 || got.Scans != 0 {
		t.Fatalf("requests after the rounds: %+v (before %+v)", got, s)
	}
	// A day later, a round moves the frontier to the hour before the clock: the document events
	// it passed are read from the store and applied, and the ingest jobs and token hours kept
	// follow.
	ledgertest.Load(t, p.st, doc("document.deleted", at.Add(2*time.Hour), "beta", "zed", "b2", "HB", 4000))
	now = now.Add(24 * time.Hour)
	if err := p.index.step(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.index.st; !st.frontier.Equal(at.Add(23*time.Hour)) || st.tenants["beta"].docs["b2"].live || !st.since.Equal(at.Add(23*time.Hour-30*24*time.Hour)) {
		t.Fatalf("frontier %s, since %s, b2 %+v", st.frontier, st.since, st.tenants["beta"].docs["b2"])
	}
	if _, ok := kinds(p.same(t, []string{"beta"}, at.Add(24*time.Hour)), "beta")[KindDuplicateDocuments]; ok {
		t.Fatal("beta's duplicate was deleted")
	}
	// An instant days ahead of the clock is scanned for, and leaves the frontier where it was.
	before := p.index.Stats()
	p.same(t, []string{"acme", "beta"}, now.Add(72*time.Hour))
	p.same(t, []string{"acme", "beta"}, now.Truncate(time.Hour))
	if got := p.index.Stats(); got.Scans != before.Scans+1 || got.Updates != before.Updates+1 || got.Builds != 1 {
		t.Fatalf("a request from the future: %+v (before %+v)", got, before)
	}
	// Follow returns once ctx is done, after its round.
	done, cancel := context.WithCancel(ctx)
	cancel()
	p.index.Follow(done, time.Hour)
}

// TestIndexAppliesTwice: an event both scanned by the build and recorded by Changes (committed
// between the two) is applied twice; that must change nothing.
func TestIndexAppliesTwice(t *testing.T) {
	p := newPair(t)
	ctx := context.Background()
	evs := fixtureEvents()
	evs = append(evs, ingest(at.Add(-time.Hour), "acme", "s3", "HX", 100, 10), doc("document.created", at.Add(time.Minute), "acme", "x", "d9", "H1", 5))
	ledgertest.Load(t, p.st, evs...)
	before := p.same(t, []string{"acme", "beta"}, at)
	p.index.mu.Lock()
	err := p.st.RawEventsOfTypesKeyed(ctx, time.Time{}, time.Time{}, rawTypes, p.index.st.add)
	p.index.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	after := p.same(t, []string{"acme", "beta"}, at.Add(time.Hour))
	// HX three times in the lookback, and once more an hour before at: 300 bytes again.
	if kinds(before, "acme")[KindDuplicateIngest].Saving.Units != 300 || kinds(after, "acme")[KindDuplicateIngest].Saving.Units != 300 {
		t.Fatalf("duplicate ingest before %+v after %+v", kinds(before, "acme")[KindDuplicateIngest].Saving, kinds(after, "acme")[KindDuplicateIngest].Saving)
	}
}

// TestIndexFollowConcurrent runs Follow, commits and requests at once (for the race detector);
// whatever the interleaving, the answers are a full recomputation's.
func TestIndexFollowConcurrent(t *testing.T) {
	p := newPair(t)
	p.index.Now = func() time.Time { return at.Add(30 * time.Minute) }
	ledgertest.Load(t, p.st, fixtureEvents()...)
	ctx, cancel := context.WithCancel(context.Background())
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		p.index.Follow(ctx, time.Millisecond)
	}()
	loaded := make(chan error)
	go func() {
		for i := range 20 {
			err := ledgertest.LoadErr(p.st, []E{
				doc("document.created", at.Add(-time.Duration(i)*time.Hour), "acme", "x", fmt.Sprintf("c%d", i), "H1", 10),
				ai(at.Add(-time.Duration(i)*24*time.Hour), "beta", "zed", "chat", "gpt-small", 10, 1),
			})
			if err != nil {
				loaded <- err
				return
			}
		}
		loaded <- nil
	}()
	for range 5 {
		if _, err := p.fast.Detect(context.Background(), []string{"acme", "beta"}, at); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-loaded; err != nil {
		t.Fatal(err)
	}
	cancel()
	<-followed
	p.same(t, []string{"acme", "beta"}, at)
	if s := p.index.Stats(); s.Scans != 0 || s.Updates != 6 {
		t.Fatalf("index stats %+v: every request answered from the index", s)
	}
}

// TestIndexForgetsDeletedDocuments: a deleted document's tombstone is dropped once its deletion
// is out of the late window's reach, and the answers stay those of a full recomputation before,
// during and after (a pruned document created again, late events inside the window).
func TestIndexForgetsDeletedDocuments(t *testing.T) {
	p := newPair(t)
	t0 := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	var evs []E
	for i := range 40 {
		id := fmt.Sprintf("d%d", i)
		evs = append(evs, doc("document.created", t0.Add(time.Duration(i)*time.Minute), "acme", "alice", id, fmt.Sprintf("H%d", i%4), 100*(1+i%3)))
		if i%2 == 0 {
			evs = append(evs, doc("document.deleted", t0.Add(time.Hour+time.Duration(i)*time.Minute), "acme", "bob", id, "", 0))
		}
	}
	ledgertest.Load(t, p.st, evs...)
	tenants := []string{"acme"}
	p.same(t, tenants, t0.Add(3*time.Hour))
	tombstones := func() int {
		n := 0
		for _, e := range p.index.st.tenants["acme"].docs {
			if !e.live {
				n++
			}
		}
		return n
	}
	if n := tombstones(); n != 20 {
		t.Fatalf("%d tombstones after 20 deletions, want 20", n)
	}
	// Inside the window the tombstones decide: a creation dated before its deletion changes
	// nothing.
	for day := 10; day <= 50; day += 10 {
		now := t0.Add(time.Duration(day) * 24 * time.Hour)
		late := []E{doc("document.created", now.Add(-time.Hour), "acme", "carol", fmt.Sprintf("n%d", day), "H1", 100)}
		if day < 35 {
			late = append(late, doc("document.created", t0.Add(30*time.Minute), "acme", "carol", "d0", "H0", 100))
		}
		if day == 50 {
			// Created again once forgotten: the new creation decides, as it would have anyway.
			late = append(late, doc("document.created", now.Add(-2*time.Hour), "acme", "carol", "d2", "H2", 300))
		}
		ledgertest.Load(t, p.st, late...)
		p.same(t, tenants, now)
		want := 20
		if day >= 40 { // the frontier is past t0 + 35 days + the margin + a day
			want = 0
		}
		if n := tombstones(); n != want {
			t.Fatalf("day %d: %d tombstones, want %d", day, n, want)
		}
	}
	if s := p.index.Stats(); s.Builds != 1 || s.Scans != 0 {
		t.Fatalf("index stats %+v: want one build and no scan", s)
	}
}

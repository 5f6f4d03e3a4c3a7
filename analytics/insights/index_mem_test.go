package insights

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/analytics/internal/ledgertest"
	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/simulate"
)

// feedSimulated commits the simulator's mix (200 tenants) to a followed store, batch by batch
// every 10 minutes over span of simulated time, with a round of Follow after each batch (the
// frontier an hour behind the clock). It returns the index and the number of document events.
func feedSimulated(tb testing.TB, start time.Time, span time.Duration, perBatch int) (*Index, int) {
	tb.Helper()
	ctx := context.Background()
	const every = 10 * time.Minute
	st, ch := ledgertest.OpenFollowed(tb, RawTypes()...)
	now := start
	x := &Index{Store: st, Changes: ch, Now: func() time.Time { return now }}
	gen := simulate.NewGenerator(200, 7)
	dec := &event.Decoder{MaxEvents: perBatch, Now: func() time.Time { return now }}
	docs := 0
	for ; now.Before(start.Add(span)); now = now.Add(every) {
		evs, err := dec.Decode("application/x-ndjson", gen.Batch(perBatch, now))
		if err != nil {
			tb.Fatal(err)
		}
		for i := range evs {
			if typ := evs[i].Type; typ == "document.created" || typ == "document.deleted" {
				docs++
			}
		}
		if _, err := st.Commit(ctx, evs); err != nil {
			tb.Fatal(err)
		}
		if err := x.step(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	return x, docs
}

func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// retained is the heap the index's state holds, and the part of it its maps of documents
// hold: the heap with them, less the heap once they are dropped (the store's own memory is in
// each). The state is gone afterwards.
func retained(x *Index) (all, docs float64) {
	with := heapAlloc()
	for _, t := range x.st.tenants {
		t.docs = nil
	}
	withoutDocs := heapAlloc()
	x.st = nil
	without := heapAlloc()
	return float64(int64(with) - int64(without)), float64(int64(with) - int64(withoutDocs))
}

// BenchmarkIndexMemory measures the heap the insight index retains for the simulator's mix:
// bytes per document event committed (the whole state), and per document kept (live or
// deleted: the maps of documents alone). "50days" follows 50 days of a
// light load (past the late window, so that deleted documents can be forgotten); "hour" commits
// 50 minutes of a heavy load, all of it after the frontier (an hour behind the clock). Run with
// -benchtime=1x.
func BenchmarkIndexMemory(b *testing.B) {
	start := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	b.Run("50days", func(b *testing.B) {
		for b.Loop() {
			x, docs := feedSimulated(b, start, 50*24*time.Hour, 150)
			live, kept := 0, 0
			for _, t := range x.st.tenants {
				live += int(t.sum.live)
				kept += len(t.docs)
			}
			all, docMaps := retained(x)
			b.ReportMetric(all/float64(docs), "B/docevent")
			b.ReportMetric(docMaps/float64(kept), "docmap-B/entry")
			b.ReportMetric(float64(docs), "docevents")
			b.ReportMetric(float64(live), "livedocs")
			b.ReportMetric(float64(kept-live), "tombstones")
		}
	})
	b.Run("hour", func(b *testing.B) {
		for b.Loop() {
			x, docs := feedSimulated(b, start, 50*time.Minute, 20000)
			all, _ := retained(x)
			b.ReportMetric(all/float64(docs), "B/docevent")
			b.ReportMetric(float64(docs), "docevents")
		}
	})
}

// BenchmarkIndexAdvance measures what moving the frontier over an hour costs now that the
// document events after it are read back from the store: one op reads and applies one hour of
// the simulator's mix (60,000 events, 9,000 of them document events). Report ns per event of the
// hour: at 30,000 events/s, the hourly round of Follow costs 108 million times that.
func BenchmarkIndexAdvance(b *testing.B) {
	ctx := context.Background()
	start := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	st, ch := ledgertest.OpenFollowed(b, RawTypes()...)
	now := start
	x := &Index{Store: st, Changes: ch, Now: func() time.Time { return now }}
	if err := x.step(ctx); err != nil {
		b.Fatal(err)
	}
	gen := simulate.NewGenerator(200, 7)
	dec := &event.Decoder{MaxEvents: 10000, Now: func() time.Time { return now }}
	const perHour = 60000
	for ; now.Before(start.Add(time.Hour)); now = now.Add(6 * time.Minute) {
		evs, err := dec.Decode("application/x-ndjson", gen.Batch(perHour/10, now))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Commit(ctx, evs); err != nil {
			b.Fatal(err)
		}
	}
	if err := x.step(ctx); err != nil {
		b.Fatal(err)
	}
	base := x.st
	b.ResetTimer()
	for b.Loop() {
		s := newIndexState(base.frontier, x.lookback(), base.archived)
		s.docEvents = base.docEvents
		if err := s.advance(ctx, start.Add(time.Hour), x.lookback()); err != nil {
			b.Fatal(err)
		}
		if len(s.tenants) == 0 {
			b.Fatal("the hour's document events were not applied")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/perHour, "ns/event")
}

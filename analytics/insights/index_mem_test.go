package insights

import (
	"runtime"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/simulate"
)

// feedSimulated feeds the simulator's mix (200 tenants) through an index state, batch by batch
// over span of simulated time, moving the frontier as Follow does (an hour behind the clock).
// It returns the state and the number of document events fed.
// With follow false the frontier stays before start: every document event waits in pending.
func feedSimulated(tb testing.TB, start time.Time, span time.Duration, perBatch int, follow bool) (*indexState, int) {
	tb.Helper()
	const every = 10 * time.Minute
	gen := simulate.NewGenerator(200, 7)
	var now time.Time
	dec := &event.Decoder{MaxEvents: perBatch, Now: func() time.Time { return now }}
	lookback := 30 * 24 * time.Hour
	st := newIndexState(start.Add(-time.Hour), lookback, "")
	docs := 0
	var seq uint64
	for now = start; now.Before(start.Add(span)); now = now.Add(every) {
		evs, err := dec.Decode("application/x-ndjson", gen.Batch(perBatch, now))
		if err != nil {
			tb.Fatal(err)
		}
		for i := range evs {
			ev := &evs[i]
			if ev.Type == "document.created" || ev.Type == "document.deleted" {
				docs++
			}
			seq++
			if err := st.add(simKey(ev.Time, seq), ev); err != nil {
				tb.Fatal(err)
			}
		}
		if f := now.Truncate(time.Hour).Add(-time.Hour); follow && f.After(st.frontier) {
			st.advance(f, lookback)
		}
	}
	return st, docs
}

func simKey(t time.Time, seq uint64) ledger.EventKey {
	var k ledger.EventKey
	for i := range 8 {
		k[i] = byte(uint64(t.UnixNano()) >> (56 - 8*i))
		k[8+i] = byte(seq >> (56 - 8*i))
	}
	return k
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkIndexMemory measures the heap the insight index retains for the simulator's mix:
// bytes per document event fed, per live document and per pending event. "50days" follows 50
// days of a light load (past the late window, so that deleted documents can be forgotten);
// "pending" holds two hours of a heavy load in pending (the frontier is an hour behind the clock,
// so up to two hours of document events wait there). Run with -benchtime=1x.
func BenchmarkIndexMemory(b *testing.B) {
	start := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	b.Run("50days", func(b *testing.B) {
		for b.Loop() {
			before := heapInUse()
			st, docs := feedSimulated(b, start, 50*24*time.Hour, 300, true)
			retained := float64(heapInUse() - before)
			live, kept := 0, 0
			for _, t := range st.tenants {
				live += int(t.sum.live)
				kept += len(t.docs)
			}
			b.ReportMetric(retained/float64(docs), "B/docevent")
			b.ReportMetric(retained/float64(live), "B/livedoc")
			b.ReportMetric(float64(docs), "docevents")
			b.ReportMetric(float64(live), "livedocs")
			b.ReportMetric(float64(kept-live), "tombstones")
			runtime.KeepAlive(st)
		}
	})
	b.Run("pending", func(b *testing.B) {
		for b.Loop() {
			before := heapInUse()
			st, docs := feedSimulated(b, start, 2*time.Hour, 20000, false)
			retained := float64(heapInUse() - before)
			b.ReportMetric(retained/float64(docs), "B/docevent")
			b.ReportMetric(float64(len(st.pending)), "pending")
			runtime.KeepAlive(st)
		}
	})
}

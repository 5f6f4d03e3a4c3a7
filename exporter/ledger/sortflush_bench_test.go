package ledger

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/simulate"
)

// BenchmarkSortFlush sorts the entries of one flush of 100,000 simulated events: the flusher's
// largest cost after Pebble's own.
func BenchmarkSortFlush(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Path: b.TempDir(), FlushInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	g := simulate.NewGenerator(200, 1)
	dec := &event.Decoder{}
	now := time.Now()
	var keys []string
	a := &arena{}
	for range 100 {
		evs, err := dec.Decode("application/x-ndjson", g.Batch(1000, now))
		if err != nil {
			b.Fatal(err)
		}
		for i := range evs {
			p := s.prepare(&evs[i], a)
			for _, o := range p.ops {
				if o.kind != opTotal && o.kind != opPeriod {
					keys = append(keys, o.key)
				}
			}
		}
	}
	seen := map[string]bool{}
	var es []flushEntry
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			es = append(es, flushEntry{key: k})
		}
	}
	work := make([]flushEntry, len(es))
	r := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		copy(work, es)
		r.Shuffle(len(work), func(i, j int) { work[i], work[j] = work[j], work[i] })
		b.StartTimer()
		sortFlush(work)
	}
	b.ReportMetric(float64(len(es)), "entries")
}

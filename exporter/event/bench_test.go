package event_test

import (
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/simulate"
)

func BenchmarkDecode(b *testing.B) {
	g := simulate.NewGenerator(200, 1)
	body := g.Batch(1000, time.Now())
	d := &event.Decoder{}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := d.Decode("application/x-ndjson", body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
}

package ledger

import (
	"context"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/simulate"
)

// BenchmarkCommit measures durable commits of 1,000-event batches of the simulator's mix from 8
// concurrent clients, without HTTP: the ledger's own ceiling.
func BenchmarkCommit(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, Options{Path: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	g := simulate.NewGenerator(200, 1)
	dec := &event.Decoder{}
	const batch = 1000
	batches := make([][]event.Event, 64)
	now := time.Now()
	for i := range batches {
		evs, err := dec.Decode("application/x-ndjson", g.Batch(batch, now))
		if err != nil {
			b.Fatal(err)
		}
		batches[i] = evs
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				// Fresh ids each round so that nothing is a duplicate.
				src := batches[i%len(batches)]
				evs := make([]event.Event, len(src))
				copy(evs, src)
				round := strconv.Itoa(i)
				for j := range evs {
					evs[j].ID = round + "-" + evs[j].ID
				}
				if _, err := s.Commit(ctx, evs); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
	// CPU time per event is steadier than events/s on a shared machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*batch), "cpu-ns/event")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

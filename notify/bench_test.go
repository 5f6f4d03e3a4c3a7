package notify

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// BenchmarkDispatchWebhooks: deliveries per second from the outbox to a local receiver that
// verifies every signature, each outcome recorded in a synced Pebble batch (make bench-notify).
func BenchmarkDispatchWebhooks(b *testing.B) {
	for _, workers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			rcv := newReceiver(b)
			ns := NewStore(openDB(b, b.TempDir()))
			now := time.Now()
			r, err := ns.PutRule(Rule{Tenant: "acme", Meter: "ai_tokens", Condition: Condition{Kind: CondUsageAmount, Amount: 1},
				Channels: []Channel{{Type: ChannelWebhook, URL: rcv.URL}}}, now)
			if err != nil {
				b.Fatal(err)
			}
			rcv.Trust(r.Channels[0].Secret)
			for i := range b.N {
				if _, err := ns.Fire(r, Event{RuleID: r.ID, Version: r.Version, Tenant: "acme", Meter: "ai_tokens", Period: fmt.Sprint(i), At: now}, now); err != nil {
					b.Fatal(err)
				}
			}
			d := NewDispatcher(ns, nil, testLog(b))
			d.Workers = workers
			d.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
			b.ResetTimer()
			start := time.Now()
			if _, err := d.Drain(ctxT(b)); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
			if got := len(rcv.Received()); got != b.N {
				b.Fatalf("receiver got %d, want %d", got, b.N)
			}
		})
	}
}

package simulate

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// TestBreakersShareIsFixed: the quota breakers get BreakerShare of the events in equal parts
// whatever the seed, so the local stack's alerts come at the same pace on every start (issue
// #19: the timeline depended on the weight the seed drew for tenant-0007).
func TestBreakersShareIsFixed(t *testing.T) {
	at := time.Date(2026, 12, 2, 14, 0, 0, 0, time.UTC)
	for seed := uint64(1); seed <= 4; seed++ {
		g := NewGenerator(20, seed)
		g.QuotaBreakers = map[string]bool{"tenant-0003": true, "tenant-0007": true}
		const n = 40000
		events := map[string]int{}
		tokens := map[string]int64{}
		var buf []byte
		for range n {
			buf = g.Next(buf[:0], at)
			var e struct {
				Type string `json:"type"`
				Data struct {
					Tenant      string `json:"tenant"`
					InputTokens int64  `json:"input_tokens"`
					OutTokens   int64  `json:"output_tokens"`
				} `json:"data"`
			}
			if err := json.Unmarshal(buf, &e); err != nil {
				t.Fatal(err)
			}
			events[e.Data.Tenant]++
			tokens[e.Data.Tenant] += e.Data.InputTokens + e.Data.OutTokens
		}
		for _, b := range []string{"tenant-0003", "tenant-0007"} {
			share := float64(events[b]) / n
			// Each breaker: 0.1 of the events, 60 % of them AI requests of 40 × (50..2049 + 20..819) tokens.
			perEvent := float64(tokens[b]) / float64(events[b])
			if math.Abs(share-BreakerShare/2) > 0.01 || math.Abs(perEvent-0.6*40*1444) > 0.05*0.6*40*1444 {
				t.Errorf("seed %d: %s has %.3f of the events and %.0f tokens per event, want %.2f and about %.0f", seed, b, share, perEvent, BreakerShare/2, 0.6*40*1444)
			}
		}
	}
}

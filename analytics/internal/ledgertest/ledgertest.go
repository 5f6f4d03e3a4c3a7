// Package ledgertest opens real ledgers for the analytics tests and benchmarks and fills them
// with events at any date: events are decoded with a clock set to their own time, so history
// older than the 35-day late window is loaded through the ledger's ordinary Commit path.
package ledgertest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// Open opens an empty ledger with the default meters in a temporary directory.
func Open(tb testing.TB) *ledger.Store {
	tb.Helper()
	st, err := ledger.Open(context.Background(), ledger.Options{Path: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// OpenFollowed is Open with the store's commits followed, as the exporter wires them for the
// insight index.
func OpenFollowed(tb testing.TB, rawTypes ...string) (*ledger.Store, *ledger.Changes) {
	tb.Helper()
	ch := ledger.NewChanges(0, rawTypes...)
	st, err := ledger.Open(context.Background(), ledger.Options{Path: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	ch.Attach(st)
	tb.Cleanup(func() { st.Close() })
	return st, ch
}

// Event is one event to load.
type Event struct {
	ID, Type string
	Time     time.Time
	Data     map[string]any
}

var seq atomic.Int64

// E builds an event; data alternates keys and values ("tenant", "acme", "bytes", 10, ...).
func E(typ string, at time.Time, kv ...any) Event {
	n := seq.Add(1)
	d := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		d[kv[i].(string)] = kv[i+1]
	}
	return Event{ID: fmt.Sprintf("ev-%d", n), Type: typ, Time: at, Data: d}
}

// JSON renders an event as CloudEvents JSON.
func (e Event) JSON() []byte {
	b, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": e.ID, "source": "ledgertest", "type": e.Type,
		"time": e.Time.UTC().Format(time.RFC3339Nano), "data": e.Data})
	return b
}

// Load commits events in time order, in chunks spanning at most 30 days, each decoded with the
// clock at its latest event (so every event is inside the decoder's 35-day late window).
func Load(tb testing.TB, st *ledger.Store, evs ...Event) {
	tb.Helper()
	if err := LoadErr(st, evs); err != nil {
		tb.Fatal(err)
	}
}

// LoadErr is Load returning its error.
func LoadErr(st *ledger.Store, evs []Event) error {
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	for len(evs) > 0 {
		n := 1
		for n < len(evs) && n < 5000 && evs[n].Time.Sub(evs[0].Time) <= 30*24*time.Hour {
			n++
		}
		raws := make([][]byte, n)
		for i := range n {
			raws[i] = evs[i].JSON()
		}
		if err := CommitRaw(st, evs[n-1].Time, raws); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

// CommitRaw decodes CloudEvents JSON objects with the clock at now and commits them.
func CommitRaw(st *ledger.Store, now time.Time, raws [][]byte) error {
	body := []byte{'['}
	for i, r := range raws {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, r...)
	}
	body = append(body, ']')
	dec := &event.Decoder{MaxEvents: len(raws) + 1, Now: func() time.Time { return now }}
	evs, err := dec.Decode("application/json", body)
	if err != nil {
		return fmt.Errorf("decoding test events: %w", err)
	}
	if _, err := st.Commit(context.Background(), evs); err != nil {
		return fmt.Errorf("committing test events: %w", err)
	}
	return nil
}

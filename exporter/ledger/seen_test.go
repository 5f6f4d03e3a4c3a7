package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// The filter never forgets a hash (dedupe stays exact) and rarely claims one it was not given.
func TestSeenFilter(t *testing.T) {
	const n = 1 << 20
	f := newSeenFilter(n)
	r := rand.New(rand.NewPCG(1, 2))
	hash := func() (h [16]byte) {
		for i := range h {
			h[i] = byte(r.Uint32())
		}
		return h
	}
	added := make([][16]byte, n)
	for i := range added {
		added[i] = hash()
		f.add(&added[i])
	}
	for i := range added {
		if !f.mayContain(&added[i]) {
			t.Fatalf("hash %d added but not found", i)
		}
	}
	// Filled to its 16M design size the rate is about 1.2 %; at 1M of 16M it is far lower.
	fp := 0
	for range n {
		h := hash()
		if f.mayContain(&h) {
			fp++
		}
	}
	if rate := float64(fp) / n; rate > 0.001 {
		t.Errorf("false positives %.4f%% at 1/16 of capacity", 100*rate)
	}
	full := newSeenFilter(1 << 16) // the minimum size: 16M keys
	full.blocks = full.blocks[:len(full.blocks)/16]
	for range 1 << 20 {
		h := hash()
		full.add(&h)
	}
	fp = 0
	for range n {
		h := hash()
		if full.mayContain(&h) {
			fp++
		}
	}
	if rate := float64(fp) / n; rate > 0.02 {
		t.Errorf("false positives %.2f%% at 10 bits per key, want about 1.2%%", 100*rate)
	} else {
		t.Logf("false positives at 10 bits per key: %.2f%%", 100*rate)
	}
}

// sortFlush orders keys exactly as bytes.Compare does, including keys that tie on their padded
// prefix.
func TestSortFlush(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var keys []string
	for range 5000 {
		n := r.IntN(80)
		b := make([]byte, n)
		for i := range b {
			b[i] = "r/\x00\x00ab"[r.IntN(6)]
		}
		keys = append(keys, string(b))
	}
	keys = append(keys, "r/a", "r/a\x00", "r/a\x00\x00", "")
	var entries []flushEntry
	for _, k := range keys {
		entries = append(entries, flushEntry{key: k})
	}
	order := sortFlush(entries)
	if len(order) != len(entries) {
		t.Fatalf("%d entries in the order, want %d", len(order), len(entries))
	}
	seen := make([]bool, len(entries))
	for i, r := range order {
		e := r.i
		if seen[e] {
			t.Fatalf("entry %d twice in the order", e)
		}
		seen[e] = true
		if i > 0 && entries[order[i-1].i].key > entries[e].key {
			t.Fatalf("%q sorted before %q", entries[order[i-1].i].key, entries[e].key)
		}
	}
}

// The dedupe hash is on disk (d/ keys): it must stay SHA-256(source, NUL, id), first 16 bytes,
// however it is computed.
func TestDedupeHashIsStable(t *testing.T) {
	long := strings.Repeat("x", 300) // past the stack buffer
	for _, c := range [][2]string{{"svc", "e1"}, {"", ""}, {"a\x00b", "c"}, {long, long}} {
		sum := sha256.Sum256([]byte(c[0] + "\x00" + c[1]))
		if got := dedupeHash(c[0], c[1]); !bytes.Equal(got[:], sum[:16]) {
			t.Errorf("dedupeHash(%q, %q) = %x, want %x", c[0], c[1], got, sum[:16])
		}
	}
	if got := fmt.Sprintf("%x", dedupeHash("svc", "e1")); got != fmt.Sprintf("%x", sha256.Sum256([]byte("svc\x00e1")))[:32] {
		t.Errorf("got %s", got)
	}
}

// sortByHash sorts exactly as a comparison sort, whatever the size, with ties in the top bits
// and in the first word, and leaves no event referenced from its spare buffer.
func TestSortByHash(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var gb groupBuffers
	for _, n := range []int{0, 1, 63, 64, 65, 1000, 4096, 8000} {
		for _, ties := range []bool{false, true} {
			in := make([]sortedPrepared, n)
			for i := range in {
				in[i] = sortedPrepared{k: [2]uint64{r.Uint64(), r.Uint64()}, p: &prepared{}}
				if ties && i > 0 && r.IntN(4) == 0 {
					in[i].k[0] = in[r.IntN(i)].k[0]
				}
			}
			want := slices.Clone(in)
			slices.SortFunc(want, compareSorted)
			got := gb.sortByHash(slices.Clone(in))
			if len(got) != n {
				t.Fatalf("n=%d: %d out", n, len(got))
			}
			for i := range got {
				if got[i].k != want[i].k || got[i].p != want[i].p {
					t.Fatalf("n=%d ties=%v: position %d holds %x, want %x", n, ties, i, got[i].k, want[i].k)
				}
			}
			for _, sp := range gb.spare[:cap(gb.spare)] {
				if sp.p != nil && n >= 64 {
					t.Fatalf("n=%d: the spare buffer keeps an event", n)
				}
			}
		}
	}
}

// The pending table stores key lengths in 16 bits: the longest key a valid config and valid
// events can make (meter.MaxDimensions values of event.MaxLabelBytes, the longest tenant and
// meter name) must fit, with room to spare.
func TestKeyBound(t *testing.T) {
	var dims []string
	fields := []event.Field{}
	long := strings.Repeat("é", event.MaxLabelBytes/2) // 256 bytes of UTF-8
	for i := range meter.MaxDimensions {
		name := fmt.Sprintf("d%02d_%s", i, strings.Repeat("x", 59))
		dims = append(dims, name)
		fields = append(fields, event.Field{Name: name, Value: long})
	}
	name := "m" + strings.Repeat("x", 62)
	defs := []meter.Def{
		{Name: name, Kind: meter.Flow, Aggregation: meter.Sum, Dimensions: dims,
			Events: []meter.Binding{{Type: "com.example.wide", Value: "n"}},
			Metric: &meter.Metric{Name: "usage_wide_total", Type: "counter", Labels: dims}},
		{Name: "u" + strings.Repeat("x", 62), Kind: meter.Stock, Aggregation: meter.UniqueCount, Dimensions: dims,
			Events: []meter.Binding{{Type: "com.example.wide", Value: dims[0]}}},
	}
	for i := range defs {
		if err := defs[i].Validate(); err != nil {
			t.Fatalf("meter %d: %v", i, err)
		}
	}
	s, err := Open(context.Background(), Options{Path: t.TempDir(), Meters: defs, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev := event.Event{ID: "1", Source: "s", Type: "com.example.wide", Time: time.Now(),
		Tenant: strings.Repeat("t", 128), Fields: fields, Quantities: []event.Quantity{{Name: "n", Value: 1}}}
	p := s.prepare(&ev, nil)
	if len(p.ops) == 0 {
		t.Fatal("no ops")
	}
	longest := 0
	for _, o := range p.ops {
		longest = max(longest, len(o.key))
	}
	if longest > 16<<10 {
		t.Fatalf("longest key %d bytes; the pending table needs well under 64 KiB", longest)
	}
	t.Logf("longest key: %d bytes", longest)
}

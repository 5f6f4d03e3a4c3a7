package ledger

import (
	"context"
	"encoding/binary"
	"time"
)

// seenFilter is a Bloom filter over every stored dedupe hash. Almost every ingested event is
// new, and the filter proves it without a store lookup; only a "maybe" (a duplicate or a false
// positive, about 1 %) pays for a Pebble Get. It has no false negatives, so dedupe stays exact.
// Only the writer goroutine touches it (and Open, before the writer starts).
type seenFilter struct {
	bits []uint64
	m    uint64 // number of bits
	n    uint64 // keys added
}

const seenHashes = 7 // ~1 % false positives at 10 bits per key

func newSeenFilter(expected uint64) *seenFilter {
	expected = max(expected, 1<<24) // room for 16M events before the false-positive rate rises
	m := (expected*10 + 63) &^ 63
	return &seenFilter{bits: make([]uint64, m/64), m: m}
}

// The dedupe hash is uniformly random (SHA-256), so its halves serve as the two base hashes.
func (f *seenFilter) positions(h *[16]byte, fn func(word uint64, bit uint64) bool) bool {
	h1 := binary.LittleEndian.Uint64(h[0:8])
	h2 := binary.LittleEndian.Uint64(h[8:16]) | 1
	for i := uint64(0); i < seenHashes; i++ {
		p := (h1 + i*h2) % f.m
		if !fn(p/64, p%64) {
			return false
		}
	}
	return true
}

func (f *seenFilter) add(h *[16]byte) {
	f.positions(h, func(w, b uint64) bool { f.bits[w] |= 1 << b; return true })
	f.n++
}

func (f *seenFilter) mayContain(h *[16]byte) bool {
	return f.positions(h, func(w, b uint64) bool { return f.bits[w]&(1<<b) != 0 })
}

// loadSeen builds the filter from the stored dedupe keys.
func (s *Store) loadSeen(ctx context.Context) error {
	var count uint64
	if err := s.scanKeys(ctx, []byte(pDedupe), func([]byte) { count++ }); err != nil {
		return err
	}
	f := newSeenFilter(2 * count)
	start := time.Now()
	var h [16]byte
	err := s.scanKeys(ctx, []byte(pDedupe), func(k []byte) {
		copy(h[:], k[len(pDedupe):])
		f.add(&h)
	})
	if err != nil {
		return err
	}
	if count > 1_000_000 {
		s.log.Info("dedupe filter loaded", "events", count, "took", time.Since(start).Round(time.Millisecond))
	}
	s.seen = f
	return nil
}

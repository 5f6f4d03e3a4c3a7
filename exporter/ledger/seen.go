package ledger

import (
	"context"
	"encoding/binary"
	"time"
)

// seenFilter is a Bloom filter over every stored dedupe hash. Almost every ingested event is
// new, and the filter proves it without a store lookup; only a "maybe" (a duplicate or a false
// positive, about 1 %) pays for a Pebble Get. It has no false negatives, so dedupe stays exact.
// It is blocked: the bits of one hash all fall in one 64-byte cache line, so a check or an add
// costs one cache miss instead of seven across a filter of tens of megabytes. Only the writer
// goroutine touches it (and Open, before the writer starts).
type seenFilter struct {
	blocks [][8]uint64 // 512 bits each
	n      uint64      // keys added
}

const seenHashes = 7 // ~1.2 % false positives at 10 bits per key, blocked; 7 × 9 bits of the hash

func newSeenFilter(expected uint64) *seenFilter {
	expected = max(expected, 1<<24) // room for 16M events before the false-positive rate rises
	return &seenFilter{blocks: make([][8]uint64, (expected*10+511)/512)}
}

// The dedupe hash is uniformly random (SHA-256): its first half picks the block, its second the
// bits within it, nine bits at a time.
func (f *seenFilter) block(h *[16]byte) (*[8]uint64, uint64) {
	b := &f.blocks[binary.LittleEndian.Uint64(h[0:8])%uint64(len(f.blocks))]
	return b, binary.LittleEndian.Uint64(h[8:16])
}

func (f *seenFilter) add(h *[16]byte) {
	b, bits := f.block(h)
	for range seenHashes {
		p := bits & 511
		b[p/64] |= 1 << (p % 64)
		bits >>= 9
	}
	f.n++
}

func (f *seenFilter) mayContain(h *[16]byte) bool {
	b, bits := f.block(h)
	for range seenHashes {
		p := bits & 511
		if b[p/64]&(1<<(p%64)) == 0 {
			return false
		}
		bits >>= 9
	}
	return true
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

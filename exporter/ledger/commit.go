package ledger

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/exporter/meter"
)

// The group commit. One writer goroutine takes every request queued at that moment and, in one
// pass each:
//  1. dedupes their events (within the group, then the Bloom filter, then the store);
//  2. resolves the metric series the accepted events change, admitting new ones under the cap;
//  3. writes raw events, dedupe keys, admissions and a journal entry in one batch, fsynced;
//  4. only then applies the derived changes: totals and period totals to the mirror, rollups,
//     presence and activity to the pending state flushed every FlushInterval (pending.go).
// Each op is routed by its kind, once: there is no per-group map to fold first.

// groupBuffers are reused from one group to the next; writer goroutine only.
type groupBuffers struct {
	accepted []*prepared
	inGroup  map[[16]byte]struct{}
	journal  []byte
	newSer   map[keyHash]*Series
	sorted   []sortedPrepared
	spare    []sortedPrepared // sortByHash's output
	counts   []int32
	admitted map[string]int
}

func (s *Store) commitGroup(group []*commitReq) {
	if group = s.refuseAfterFailedMark(group); len(group) == 0 {
		return
	}
	start := time.Now()
	gb := &s.gbuf
	clear(gb.inGroup)
	acc := gb.accepted[:0]
	results := make([]Result, len(group))
	err := func() (err error) {
		defer recoverInto(&err, "committing a group")
		if err := s.space.check(groupBytes(group)); err != nil {
			return err
		}
		var dk [18]byte
		copy(dk[:], pDedupe)
		for ri, r := range group {
			for i := range r.events {
				p := &r.events[i]
				if _, dup := gb.inGroup[p.hash]; dup {
					results[ri].Duplicates++
					continue
				}
				gb.inGroup[p.hash] = struct{}{}
				if s.seen.mayContain(&p.hash) {
					copy(dk[2:], p.hash[:])
					_, closer, err := s.db.Get(dk[:])
					if err == nil {
						closer.Close()
						results[ri].Duplicates++
						continue
					}
					if !errors.Is(err, pebble.ErrNotFound) {
						return fmt.Errorf("dedupe lookup: %w", err)
					}
				}
				// The sequence number is given here, in commit order, not when the request was
				// prepared: requests may reach the writer in another order than they were
				// prepared in. Two events at the same instant are then in key order (the order
				// in which Verify and Rebuild derive them again) as they are in commit order (the
				// order in which this ledger and the journal replay apply them), so a "latest"
				// settles their tie the same way in both.
				putU64(p.evKey[10:], s.eventSeq)
				s.eventSeq++
				results[ri].Accepted++
				acc = append(acc, p)
			}
		}
		marks := groupMarks(group)
		if len(acc) == 0 {
			return s.writeMarks(marks)
		}
		return s.commitAccepted(acc, marks)
	}()
	defer func() {
		clear(acc) // do not keep the requests alive until the next group
		gb.accepted = acc[:0]
	}()
	if err != nil {
		if !errors.Is(err, ErrInsufficientStorage) && !errors.Is(err, ErrWriteFailed) {
			// The guard logs its own refusals, throttled.
			s.log.Error("ledger commit failed; the group is refused", "err", err, "events", len(acc))
		}
		s.markFailed(group)
		for _, r := range group {
			r.done <- commitDone{err: fmt.Errorf("storing %d events: %w", len(r.events), err)}
		}
		return
	}
	for _, p := range acc {
		s.seen.add(&p.hash)
	}
	if s.opts.OnCommit != nil {
		s.opts.OnCommit(time.Since(start), len(acc))
	}
	for i, r := range group {
		r.done <- commitDone{res: results[i]}
	}
}

// commitAccepted durably writes the accepted events of a group, then applies their derived
// changes. Nothing is applied if the commit fails.
func (s *Store) commitAccepted(acc []*prepared, marks []Mark) error {
	b := s.db.NewBatchWithSize(len(acc) * 256)
	defer b.Close()
	s.resolveSeries(acc, b)

	// The memtable is a skiplist: keys inserted in order reuse the previous insert's position
	// instead of searching from the top, so the batch is written sorted.
	// The group is left in event-key order (time, then arrival), the order in which a rebuild
	// derives events again: a "latest" of two events at the same instant must agree.
	// Both sorts compare keys copied next to the pointers: the prepared events lie all over the
	// requests' memory.
	gb := &s.gbuf
	sorted := gb.sorted[:0]
	for _, p := range acc {
		sorted = append(sorted, sortedPrepared{k: [2]uint64{getU64(p.hash[0:]), getU64(p.hash[8:])}, p: p})
	}
	sorted = gb.sortByHash(sorted)
	var dk [18]byte
	copy(dk[:], pDedupe)
	for _, sp := range sorted {
		copy(dk[2:], sp.p.hash[:])
		if err := b.Set(dk[:], sp.p.evKey[:], nil); err != nil {
			return err
		}
	}
	for i, p := range acc {
		sorted[i] = sortedPrepared{k: [2]uint64{getU64(p.evKey[2:]), getU64(p.evKey[10:])}, p: p}
	}
	slices.SortFunc(sorted, compareSorted)
	for i := range sorted {
		acc[i] = sorted[i].p
		sorted[i].p = nil // do not keep the requests alive until the next group
	}
	gb.sorted = sorted[:0]
	journal := gb.journal[:0]
	for _, p := range acc {
		if err := b.Set(p.evKey[:], p.raw, nil); err != nil {
			return err
		}
		journal = append(journal, p.evKey[:]...)
	}
	gb.journal = journal
	seq := s.groupSeq + 1
	if err := b.Set(journalKey(seq), journal, nil); err != nil {
		return err
	}
	acked := s.ackedEvents + uint64(len(acc))
	if err := b.Set(keyAcked, binary.BigEndian.AppendUint64(nil, acked), nil); err != nil {
		return err
	}
	if err := setMarks(b, marks); err != nil {
		return err
	}
	if err := s.commitBatch(b, pebble.Sync); err != nil {
		return err
	}
	s.groupSeq, s.ackedEvents = seq, acked
	if err := s.watermark.set(seq, acked, false); err != nil {
		// The group is durable; only the check of a damaged log at the next start is weaker.
		s.log.Warn("recording the last acknowledged group", "err", err)
	}
	s.applyCommitted(acc, seq)
	if c := s.changes.Load(); c != nil {
		c.committed(seq, acc)
	}
	return nil
}

// commitBatch commits b. Pebble cannot go on after a failed write (see space.go): the store
// then refuses every later write, and a panic of Pebble's is that failure too.
func (s *Store) commitBatch(b *pebble.Batch, opt *pebble.WriteOptions) (err error) {
	if err := s.space.failed(); err != nil {
		return fmt.Errorf("%w (%v)", ErrWriteFailed, err)
	}
	defer func() {
		if err != nil {
			s.space.fail(err)
			err = fmt.Errorf("%w: %w", ErrWriteFailed, err)
		}
	}()
	defer recoverInto(&err, "writing to the store")
	return b.Commit(opt)
}

// groupBytes estimates what committing a group adds to the disk: each raw event twice (the
// write-ahead log, then a table), and its keys.
func groupBytes(group []*commitReq) int64 {
	var n int64
	for _, r := range group {
		for i := range r.events {
			n += 2*int64(len(r.events[i].raw)) + 128
		}
	}
	return n
}

// sortedPrepared is an event of a group with the key it is sorted by: its dedupe hash, or its
// event key (time, then arrival), both unique within a group.
type sortedPrepared struct {
	k [2]uint64
	p *prepared
}

func compareSorted(a, b sortedPrepared) int {
	if c := cmp.Compare(a.k[0], b.k[0]); c != 0 {
		return c
	}
	return cmp.Compare(a.k[1], b.k[1])
}

func getU64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// sortByHash sorts a group's events by dedupe hash, in linear time: the hashes are uniform, so
// placing each by its top bits among about as many buckets as events leaves a few per bucket,
// and an insertion sort finishes. (A comparison sort of the thousands of events of a group was a
// good part of the writer's time.) The result is in one of the two buffers gb keeps.
func (gb *groupBuffers) sortByHash(src []sortedPrepared) []sortedPrepared {
	if len(src) < 64 {
		slices.SortFunc(src, compareSorted)
		return src
	}
	shift := 64 - bits.Len(uint(len(src)))
	nb := 1<<(64-shift) + 1
	if cap(gb.counts) < nb {
		gb.counts = make([]int32, nb)
	}
	counts := gb.counts[:nb]
	clear(counts)
	for i := range src {
		counts[src[i].k[0]>>shift+1]++
	}
	for b := 1; b < nb; b++ {
		counts[b] += counts[b-1]
	}
	if cap(gb.spare) < len(src) {
		gb.spare = make([]sortedPrepared, len(src))
	}
	dst := gb.spare[:len(src)]
	for i := range src {
		b := src[i].k[0] >> shift
		dst[counts[b]] = src[i]
		counts[b]++
	}
	for i := 1; i < len(dst); i++ {
		for j := i; j > 0 && compareSorted(dst[j-1], dst[j]) > 0; j-- {
			dst[j-1], dst[j] = dst[j], dst[j-1]
		}
	}
	clear(src) // do not keep the requests alive
	gb.spare = src[:0]
	return dst
}

// resolveSeries points every total op at its mirror series. Series seen for the first time are
// admitted under the metric's cap or folded into __overflow__, and the decision is written in
// the same batch, so that it survives restarts and counters never move between a series and
// __overflow__. The new series enter the mirror only after the commit (applyCommitted). Only the
// writer changes the mirror, so it reads it here without the lock.
func (s *Store) resolveSeries(acc []*prepared, b *pebble.Batch) {
	gb := &s.gbuf
	clear(gb.newSer)
	clear(gb.admitted)
	for _, p := range acc {
		for i := range p.ops {
			o := &p.ops[i]
			if o.kind != opTotal {
				continue
			}
			if ser := s.mirror.series[o.h]; ser != nil {
				o.ser = ser
				continue
			}
			if ser := gb.newSer[o.h]; ser != nil {
				o.ser = ser
				continue
			}
			key := strings.Clone(o.key) // the mirror outlives the request's arena
			ser := s.parseSeries(key)
			if ser == nil {
				continue // not reachable: prepare only builds keys of configured meters
			}
			ser.Admitted = true
			ser.State = meter.State{Agg: s.byName[ser.Meter.Name].tag}
			if ser.Meter.Metric != nil {
				name := ser.Meter.Metric.Name
				if s.mirror.admitted[name]+gb.admitted[name] < s.opts.SeriesLimit {
					gb.admitted[name]++
					_ = b.Set([]byte(pAdmit+name+sep+o.key), []byte(o.key), nil)
				} else {
					ser.Admitted = false
				}
			}
			ser.key = key
			gb.newSer[o.h] = ser
			o.ser = ser
		}
	}
}

// applyCommitted applies a committed group's derived changes: to the mirror under its lock
// (scrapes and quota checks see them at once), then to the pending state.
func (s *Store) applyCommitted(acc []*prepared, seq uint64) {
	gb := &s.gbuf
	m := &s.mirror
	s.mu.Lock()
	for h, ser := range gb.newSer {
		m.add(h, ser)
	}
	for _, p := range acc {
		for i := range p.ops {
			o := &p.ops[i]
			switch o.kind {
			case opTotal:
				ser := o.ser
				if ser == nil {
					continue
				}
				ser.State.Merge(o.state)
				if !ser.dirty {
					ser.dirty = true
					m.dirtySeries = append(m.dirtySeries, ser)
				}
				o.ser = nil // the request's events may outlive the mirror (Rebuild)
			case opPeriod:
				if periodMonth(o.key) < m.periodsFrom {
					continue // merged in the store below
				}
				pt := m.period(o.h, o.key, o.state.Agg)
				pt.state.Merge(o.state)
				if !pt.dirty {
					pt.dirty = true
					m.dirtyPeriods = append(m.dirtyPeriods, pt)
				}
			case opActive:
				m.touch(o.key[len(pActive):], o.state.Value)
			}
		}
	}
	s.mu.Unlock()

	pd := &s.pending
	for _, p := range acc {
		for i := range p.ops {
			o := &p.ops[i]
			switch o.kind {
			case opRollup, opActive:
				pd.merge(o.h, o.key, o.state)
			case opUnique:
				pd.present(o.h, o.key)
			case opPeriod:
				if periodMonth(o.key) < s.mirror.periodsFrom {
					pd.merge(o.h, o.key, o.state)
				}
			}
		}
	}
	pd.lastGroup = seq
}

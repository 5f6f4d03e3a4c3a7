package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Deferred derivation. Deriving rollups, totals and activity costs about twice as much as storing
// the event itself when every group commit writes its own merge operands: most rollup cells are
// per user and hour, so they barely fold within one group, and compaction pays for each operand
// again. So a group commit durably writes only the raw events, their dedupe keys and a journal
// entry listing them; the derived changes are applied to the in-memory mirror at once (metrics
// and quotas stay immediate), and rollups, presence and activity are folded in memory across
// groups. Every FlushInterval one batch writes them, the totals and period totals that changed
// (whole, from the mirror), and a checkpoint naming the last journal entry they include. After a
// crash, Open replays the journal entries past the checkpoint from the raw events; the
// checkpoint and the flushed changes are written atomically, so nothing is applied twice.
// Every read of the derived keys (usage queries, month totals) flushes first, so answers stay
// exact.

const pJournal = "j/"

var keyCheckpoint = []byte(pMeta + "checkpoint")

// pendingState is the derived changes folded since the last flush, one slot per key, in an
// open-addressing hash table of its own rather than a map: every group folds thousands of
// changes into a few hundred thousand keys at random, so each fold is a cache miss, and a slot
// here holds the key's hash and state together (a Go map took two or three misses: control
// word, slot, then the state it pointed to). The keys are copied into a slab of their own, so
// the table holds no pointer for the garbage collector to scan, and the requests' memory is
// not kept until the flush.
type pendingState struct {
	slots     []pendingSlot // a power of two long, at most half full
	n         int           // slots in use
	keys      []byte        // the keys of the slots, one after the other
	lastGroup uint64        // the last journal entry folded in
}

// pendingSlot is a slot of pendingState; kind 0 (flushNone) marks it empty.
type pendingSlot struct {
	h      keyHash
	st     meter.State
	keyOff uint32 // the key is keys[keyOff:keyOff+keyLen]
	keyLen uint16
	kind   flushKind
}

const minPendingSlots = 1 << 12

func newPending() pendingState {
	return pendingState{slots: make([]pendingSlot, minPendingSlots)}
}

// flushEntry is one key of a flush: a merge operand, a Set of a whole state, or an empty Set for
// presence.
type flushEntry struct {
	key  string
	st   meter.State
	kind flushKind
}

type flushKind uint8

const (
	flushNone flushKind = iota
	flushMerge
	flushSet
	flushPresence
)

// slot returns the slot of h: its own, or the empty one where it goes.
func (p *pendingState) slot(h keyHash) *pendingSlot {
	mask := uint64(len(p.slots) - 1)
	for i := h[0] & mask; ; i = (i + 1) & mask {
		if s := &p.slots[i]; s.kind == flushNone || s.h == h {
			return s
		}
	}
}

// merge folds a merge operand into the key's entry.
func (p *pendingState) merge(h keyHash, key string, st meter.State) {
	sl := p.slot(h)
	if sl.kind != flushNone {
		sl.st.Merge(st)
		return
	}
	*sl = pendingSlot{h: h, st: st, kind: flushMerge}
	p.added(sl, key)
}

// present records a presence key (an empty Set).
func (p *pendingState) present(h keyHash, key string) {
	if sl := p.slot(h); sl.kind == flushNone {
		*sl = pendingSlot{h: h, kind: flushPresence}
		p.added(sl, key)
	}
}

// added stores the key of a new slot and counts it, and doubles the table past half full.
func (p *pendingState) added(sl *pendingSlot, key string) {
	// Keys are at most a few KiB (meter.MaxDimensions values of at most event.MaxLabelBytes,
	// TestKeyBound), and the slab is flushed at maxPendingKeys keys, far below 4 GiB.
	sl.keyOff, sl.keyLen = uint32(len(p.keys)), uint16(len(key))
	p.keys = append(p.keys, key...)
	if p.n++; 2*p.n <= len(p.slots) {
		return
	}
	old := p.slots
	p.slots = make([]pendingSlot, 2*len(old))
	for i := range old {
		if old[i].kind != flushNone {
			*p.slot(old[i].h) = old[i]
		}
	}
}

// take returns the pending changes as flush entries, with room for extra more, and empties the
// table. The entries' keys point into the slab, which goes with them. The table keeps its size,
// unless it is far larger than it was needed this time: refilling it from small every interval
// would rehash it over and over as it grows.
func (p *pendingState) take(extra int) []flushEntry {
	entries := make([]flushEntry, 0, p.n+extra)
	keys := p.keys
	for i := range p.slots {
		if sl := &p.slots[i]; sl.kind != flushNone {
			var key string
			if sl.keyLen > 0 {
				key = unsafe.String(&keys[sl.keyOff], int(sl.keyLen))
			}
			entries = append(entries, flushEntry{key: key, st: sl.st, kind: sl.kind})
		}
	}
	if size := len(p.slots); size > minPendingSlots && 8*p.n < size {
		p.slots = make([]pendingSlot, size/2)
	} else {
		clear(p.slots)
	}
	p.n = 0
	p.keys = make([]byte, 0, len(keys)+len(keys)/4)
	return entries
}

func (p *pendingState) size() int { return p.n }

// prefixWords is how many 8-byte words of a key sortFlush copies next to it. Keys start with
// <prefix><meter>\0<tenant>\0 (about 24 bytes), which ties in most comparisons; 64 bytes reach
// the hour and the dimensions, which decide nearly all of them.
const prefixWords = 8

// sortRec is a flush entry's place in the sort: its key's first bytes, big-endian, zero-padded.
type sortRec struct {
	pre [prefixWords]uint64
	i   int32
}

// sortFlush returns a flush's entries' places in key order (sortRec.i). The keys lie all over the heap, and
// comparing them directly costs two cache misses per comparison; their first bytes, copied into
// small records once, decide nearly every comparison without reading the keys, and the records
// move in the sort instead of the entries. Zero padding can tie a short key with a longer one,
// so ties compare the keys themselves.
func sortFlush(es []flushEntry) []sortRec {
	recs := make([]sortRec, len(es))
	for i := range es {
		var b [8 * prefixWords]byte
		copy(b[:], es[i].key)
		r := &recs[i]
		for w := range r.pre {
			r.pre[w] = binary.BigEndian.Uint64(b[8*w:])
		}
		r.i = int32(i)
	}
	slices.SortFunc(recs, func(a, b sortRec) int {
		for i := range a.pre {
			if a.pre[i] != b.pre[i] {
				if a.pre[i] < b.pre[i] {
					return -1
				}
				return 1
			}
		}
		return strings.Compare(es[a.i].key, es[b.i].key)
	})
	return recs
}

func journalKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(pJournal), seq)
}

// A flush is split in two. The writer goroutine takes a snapshot (startFlush): the pending keys,
// and copies of the totals that changed, which it goes on changing; then it goes back to
// committing. The flusher goroutine sorts the snapshot and writes it with its checkpoint
// (writeFlush). Flushes are written one at a time, in order, and a failed one is retried before
// any later one, so that a checkpoint never covers changes that are not written.

// flushJob is one flush handed to the flusher goroutine.
type flushJob struct {
	entries []flushEntry
	seq     uint64 // the last journal entry the job covers
	sync    bool
	done    chan error // the outcome of its first attempt
}

// startFlush snapshots the pending derived changes and hands them to the flusher; it blocks only
// while the previous flush is still being written. Writer goroutine only. The returned channel
// receives the outcome.
func (s *Store) startFlush(sync bool) chan error {
	job := s.snapshotFlush(sync)
	s.flushes <- job
	return job.done
}

// snapshotFlush takes the pending derived changes and the changed totals as a flush job, and
// empties the pending state. Writer goroutine (or no writer running).
func (s *Store) snapshotFlush(sync bool) *flushJob {
	job := &flushJob{seq: s.pending.lastGroup, sync: sync, done: make(chan error, 1)}
	m := &s.mirror
	if s.pending.size()+len(m.dirtySeries)+len(m.dirtyPeriods) > 0 {
		entries := s.pending.take(len(m.dirtySeries) + len(m.dirtyPeriods))
		// Totals are written whole, as the mirror holds them after the groups through seq: a Set
		// rather than one more merge operand to compact away. The dirty flags are the writer's.
		for _, ser := range m.dirtySeries {
			entries = append(entries, flushEntry{key: ser.key, st: ser.State, kind: flushSet})
			ser.dirty = false
		}
		for _, pt := range m.dirtyPeriods {
			entries = append(entries, flushEntry{key: pt.key, st: pt.state, kind: flushSet})
			pt.dirty = false
		}
		m.dirtySeries, m.dirtyPeriods = m.dirtySeries[:0], m.dirtyPeriods[:0]
		job.entries = entries
	}
	return job
}

// flusher writes the flushes handed to it, in order, until the channel closes.
func (s *Store) flusher() {
	defer close(s.flusherDone)
	var queue []*flushJob // the first failed (or is being written), the rest wait for it
	for job := range s.flushes {
		queue = append(queue, job)
		for len(queue) > 0 {
			err := s.writeFlush(queue[0])
			select {
			case queue[0].done <- err:
			default: // told already (a retry)
			}
			if err != nil {
				if !errors.Is(err, ErrWriteFailed) { // logged once by the guard
					s.log.Error("flushing derived usage failed; the journal keeps the events, retrying at the next flush", "err", err)
				}
				break
			}
			queue[0] = nil
			queue = queue[1:]
		}
	}
}

// writeFlush writes a flush with its checkpoint and drops the journal entries it covers. It need
// not fsync: if the batch is lost, so is the journal's deletion, and the replay covers it; the
// next synced commit makes it durable.
func (s *Store) writeFlush(job *flushJob) error {
	if len(job.entries) == 0 {
		return nil
	}
	if err := s.space.failed(); err != nil {
		// The journal keeps the events; the replay at the next start derives them.
		return fmt.Errorf("%w (%v)", ErrWriteFailed, err)
	}
	start := time.Now()
	// In key order, as in commitAccepted: the memtable inserts them several times faster.
	order := sortFlush(job.entries)
	b := s.db.NewBatchWithSize(len(job.entries) * 64)
	defer b.Close()
	var buf []byte
	for _, r := range order {
		e := &job.entries[r.i]
		buf = buf[:0]
		if e.kind != flushPresence {
			buf = e.st.Append(buf)
		}
		var op *pebble.DeferredBatchOp
		if e.kind == flushMerge {
			op = b.MergeDeferred(len(e.key), len(buf))
		} else {
			op = b.SetDeferred(len(e.key), len(buf))
		}
		copy(op.Key, e.key)
		copy(op.Value, buf)
		if err := op.Finish(); err != nil {
			return err
		}
	}
	if err := b.Set(keyCheckpoint, binary.BigEndian.AppendUint64(nil, job.seq), nil); err != nil {
		return err
	}
	if err := b.DeleteRange([]byte(pJournal), journalKey(job.seq+1), nil); err != nil {
		return err
	}
	opt := pebble.NoSync
	if job.sync {
		opt = pebble.Sync
	}
	if err := s.commitBatch(b, opt); err != nil {
		return fmt.Errorf("flushing derived usage: %w", err)
	}
	s.log.Debug("flushed derived usage", "keys", len(job.entries), "through_group", job.seq, "took", time.Since(start))
	return nil
}

// Flush makes every committed event's derived changes durable and readable from the store. Reads
// of rollups and month totals call it first.
func (s *Store) Flush(ctx context.Context) error {
	reply := make(chan chan error, 1)
	select {
	case s.flushReqs <- reply:
	case <-s.stopped:
		return nil // the writer flushed everything when it stopped
	case <-ctx.Done():
		return ctx.Err()
	}
	var done chan error
	select {
	case done = <-reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// replayJournal derives again the events of the journal entries past the checkpoint: the groups
// committed after the last flush before a crash. It runs in Open, after the mirror is loaded and
// before the writer starts. It derives whole groups in batches of about replayBatch events, each
// written with its checkpoint, so that memory stays bounded and a crash during the replay
// resumes after the last batch written.
func (s *Store) replayJournal(ctx context.Context) error {
	cp, err := s.getUint(keyCheckpoint)
	if err != nil {
		return err
	}
	start := time.Now()
	batch := s.newDeriveBatch()
	last, events := cp, 0
	// The iterator reads the journal as it was when it opened: the batches' deletions of the
	// entries they cover do not disturb it.
	err = s.scan(ctx, []byte(pJournal), func(k, v []byte) error {
		seq := binary.BigEndian.Uint64(k[len(pJournal):])
		if seq <= cp {
			return nil // covered by the checkpoint; its deletion was not yet compacted away
		}
		if len(v)%len(prepared{}.evKey) != 0 {
			return fmt.Errorf("journal entry %d has %d bytes", seq, len(v))
		}
		for i := 0; i < len(v); i += len(prepared{}.evKey) {
			evKey := v[i : i+len(prepared{}.evKey)]
			raw, closer, err := s.db.Get(evKey)
			if err != nil {
				return fmt.Errorf("journal entry %d names event %x: %w", seq, evKey, err)
			}
			ev, err := s.decoder.DecodeStored(raw, eventTime(evKey))
			closer.Close()
			if err != nil {
				return fmt.Errorf("journaled event %x: %w", evKey, err)
			}
			batch.add(&ev, evKey)
		}
		last = seq
		events += len(v) / len(prepared{}.evKey)
		if batch.full() { // whole groups only: the checkpoint says seq is done
			return batch.derive(seq)
		}
		return nil
	})
	if err == nil {
		err = batch.derive(last)
	}
	if err != nil {
		return fmt.Errorf("replaying the journal: %w", err)
	}
	s.groupSeq = last
	if last != cp {
		s.log.Info("replayed journaled events after an unclean stop", "events", events, "groups", last-cp, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// deriveBatch collects events derived again (journal replay, rebuild) and applies them by
// batches of about replayBatch through deriveAgain; the keys of a batch share an arena, as a
// request's do.
type deriveBatch struct {
	s   *Store
	acc []*prepared
	a   *arena
}

func (s *Store) newDeriveBatch() *deriveBatch { return &deriveBatch{s: s, a: &arena{}} }

// add prepares a stored event under its event key.
func (d *deriveBatch) add(ev *event.Event, evKey []byte) {
	p := d.s.prepare(ev, d.a)
	copy(p.evKey[:], evKey)
	d.acc = append(d.acc, &p)
}

func (d *deriveBatch) full() bool { return len(d.acc) >= replayBatch }

// derive applies the batch, checkpointed at group seq, and empties it.
func (d *deriveBatch) derive(seq uint64) error {
	if len(d.acc) == 0 {
		return nil
	}
	err := d.s.deriveAgain(d.acc, seq)
	clear(d.acc)
	d.acc, d.a = d.acc[:0], &arena{}
	return err
}

// replayBatch is about how many events a journal replay or a rebuild derives at a time (a var
// for tests): about 70 MB of prepared events, and as much folding as a 5 s flush at 10k events/s.
var replayBatch = 50000

// deriveAgain applies events derived again from the raw events (journal replay, rebuild) through
// the commit path's own steps: series admissions, then the mirror and the pending state; then it
// writes them as a flush with its checkpoint at group seq. The writer must not be committing.
func (s *Store) deriveAgain(acc []*prepared, seq uint64) error {
	b := s.db.NewBatch()
	defer b.Close()
	s.resolveSeries(acc, b)
	if err := s.commitBatch(b, pebble.Sync); err != nil {
		return fmt.Errorf("admitting series: %w", err)
	}
	s.applyCommitted(acc, seq)
	return s.writeFlush(s.snapshotFlush(true))
}

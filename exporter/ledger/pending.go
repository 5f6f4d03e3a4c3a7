package ledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

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

type pendingState struct {
	merges    map[string]*meter.State // pointing into states
	sets      map[string]struct{}
	states    []meter.State // a slab: one allocation per 4,096 new keys, not one per key
	lastGroup uint64        // the last journal entry folded in
}

func newPending() pendingState {
	return pendingState{merges: map[string]*meter.State{}, sets: map[string]struct{}{}}
}

// flushEntry is one key of a flush: a merge operand, a Set of a whole state, or (st nil) an empty
// Set for presence.
type flushEntry struct {
	pre   [3]uint64 // the key's first 24 bytes, big-endian, zero-padded (see sortFlush)
	key   string
	st    *meter.State
	merge bool
}

// sortFlush sorts a flush's entries by key. The keys lie all over the heap, and comparing them
// directly costs two cache misses per comparison; their first bytes, copied next to each entry
// once, decide many comparisons without reading the keys. Zero padding can tie a short key with a
// longer one, so ties compare the keys themselves.
func sortFlush(es []flushEntry) {
	for i := range es {
		var b [24]byte
		copy(b[:], es[i].key)
		es[i].pre = [3]uint64{binary.BigEndian.Uint64(b[0:]), binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint64(b[16:])}
	}
	slices.SortFunc(es, func(a, b flushEntry) int {
		for i := range a.pre {
			if a.pre[i] != b.pre[i] {
				if a.pre[i] < b.pre[i] {
					return -1
				}
				return 1
			}
		}
		return strings.Compare(a.key, b.key)
	})
}

func (p *pendingState) merge(key string, st meter.State) {
	if cur, ok := p.merges[key]; ok {
		cur.Merge(st)
		return
	}
	if len(p.states) == cap(p.states) {
		p.states = make([]meter.State, 0, 4096)
	}
	p.states = append(p.states, st)
	p.merges[key] = &p.states[len(p.states)-1]
}

// reset empties the state after a flush. The maps keep their buckets: refilling them from empty
// every interval would rehash them over and over as they grow.
func (p *pendingState) reset() {
	clear(p.merges)
	clear(p.sets)
	p.states = nil
}

func (p *pendingState) size() int { return len(p.merges) + len(p.sets) }

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
	if n := s.pending.size() + len(m.dirtySeries) + len(m.dirtyPeriods); n > 0 {
		entries := make([]flushEntry, 0, n)
		for k, st := range s.pending.merges {
			entries = append(entries, flushEntry{key: k, st: st, merge: true})
		}
		for k := range s.pending.sets {
			entries = append(entries, flushEntry{key: k})
		}
		// Totals are written whole, as the mirror holds them after the groups through seq: a Set
		// rather than one more merge operand to compact away. The dirty flags are the writer's.
		states := make([]meter.State, 0, len(m.dirtySeries)+len(m.dirtyPeriods))
		for _, ser := range m.dirtySeries {
			states = append(states, ser.State)
			entries = append(entries, flushEntry{key: ser.key, st: &states[len(states)-1]})
			ser.dirty = false
		}
		for _, pt := range m.dirtyPeriods {
			states = append(states, pt.state)
			entries = append(entries, flushEntry{key: pt.key, st: &states[len(states)-1]})
			pt.dirty = false
		}
		m.dirtySeries, m.dirtyPeriods = m.dirtySeries[:0], m.dirtyPeriods[:0]
		s.pending.reset() // the entries keep the states they point to
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
				s.log.Error("flushing derived usage failed; the journal keeps the events, retrying at the next flush", "err", err)
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
	start := time.Now()
	// In key order, as in commitAccepted: the memtable inserts them several times faster.
	sortFlush(job.entries)
	b := s.db.NewBatchWithSize(len(job.entries) * 64)
	defer b.Close()
	var buf []byte
	for _, e := range job.entries {
		buf = buf[:0]
		if e.st != nil {
			buf = e.st.Append(buf)
		}
		var op *pebble.DeferredBatchOp
		if e.merge {
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
	if err := b.Commit(opt); err != nil {
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
// before the writer starts.
func (s *Store) replayJournal(ctx context.Context) error {
	cp, err := s.getUint(keyCheckpoint)
	if err != nil {
		return err
	}
	var acc []*prepared
	last := cp
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
			p := s.prepare(&ev, 0, nil)
			copy(p.evKey[:], evKey)
			acc = append(acc, &p)
		}
		last = seq
		return nil
	})
	if err != nil {
		return fmt.Errorf("replaying the journal: %w", err)
	}
	s.groupSeq = last
	if last == cp {
		return nil
	}
	s.log.Info("replaying journaled events after an unclean stop", "events", len(acc), "groups", last-cp)
	// The flush's checkpoint (last) and its deletion of the journal go with the derived changes.
	return s.deriveAgain(acc, last)
}

// deriveAgain applies events derived again from the raw events (journal replay, rebuild) through
// the commit path's own steps: series admissions, then the mirror and the pending state; then it
// writes them as a flush with its checkpoint at group seq. The writer must not be committing.
func (s *Store) deriveAgain(acc []*prepared, seq uint64) error {
	b := s.db.NewBatch()
	defer b.Close()
	s.resolveSeries(acc, b)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("admitting series: %w", err)
	}
	s.applyCommitted(acc, seq)
	return s.writeFlush(s.snapshotFlush(true))
}

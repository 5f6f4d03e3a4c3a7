package ledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Deferred derivation. Deriving rollups, totals and activity costs about twice as much as storing
// the event itself when every group commit writes its own merge operands: most rollup cells are
// per user and hour, so they barely fold within one group, and compaction pays for each operand
// again. So a group commit durably writes only the raw events, their dedupe keys and a journal
// entry listing them; the derived changes are applied to the in-memory mirror at once (metrics
// and quotas stay immediate), folded in memory across groups, and flushed every FlushInterval
// in one batch together with a checkpoint naming the last journal entry they include. After a
// crash, Open replays the journal entries past the checkpoint from the raw events; the
// checkpoint and the flushed changes are written atomically, so nothing is applied twice.
// Every read of the derived keys (usage queries, month totals) flushes first, so answers stay
// exact.

const pJournal = "j/"

var keyCheckpoint = []byte(pMeta + "checkpoint")

type pendingState struct {
	merges    map[string]*meter.State
	sets      map[string]struct{}
	lastGroup uint64 // the last journal entry folded in
}

func newPending() pendingState {
	return pendingState{merges: map[string]*meter.State{}, sets: map[string]struct{}{}}
}

func (p *pendingState) size() int { return len(p.merges) + len(p.sets) }

func journalKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(pJournal), seq)
}

// foldPending adds a committed group's derived changes to the pending state.
func (s *Store) foldPending(g *groupState, seq uint64) {
	for k, st := range g.merges {
		if cur, ok := s.pending.merges[k]; ok {
			cur.Merge(*st)
		} else {
			c := *st
			s.pending.merges[k] = &c
		}
	}
	for k := range g.sets {
		s.pending.sets[k] = struct{}{}
	}
	s.pending.lastGroup = seq
}

// flushPending writes the pending derived changes with their checkpoint and drops the journal
// entries they cover. Writer goroutine only. It need not fsync: if the batch is lost, so is the
// journal's deletion, and the replay covers it; the next synced commit makes it durable.
func (s *Store) flushPending(sync bool) error {
	if s.pending.size() == 0 {
		return nil
	}
	start := time.Now()
	b := s.db.NewBatch()
	defer b.Close()
	var buf []byte
	for k, st := range s.pending.merges {
		buf = st.Append(buf[:0])
		if err := b.Merge([]byte(k), buf, nil); err != nil {
			return err
		}
	}
	for k := range s.pending.sets {
		if err := b.Set([]byte(k), nil, nil); err != nil {
			return err
		}
	}
	seq := s.pending.lastGroup
	if err := b.Set(keyCheckpoint, binary.BigEndian.AppendUint64(nil, seq), nil); err != nil {
		return err
	}
	if err := b.DeleteRange([]byte(pJournal), journalKey(seq+1), nil); err != nil {
		return err
	}
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	if err := b.Commit(opt); err != nil {
		return fmt.Errorf("flushing derived usage: %w", err)
	}
	s.log.Debug("flushed derived usage", "keys", s.pending.size(), "through_group", seq, "took", time.Since(start))
	s.pending = newPending()
	s.pending.lastGroup = seq
	return nil
}

// Flush makes every committed event's derived changes durable and readable from the store. Reads
// of rollups and month totals call it first.
func (s *Store) Flush(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case s.flushReqs <- done:
	case <-s.stopped:
		return nil // the writer flushed everything when it stopped
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
	g := newGroupState()
	last := cp
	events := 0
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
			p := s.prepare(&ev, 0)
			g.fold(&p)
			events++
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
	s.log.Info("replaying journaled events after an unclean stop", "events", events, "groups", last-cp)
	b := s.db.NewBatch()
	if err := b.Set(keyCheckpoint, binary.BigEndian.AppendUint64(nil, last), nil); err != nil {
		return err
	}
	if err := b.DeleteRange([]byte(pJournal), journalKey(last+1), nil); err != nil {
		return err
	}
	return s.writeDerived(&g, b, pebble.Sync)
}

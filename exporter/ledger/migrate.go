package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// schemaVersion is the layout of the key space. Each migration moves a store from version n-1 to
// n; they run in order at start-up.
const schemaVersion = 2

var migrations = map[uint64]func(ctx context.Context, s *Store) error{
	1: func(context.Context, *Store) error { return nil }, // the initial layout
	// m/acked: the count of events ever accepted, which verify checks the raw events against.
	2: func(ctx context.Context, s *Store) error {
		n, err := s.countRaw(ctx)
		if err != nil {
			return fmt.Errorf("counting the raw events: %w", err)
		}
		return s.db.Set(keyAcked, binary.BigEndian.AppendUint64(nil, n), pebble.Sync)
	},
}

var (
	keyVersion = []byte(pMeta + "version")
	keyMeters  = []byte(pMeta + "meters")
)

func (s *Store) migrate(ctx context.Context) error {
	if err := s.recordCreated(); err != nil {
		return err
	}
	v, err := s.getUint(keyVersion)
	if err != nil {
		return err
	}
	if v > schemaVersion {
		return fmt.Errorf("the store at %s has schema version %d, newer than this build's %d: upgrade usage-exporter", s.opts.Path, v, schemaVersion)
	}
	for v < schemaVersion {
		next := v + 1
		s.log.Info("migrating ledger schema", "from", v, "to", next)
		if err := migrations[next](ctx, s); err != nil {
			return fmt.Errorf("schema migration %d: %w", next, err)
		}
		if err := s.db.Set(keyVersion, binary.BigEndian.AppendUint64(nil, next), pebble.Sync); err != nil {
			return fmt.Errorf("recording schema version %d: %w", next, err)
		}
		v = next
	}
	// Rollups and totals derive from the raw events through the meter definitions: when the
	// definitions change, derive them again so that every answer matches the config in force.
	sig := s.meterSignature()
	old, closer, err := s.db.Get(keyMeters)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fmt.Errorf("reading meter signature: %w", err)
	default:
		same := string(old) == sig
		closer.Close()
		if same {
			return nil // nothing to write: a start on a full disk must not need space
		}
		s.log.Warn("meter definitions changed: rebuilding rollups and totals from the raw events")
		if _, err := s.Rebuild(ctx); err != nil {
			return err
		}
	}
	return s.db.Set(keyMeters, []byte(sig), pebble.Sync)
}

func (s *Store) meterSignature() string {
	b, _ := json.Marshal(struct {
		Meters  []meter.Def
		PerUser bool `json:",omitempty"`
	}{s.opts.Meters, s.opts.PerUserLabels})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (s *Store) getUint(key []byte) (uint64, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", key, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%s holds %d bytes, want 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// derived key spaces, and the journal (a rebuild derives every event, journaled or not).
var derived = []string{pRollup, pUnique, pTotal, pPeriod, pActive, pAdmit, pJournal}

// Rebuild derives rollups, totals, period totals and activity again from the raw events, and
// returns how many it read. On an open store (usagectl ledger rebuild) it runs in the writer's
// turn: commits wait for it, and no flush runs beside it.
func (s *Store) Rebuild(ctx context.Context) (int, error) {
	var n int
	err := s.exclusive(ctx, func() error {
		var err error
		n, err = s.rebuild(ctx)
		return err
	})
	return n, err
}

// rebuild is Rebuild, with nothing else changing the store: at start-up before the writer
// starts, or in the writer's turn (exclusive).
func (s *Store) rebuild(ctx context.Context) (int, error) {
	if archived, err := s.ArchivedMonths(ctx, ClassRawEvents); err != nil {
		return 0, err
	} else if len(archived) > 0 {
		return 0, fmt.Errorf("raw events of %d month(s) are archived (first %s): restore them (usagectl archive restore) before rebuilding", len(archived), archived[0].Format("2006-01"))
	}
	for _, p := range derived {
		if err := s.db.DeleteRange([]byte(p), prefixEnd([]byte(p)), pebble.Sync); err != nil {
			return 0, fmt.Errorf("clearing %s: %w", p, err)
		}
	}
	if err := s.db.Delete(keyCheckpoint, pebble.Sync); err != nil {
		return 0, fmt.Errorf("clearing the checkpoint: %w", err)
	}
	s.mu.Lock()
	s.mirror = s.newMirror()
	s.mu.Unlock()
	s.pending = newPending()
	// Group numbers go on from where they were: followers of the commits (Changes) expect the
	// next one, and the rebuilt state is checkpointed at the current group.
	seq := s.groupSeq
	n := 0
	batch := s.newDeriveBatch()
	last := time.Now()
	err := s.forEachRaw(ctx, func(key, raw []byte, ev *event.Event) error {
		batch.add(ev, key)
		n++
		if !batch.full() {
			return nil
		}
		if time.Since(last) > 5*time.Second {
			s.log.Info("rebuilding ledger", "events", n)
			last = time.Now()
		}
		return batch.derive(seq)
	})
	if err == nil {
		err = batch.derive(seq)
	}
	if err != nil {
		return n, fmt.Errorf("rebuilding from raw events: %w", err)
	}
	s.log.Info("ledger rebuilt from raw events", "events", n)
	return n, s.loadMirror(ctx)
}

// forEachRaw decodes every stored raw event in key order.
func (s *Store) forEachRaw(ctx context.Context, fn func(key, raw []byte, ev *event.Event) error) error {
	return s.scan(ctx, []byte(pEvent), func(k, v []byte) error {
		ev, err := s.decoder.DecodeStored(v, eventTime(k))
		if err != nil {
			return fmt.Errorf("stored event %x: %w", k, err)
		}
		return fn(k, v, &ev)
	})
}

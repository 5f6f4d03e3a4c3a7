package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
)

// What was acknowledged. Pebble keeps the last groups of a crashed exporter only in its
// write-ahead log, and it tolerates a log that ends early: that is what a crash in the middle of
// a write leaves. But a log that lost records which were synced and acknowledged (truncated or
// damaged after the exporter stopped) looks the same, and the exporter would start without the
// events, silently. Two records tell the difference:
//
//   - the watermark file (ledger.acked, next to the store) holds the number of the last group
//     acknowledged. It is written after each group's fsync, without one of its own: a write to
//     the page cache is kept when the process dies (kill -9, a panic), and an operating-system
//     crash can only leave it behind the log, never ahead of it. At open, a store whose last
//     group is older than the watermark has lost acknowledged groups, and refuses to start.
//   - m/acked, written in every group's batch, counts the events ever accepted; `usagectl ledger
//     verify` counts the raw events against it, so events missing from the tables (a table
//     lost or salvaged away) are found too.

const watermarkFile = "ledger.acked"

var keyAcked = []byte(pMeta + "acked")

// watermark is the open watermark file: the last group acknowledged and the events accepted
// through it; writer goroutine only.
type watermark struct {
	f   *os.File
	buf [16]byte
}

// acknowledged is what the watermark file says.
type acknowledged struct {
	group, events uint64
	known         bool // false for a new store (or one written before the watermark)
}

func openWatermark(dir string) (*watermark, acknowledged, error) {
	path := filepath.Join(dir, watermarkFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, acknowledged{}, fmt.Errorf("opening %s: %w", path, err)
	}
	w := &watermark{f: f}
	n, err := f.ReadAt(w.buf[:], 0)
	switch {
	case n == len(w.buf):
		return w, acknowledged{group: binary.BigEndian.Uint64(w.buf[:8]), events: binary.BigEndian.Uint64(w.buf[8:]), known: true}, nil
	case n == 0 && errors.Is(err, io.EOF):
		return w, acknowledged{}, nil
	default:
		f.Close()
		return nil, acknowledged{}, fmt.Errorf("reading %s: %d bytes, %v", path, n, err)
	}
}

// set records group seq, through which events were accepted, as acknowledged; sync makes it
// durable (at open and close).
func (w *watermark) set(seq, events uint64, sync bool) error {
	if w == nil {
		return nil
	}
	binary.BigEndian.PutUint64(w.buf[:8], seq)
	binary.BigEndian.PutUint64(w.buf[8:], events)
	if _, err := w.f.WriteAt(w.buf[:], 0); err != nil {
		return fmt.Errorf("writing %s: %w", w.f.Name(), err)
	}
	if sync {
		return w.f.Sync()
	}
	return nil
}

func (w *watermark) close() {
	if w != nil {
		w.f.Close()
	}
}

// lastGroup is the last group the store holds: its checkpoint, or the last journal entry past it.
func (s *Store) lastGroup(ctx context.Context) (uint64, error) {
	cp, err := s.getUint(keyCheckpoint)
	if err != nil {
		return 0, err
	}
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(pJournal), UpperBound: prefixEnd([]byte(pJournal))})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if it.Last() {
		if seq := binary.BigEndian.Uint64(it.Key()[len(pJournal):]); seq > cp {
			cp = seq
		}
	}
	return cp, it.Error()
}

// checkAcknowledged refuses a store that lost groups it acknowledged (see above); a salvage
// records the loss instead.
func (s *Store) checkAcknowledged(ctx context.Context, acked acknowledged) error {
	last, err := s.lastGroup(ctx)
	if err != nil {
		return err
	}
	if last >= acked.group {
		return nil
	}
	if s.opts.salvage != nil {
		s.opts.salvage.LostGroups = [2]uint64{last + 1, acked.group}
		return nil
	}
	// Pebble has replayed what was left of the log by now: the files to name are gone.
	return &DamagedError{Path: s.opts.Path, Err: fmt.Errorf(
		"acknowledged events are missing: the store ends at group %d, but groups up to %d were acknowledged (%s); "+
			"the write-ahead log was truncated or damaged after the exporter stopped. To keep what is intact and accept the loss, "+
			"stop every exporter on the store and run: usagectl ledger salvage --storage.path=%s",
		last, acked.group, watermarkFile, s.opts.Path)}
}

func walFiles(dir string) []string {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	return logs
}

func (s *Store) loadAcked() error {
	v, err := s.getUint(keyAcked)
	s.ackedEvents = v
	return err
}

// countRaw counts the stored raw events.
func (s *Store) countRaw(ctx context.Context) (uint64, error) {
	var n uint64
	err := s.scanKeys(ctx, []byte(pEvent), func([]byte) { n++ })
	return n, err
}

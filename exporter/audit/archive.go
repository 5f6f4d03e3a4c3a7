package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Archiving the oldest entries (retention) must not weaken verification. When entries are
// deleted after being archived, the chain keeps an anchor: the sequence number and hash of the
// last archived entry, written in the same batch as the deletions. Verify then starts from the
// anchor instead of entry 1. With an audit key, the anchor carries an HMAC, so it cannot be
// moved forward to hide the deletion of more entries; the archives hold the full chain.
var anchorKey = []byte("x/anchor")

type anchor struct {
	Seq  uint64
	Hash [32]byte
}

func encodeAnchor(key []byte, a anchor) []byte {
	b := append(binary.BigEndian.AppendUint64(nil, a.Seq), a.Hash[:]...)
	mac := chainSum(key, append([]byte("anchor\x00"), b...))
	return append(b, mac[:]...)
}

// readAnchor returns the anchor, or ok=false when nothing was ever archived.
func readAnchor(r pebble.Reader, key []byte) (a anchor, ok bool, err error) {
	v, closer, err := r.Get(anchorKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return a, false, nil
	}
	if err != nil {
		return a, false, fmt.Errorf("read audit anchor: %w", err)
	}
	defer closer.Close()
	if len(v) != 8+32+32 {
		return a, false, &TamperError{Seq: 0, Reason: fmt.Sprintf("the archive anchor has %d bytes", len(v))}
	}
	a.Seq = binary.BigEndian.Uint64(v[:8])
	copy(a.Hash[:], v[8:40])
	if !bytes.Equal(encodeAnchor(key, a), v) {
		return a, false, &TamperError{Seq: a.Seq, Reason: "the archive anchor was changed"}
	}
	return a, true, nil
}

// ExportBefore calls fn with every stored entry (key and value, as stored) from the oldest kept
// up to the last one whose time is before `before`, in order, and returns how many.
func ExportBefore(ctx context.Context, r pebble.Reader, before time.Time, fn func(k, v []byte) error) (int, error) {
	it, err := r.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: entryPrefix, UpperBound: entryEnd})
	if err != nil {
		return 0, fmt.Errorf("audit export: %w", err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		e, _, err := decode(it.Key(), it.Value())
		if err != nil {
			return n, err
		}
		// Entries are appended in time order; the first one at or after the cut ends the range,
		// so what is archived is always a prefix of the chain.
		if !e.Time.Before(before) {
			break
		}
		if err := fn(it.Key(), it.Value()); err != nil {
			return n, err
		}
		n++
	}
	return n, it.Error()
}

// DeleteArchived deletes the entries an archive holds (next yields its records, then ErrEnd),
// which must be the oldest kept entries in order, and moves the anchor to the last of them.
func DeleteArchived(ctx context.Context, db *pebble.DB, key []byte, next func() (k, v []byte, err error)) (int, error) {
	a, _, err := readAnchor(db, key)
	if err != nil {
		return 0, err
	}
	b := db.NewBatch()
	defer b.Close()
	n := 0
	for {
		k, v, err := next()
		if errors.Is(err, ErrEnd) {
			break
		}
		if err != nil {
			return 0, err
		}
		e, sum, err := decode(k, v)
		if err != nil {
			return 0, err
		}
		if e.Seq != a.Seq+1 {
			return 0, fmt.Errorf("audit archive: entry %d is not the oldest kept entry (%d): nothing deleted", e.Seq, a.Seq+1)
		}
		if err := b.Delete(k, nil); err != nil {
			return 0, err
		}
		a = anchor{Seq: e.Seq, Hash: sum}
		n++
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	if n == 0 {
		return 0, nil
	}
	if err := b.Set(anchorKey, encodeAnchor(key, a), nil); err != nil {
		return 0, err
	}
	return n, b.Commit(pebble.Sync)
}

// Restore puts archived entries back. They must end right at the anchor (restore the newest
// archive first); the anchor moves back before them, or goes when entry 1 is back.
func Restore(ctx context.Context, db *pebble.DB, key []byte, next func() (k, v []byte, err error)) (int, error) {
	a, ok, err := readAnchor(db, key)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, errors.New("audit restore: no entries are archived")
	}
	b := db.NewBatch()
	defer b.Close()
	var first, last Entry
	n := 0
	for {
		k, v, err := next()
		if errors.Is(err, ErrEnd) {
			break
		}
		if err != nil {
			return 0, err
		}
		e, _, err := decode(k, v)
		if err != nil {
			return 0, err
		}
		if n > 0 && e.Seq != last.Seq+1 {
			return 0, fmt.Errorf("audit restore: entry %d follows %d", e.Seq, last.Seq)
		}
		if n == 0 {
			first = e
		}
		last = e
		if err := b.Set(k, v, nil); err != nil {
			return 0, err
		}
		n++
	}
	if n == 0 {
		return 0, nil
	}
	if last.Seq != a.Seq {
		return 0, fmt.Errorf("audit restore: the archive ends at entry %d but the kept chain resumes after %d: restore the newest archive first", last.Seq, a.Seq)
	}
	if first.Seq == 1 {
		err = b.Delete(anchorKey, nil)
	} else {
		var prev [32]byte
		p, err2 := hex.DecodeString(first.Prev)
		if err2 != nil || len(p) != 32 {
			return 0, fmt.Errorf("audit restore: entry %d has a bad previous hash", first.Seq)
		}
		copy(prev[:], p)
		err = b.Set(anchorKey, encodeAnchor(key, anchor{Seq: first.Seq - 1, Hash: prev}), nil)
	}
	if err != nil {
		return 0, err
	}
	return n, b.Commit(pebble.Sync)
}

// ErrEnd ends the record iterators of DeleteArchived and Restore.
var ErrEnd = errors.New("end of archive")

// Oldest returns the time of the oldest kept entry (ok=false when none is kept).
func Oldest(ctx context.Context, r pebble.Reader) (time.Time, bool, error) {
	it, err := r.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: entryPrefix, UpperBound: entryEnd})
	if err != nil {
		return time.Time{}, false, err
	}
	defer it.Close()
	if !it.First() {
		return time.Time{}, false, it.Error()
	}
	e, _, err := decode(it.Key(), it.Value())
	return e.Time, err == nil, err
}

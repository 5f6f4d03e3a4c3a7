package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// TamperError says where the chain breaks.
type TamperError struct {
	Seq    uint64 // the first entry found wrong (or missing)
	Reason string
}

func (e *TamperError) Error() string {
	return fmt.Sprintf("audit log tampered at entry %d: %s", e.Seq, e.Reason)
}

// Result summarizes a verified chain.
type Result struct {
	Entries uint64 // entries checked
	Head    string // hash of the last entry, hex: publish it to pin the chain from outside
}

// Verify checks the whole chain on l's database.
func (l *Log) Verify(ctx context.Context) (Result, error) { return Verify(ctx, l.db, l.key) }

// Verify checks the chain stored in r (a database or a snapshot) with the log's key (nil when
// none). It returns a *TamperError for a broken chain. usagectl audit verify calls it.
func Verify(ctx context.Context, r pebble.Reader, key []byte) (Result, error) {
	h, err := readHead(r)
	if err != nil {
		return Result{}, err
	}
	it, err := r.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: entryPrefix, UpperBound: entryEnd})
	if err != nil {
		return Result{}, fmt.Errorf("audit verify: %w", err)
	}
	defer it.Close()
	var (
		want uint64 = 1
		prev [32]byte
	)
	// Entries archived by retention: the chain resumes after the anchor.
	if a, ok, err := readAnchor(r, key); err != nil {
		return Result{}, err
	} else if ok {
		want, prev = a.Seq+1, a.Hash
	}
	for ok := it.First(); ok; ok = it.Next() {
		if want%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return Result{}, fmt.Errorf("audit verify: %w", err)
			}
		}
		k := it.Key()
		if len(k) != len(entryPrefix)+8 {
			return Result{}, &TamperError{Seq: want, Reason: fmt.Sprintf("foreign key %q in the audit key space", k)}
		}
		seq := binary.BigEndian.Uint64(k[len(entryPrefix):])
		if seq != want {
			return Result{}, &TamperError{Seq: want, Reason: fmt.Sprintf("missing (next stored entry is %d)", seq)}
		}
		e, stored, err := decode(k, it.Value())
		if err != nil {
			return Result{}, &TamperError{Seq: seq, Reason: err.Error()}
		}
		if got := chainSum(key, it.Value()[32:]); got != stored {
			return Result{}, &TamperError{Seq: seq, Reason: "contents do not match the entry's hash"}
		}
		if e.Seq != seq {
			return Result{}, &TamperError{Seq: seq, Reason: fmt.Sprintf("entry %d stored in the place of entry %d (reordered)", e.Seq, seq)}
		}
		if e.Prev != hex.EncodeToString(prev[:]) {
			return Result{}, &TamperError{Seq: seq, Reason: "previous-hash link does not match the entry before it"}
		}
		prev = stored
		want++
	}
	if err := it.Error(); err != nil {
		return Result{}, fmt.Errorf("audit verify: %w", err)
	}
	last := want - 1
	switch {
	case last < h.Seq:
		return Result{}, &TamperError{Seq: last + 1, Reason: fmt.Sprintf("missing: the head records %d entries, %d found", h.Seq, last)}
	case last > h.Seq:
		return Result{}, &TamperError{Seq: h.Seq + 1, Reason: fmt.Sprintf("entries past the recorded head (%d)", h.Seq)}
	case !bytes.Equal(prev[:], h.Hash[:]):
		return Result{}, &TamperError{Seq: last, Reason: "last entry does not match the recorded head"}
	}
	return Result{Entries: last, Head: hex.EncodeToString(prev[:])}, nil
}

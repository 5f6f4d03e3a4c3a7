package audit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

type record struct{ k, v []byte }

func iter(rs []record) func() ([]byte, []byte, error) {
	i := 0
	return func() ([]byte, []byte, error) {
		if i == len(rs) {
			return nil, nil, ErrEnd
		}
		i++
		return rs[i-1].k, rs[i-1].v, nil
	}
}

func TestArchiveKeepsTheChainVerifiable(t *testing.T) {
	ctx := context.Background()
	key := []byte("audit-key-0123456789abcdef")
	db := openDB(t, t.TempDir())
	l := openLog(t, db, key)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 90 {
		e := entry(i)
		e.Time = start.Add(time.Duration(i) * 24 * time.Hour) // January to March
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	exportMonth := func(before time.Time) []record {
		var rs []record
		if _, err := ExportBefore(ctx, db, before, func(k, v []byte) error {
			rs = append(rs, record{append([]byte(nil), k...), append([]byte(nil), v...)})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return rs
	}
	jan := exportMonth(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	if len(jan) != 31 {
		t.Fatalf("January holds %d entries, want 31", len(jan))
	}
	if n, err := DeleteArchived(ctx, db, key, iter(jan)); err != nil || n != 31 {
		t.Fatalf("delete January: %d %v", n, err)
	}
	feb := exportMonth(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	if len(feb) != 28 || string(feb[0].k) != string(entryKey(32)) {
		t.Fatalf("February: %d entries from %x", len(feb), feb[0].k)
	}
	if _, err := DeleteArchived(ctx, db, key, iter(feb)); err != nil {
		t.Fatal(err)
	}
	if res, err := l.Verify(ctx); err != nil || res.Entries != 90 {
		t.Fatalf("verify after archiving: %+v %v", res, err)
	}
	// Archiving out of order is refused: January is gone from the store already.
	if _, err := DeleteArchived(ctx, db, key, iter(jan)); err == nil {
		t.Fatal("re-archiving January was accepted")
	}

	// Deleting a kept entry is still detected, and so is moving the anchor forward to hide it.
	v, closer, err := db.Get(anchorKey)
	if err != nil {
		t.Fatal(err)
	}
	realAnchor := append([]byte(nil), v...)
	closer.Close()
	old := raw(t, db, 60)
	if err := db.Delete(entryKey(60), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Verify(ctx); err == nil {
		t.Fatal("a deleted entry after the anchor went unnoticed")
	}
	forged := anchor{Seq: 60}
	copy(forged.Hash[:], old[:32])
	set(t, db, anchorKey, encodeAnchor([]byte("not the key"), forged))
	var te *TamperError
	if _, err := l.Verify(ctx); !errors.As(err, &te) {
		t.Fatalf("an anchor forged without the key: %v", err)
	}
	set(t, db, anchorKey, realAnchor)
	set(t, db, entryKey(60), old)
	if _, err := l.Verify(ctx); err != nil {
		t.Fatalf("verify after undoing the tampering: %v", err)
	}

	// Restoring the newest archive first, then the oldest, brings the whole chain back.
	if _, err := Restore(ctx, db, key, iter(jan)); err == nil {
		t.Fatal("restoring January before February was accepted")
	}
	if _, err := Restore(ctx, db, key, iter(feb)); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(ctx, db, key, iter(jan)); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := readAnchor(db, key); ok {
		t.Error("the anchor stayed after everything was restored")
	}
	if res, err := l.Verify(ctx); err != nil || res.Entries != 90 {
		t.Fatalf("verify after restoring: %+v %v", res, err)
	}
}

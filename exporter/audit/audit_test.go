package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

func openDB(t *testing.T, dir string) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

func openLog(t *testing.T, db *pebble.DB, key []byte) *Log {
	t.Helper()
	l, err := Open(db, Options{Key: key, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func entry(i int) Entry {
	return Entry{
		Time: time.Date(2026, 11, 26, 12, 0, i, 0, time.UTC), Subject: fmt.Sprintf("user-%d", i), Kind: "jwt",
		Action: "usage.read", Method: "GET", Path: "/v1/usage", Tenant: "acme", Allow: i%3 != 0,
		Reason: "role saas_admin on tenant acme", Status: 200,
	}
}

// fill appends n entries and closes the log, leaving the database open for tampering.
func fill(t *testing.T, db *pebble.DB, key []byte, n int) {
	t.Helper()
	l := openLog(t, db, key)
	for i := 1; i <= n; i++ {
		if _, err := l.Append(context.Background(), entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAppendListVerify(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	l := openLog(t, db, nil)
	ctx := context.Background()
	first, err := l.Append(ctx, entry(1))
	if err != nil {
		t.Fatal(err)
	}
	if first.Seq != 1 || first.Prev != strings.Repeat("0", 64) || len(first.Hash) != 64 {
		t.Fatalf("first entry %+v", first)
	}
	second, err := l.Append(ctx, entry(2))
	if err != nil {
		t.Fatal(err)
	}
	if second.Seq != 2 || second.Prev != first.Hash {
		t.Fatalf("second entry %+v does not link to %s", second, first.Hash)
	}
	res, err := l.Verify(ctx)
	if err != nil || res.Entries != 2 || res.Head != second.Hash {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	l.Close()
	db.Close()

	// Reopened, the chain continues where it stopped.
	db = openDB(t, dir)
	defer db.Close()
	l = openLog(t, db, nil)
	defer l.Close()
	third, err := l.Append(ctx, entry(3))
	if err != nil {
		t.Fatal(err)
	}
	if third.Seq != 3 || third.Prev != second.Hash {
		t.Fatalf("after reopen: %+v", third)
	}
	got, err := l.List(ctx, 0, 10)
	if err != nil || len(got) != 3 {
		t.Fatalf("List = %d entries, %v", len(got), err)
	}
	if got[1] != second {
		t.Errorf("listed %+v\nappended %+v", got[1], second)
	}
	page, err := l.List(ctx, 1, 1)
	if err != nil || len(page) != 1 || page[0].Seq != 2 {
		t.Errorf("page after 1: %+v, %v", page, err)
	}
	if page, _ := l.List(ctx, 3, 10); len(page) != 0 {
		t.Errorf("page after the last entry: %+v", page)
	}
}

func TestConcurrentAppendsFormOneChain(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	l := openLog(t, db, []byte("secret"))
	const writers, each = 16, 50
	var wg sync.WaitGroup
	seqs := make(chan uint64, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e, err := l.Append(context.Background(), entry(w*each+i))
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- e.Seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d handed out twice", s)
		}
		seen[s] = true
	}
	res, err := l.Verify(context.Background())
	if err != nil || res.Entries != writers*each {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	l.Close()
	if _, err := l.Append(context.Background(), entry(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
}

// raw reads and writes stored values directly, as an intruder with database access would.
func raw(t *testing.T, db *pebble.DB, seq uint64) []byte {
	t.Helper()
	v, c, err := db.Get(entryKey(seq))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return append([]byte(nil), v...)
}

func set(t *testing.T, db *pebble.DB, k, v []byte) {
	t.Helper()
	if err := db.Set(k, v, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func TestTamperingIsDetected(t *testing.T) {
	cases := []struct {
		name   string
		key    []byte
		tamper func(t *testing.T, db *pebble.DB)
		seq    uint64
		reason string
	}{
		{"changed decision", nil, func(t *testing.T, db *pebble.DB) {
			v := raw(t, db, 4)
			set(t, db, entryKey(4), []byte(strings.Replace(string(v), `"allow":true`, `"allow":false`, 1)))
		}, 4, "contents do not match"},
		{"changed and rehashed", nil, func(t *testing.T, db *pebble.DB) {
			// The intruder recomputes the entry's own hash; the next entry's link breaks.
			v := raw(t, db, 4)
			body := []byte(strings.Replace(string(v[32:]), `"user-4"`, `"someone"`, 1))
			sum := chainSum(nil, body)
			set(t, db, entryKey(4), append(sum[:], body...))
		}, 5, "previous-hash link"},
		{"deleted entry", nil, func(t *testing.T, db *pebble.DB) {
			if err := db.Delete(entryKey(3), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}, 3, "missing"},
		{"deleted first entry", nil, func(t *testing.T, db *pebble.DB) {
			if err := db.Delete(entryKey(1), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}, 1, "missing"},
		{"deleted newest entry", nil, func(t *testing.T, db *pebble.DB) {
			if err := db.Delete(entryKey(6), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}, 6, "the head records 6 entries, 5 found"},
		{"deleted head", nil, func(t *testing.T, db *pebble.DB) {
			if err := db.Delete(headKey, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}, 1, "past the recorded head"},
		{"reordered entries", nil, func(t *testing.T, db *pebble.DB) {
			a, b := raw(t, db, 2), raw(t, db, 3)
			set(t, db, entryKey(2), b)
			set(t, db, entryKey(3), a)
		}, 2, "reordered"},
		{"renumbered after a deletion", nil, func(t *testing.T, db *pebble.DB) {
			// Delete 3 and move 4..6 down so the sequence has no gap: the links break.
			for s := uint64(3); s < 6; s++ {
				set(t, db, entryKey(s), raw(t, db, s+1))
			}
			if err := db.Delete(entryKey(6), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}, 3, "reordered"},
		{"inserted entry", nil, func(t *testing.T, db *pebble.DB) {
			set(t, db, entryKey(7), raw(t, db, 6))
		}, 7, "stored in the place of entry 7"},
		{"whole chain rewritten without the key", []byte("k"), func(t *testing.T, db *pebble.DB) {
			// Recomputing every hash with plain SHA-256 does not fool an HMAC chain.
			var prev [32]byte
			for s := uint64(1); s <= 6; s++ {
				v := raw(t, db, s)
				body := v[32:]
				sum := chainSum(nil, body)
				set(t, db, entryKey(s), append(sum[:], body...))
				prev = sum
			}
			set(t, db, headKey, encodeHead(head{Seq: 6, Hash: prev}))
		}, 1, "contents do not match"},
		{"truncated value", nil, func(t *testing.T, db *pebble.DB) {
			set(t, db, entryKey(2), raw(t, db, 2)[:40])
		}, 2, ""},
		{"foreign key", nil, func(t *testing.T, db *pebble.DB) {
			set(t, db, append(append([]byte(nil), entryPrefix...), 'z'), []byte("x"))
		}, 7, "foreign key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := openDB(t, t.TempDir())
			defer db.Close()
			fill(t, db, c.key, 6)
			if _, err := Verify(context.Background(), db, c.key); err != nil {
				t.Fatalf("untampered chain: %v", err)
			}
			c.tamper(t, db)
			_, err := Verify(context.Background(), db, c.key)
			var te *TamperError
			if !errors.As(err, &te) {
				t.Fatalf("Verify = %v, want a TamperError", err)
			}
			if te.Seq != c.seq || !strings.Contains(te.Reason, c.reason) {
				t.Errorf("TamperError at %d (%s), want at %d mentioning %q", te.Seq, te.Reason, c.seq, c.reason)
			}
		})
	}
}

func TestReopenAfterTamperingNeverOverwrites(t *testing.T) {
	for name, tamper := range map[string]func(t *testing.T, db *pebble.DB){
		"head deleted": func(t *testing.T, db *pebble.DB) {
			if err := db.Delete(headKey, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		},
		"head and newest entries deleted": func(t *testing.T, db *pebble.DB) {
			for _, k := range [][]byte{headKey, entryKey(3), entryKey(2)} {
				if err := db.Delete(k, pebble.Sync); err != nil {
					t.Fatal(err)
				}
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			db := openDB(t, t.TempDir())
			defer db.Close()
			fill(t, db, nil, 3)
			first := raw(t, db, 1)
			tamper(t, db)
			l := openLog(t, db, nil)
			e, err := l.Append(context.Background(), entry(9))
			if err != nil {
				t.Fatal(err)
			}
			l.Close()
			if string(raw(t, db, 1)) != string(first) {
				t.Fatal("entry 1 overwritten")
			}
			if e.Seq == 1 {
				t.Fatalf("new entry took seq %d", e.Seq)
			}
			var te *TamperError
			if _, err := Verify(context.Background(), db, nil); !errors.As(err, &te) {
				t.Fatalf("tampering hidden by the new append: %v", err)
			}
		})
	}
}

func TestWrongKeyFailsVerification(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	fill(t, db, []byte("right"), 2)
	if _, err := Verify(context.Background(), db, []byte("wrong")); err == nil {
		t.Fatal("verified with the wrong key")
	}
	if _, err := Verify(context.Background(), db, []byte("right")); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyLogVerifies(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	res, err := Verify(context.Background(), db, nil)
	if err != nil || res.Entries != 0 {
		t.Fatalf("empty log: %+v, %v", res, err)
	}
}

func TestEntryKeyOrder(t *testing.T) {
	// Big-endian sequence numbers sort numerically, and every entry key sorts before entryEnd.
	k := entryKey(^uint64(0))
	if string(k) >= string(entryEnd) || string(entryKey(255)) >= string(entryKey(256)) {
		t.Fatal("entry keys out of order")
	}
	if binary.BigEndian.Uint64(k[len(entryPrefix):]) != ^uint64(0) {
		t.Fatal("seq not recoverable")
	}
}

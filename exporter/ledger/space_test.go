package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tmpfs mounts a tmpfs of size bytes on a fresh directory and unmounts it at the end of the
// test. It needs root (CI runs as root) and skips otherwise.
func tmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs that really fills up (CI runs as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file of zeros until the filesystem has about leave bytes free (or none).
func fill(t *testing.T, path string, dir string, leave int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		free, _, err := statfs(dir)
		if err != nil {
			t.Fatal(err)
		}
		if free <= leave {
			return
		}
		n := min(int64(len(buf)), free-leave)
		if _, err := f.Write(buf[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

// aiEvents are n ai.tokens events of tenant t, ids from first, one request each.
func aiEvents(t *testing.T, first, n int) string {
	var b strings.Builder
	pad := strings.Repeat("x", 200) // bigger events fill the disk sooner
	for i := first; i < first+n; i++ {
		b.WriteString(ev(fmt.Sprint(i), "ai.tokens", t0.Add(time.Duration(i)*time.Second),
			fmt.Sprintf(`{"tenant":"t","user":"u%d","feature":"f%s","model":"m","input_tokens":1,"output_tokens":1}`, i%50, pad[:i%200])))
	}
	return b.String()
}

// accepted is what the store says it holds: the count of ai requests of tenant t.
func accepted(t *testing.T, s *Store) int64 {
	t.Helper()
	n, _ := s.Current("ai_requests", "t", t0)
	return n
}

// The reserve refuses writes before the disk is full: the store stays usable, reads go on,
// and writes resume once space is freed, with every acknowledged event counted once.
func TestFullDiskReserve(t *testing.T) {
	ctx := context.Background()
	dir := tmpfs(t, 48<<20)
	store := filepath.Join(dir, "store")
	s, err := Open(ctx, Options{Path: store, MinFreeBytes: 4 << 20, SpaceCheckInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	filler := filepath.Join(dir, "filler")
	fill(t, filler, dir, 8<<20)

	acked, next := 0, 0
	refused := 0
	for refused < 3 {
		if next > 200000 {
			t.Fatalf("no write refused after %d events", next)
		}
		res, err := s.Commit(ctx, decode(t, aiEvents(t, next, 50)))
		if err != nil {
			if !errors.Is(err, ErrInsufficientStorage) {
				t.Fatalf("commit on a nearly full disk: %v, want ErrInsufficientStorage", err)
			}
			refused++
			continue
		}
		acked += res.Accepted
		next += 50
	}
	st := s.Space()
	if st.Writable || st.Reason != ReasonLowSpace || st.FreeBytes < 0 || st.FreeBytes > st.MinFreeBytes+1<<20 {
		t.Fatalf("space status on a full disk = %+v", st)
	}
	// Reads go on.
	if got := accepted(t, s); got != int64(acked) {
		t.Fatalf("while refusing writes the store counts %d events, %d acknowledged", got, acked)
	}
	if _, err := s.Usage(ctx, Query{Meter: "ai_tokens", Tenant: "t", From: t0, To: t0.Add(24 * time.Hour)}); err != nil {
		t.Fatalf("usage query while refusing writes: %v", err)
	}

	// Space freed: writes resume, no restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	res, err := s.Commit(ctx, decode(t, aiEvents(t, next, 50)))
	if err != nil {
		t.Fatalf("commit after freeing space: %v", err)
	}
	acked += res.Accepted
	if st := s.Space(); !st.Writable {
		t.Fatalf("space status after freeing space = %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, store)
	if got := accepted(t, s); got != int64(acked) {
		t.Fatalf("after a restart the store counts %d events, %d acknowledged", got, acked)
	}
	if diffs, err := s.Verify(ctx); err != nil || len(diffs) > 0 {
		t.Fatalf("verify: %v %v", err, diffs)
	}
}

// With no reserve, Pebble itself runs out of space. The store must not panic: the failed
// group and every later write are refused, reads go on, and after a restart with space freed
// every acknowledged event is there, counted once, and the refused ones are not half-stored.
func TestRealENOSPC(t *testing.T) {
	ctx := context.Background()
	dir := tmpfs(t, 48<<20)
	store := filepath.Join(dir, "store")
	s, err := Open(ctx, Options{Path: store, MinFreeBytes: -1, SpaceCheckInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	filler := filepath.Join(dir, "filler")
	fill(t, filler, dir, 2<<20)

	acked, next := 0, 0
	var failure error
	for failure == nil {
		if next > 200000 {
			t.Fatalf("no write failed after %d events", next)
		}
		res, err := s.Commit(ctx, decode(t, aiEvents(t, next, 50)))
		next += 50
		if err != nil {
			failure = err
			break
		}
		acked += res.Accepted
	}
	if !errors.Is(failure, ErrWriteFailed) || !errors.Is(failure, syscall.ENOSPC) {
		t.Fatalf("the write on a full disk failed with %v, want ErrWriteFailed and ENOSPC", failure)
	}
	t.Logf("acknowledged %d events before: %v", acked, failure)
	// Refused from now on, even with space.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, decode(t, aiEvents(t, next, 1))); !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("commit after a failed write: %v, want ErrWriteFailed", err)
	}
	if st := s.Space(); st.Writable || st.Reason != ReasonWriteFailed {
		t.Fatalf("space status after a failed write = %+v", st)
	}
	if got := accepted(t, s); got != int64(acked) {
		t.Fatalf("after a failed write the store counts %d events, %d acknowledged", got, acked)
	}
	_ = s.Close() // may report the failed log; must not panic

	s = open(t, store)
	got := accepted(t, s)
	// The failed group may have reached the log whole before the error: then it is stored
	// whole (a retry is a duplicate), never in part.
	if got != int64(acked) && got != int64(acked)+50 {
		t.Fatalf("after a restart the store counts %d events, %d acknowledged (+50 at most)", got, acked)
	}
	if diffs, err := s.Verify(ctx); err != nil || len(diffs) > 0 {
		t.Fatalf("verify: %v %v", err, diffs)
	}
	res, err := s.Commit(ctx, decode(t, aiEvents(t, 0, next)))
	if err != nil {
		t.Fatalf("retrying everything after the restart: %v", err)
	}
	if total := accepted(t, s); total != int64(next) || res.Accepted+res.Duplicates != next {
		t.Fatalf("after retrying everything the store counts %d events, want %d (%+v)", total, next, res)
	}
}

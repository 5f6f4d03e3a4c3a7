package ledger

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// loaded opens a store at dir, commits n events in groups of 50, and returns it with the count.
func loaded(t *testing.T, dir string, n int) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Path: dir, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 50 {
		if _, err := s.Commit(context.Background(), decode(t, aiEvents(t, i, 50))); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func files(t *testing.T, dir, pattern string) []string {
	t.Helper()
	f, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// largest is the largest of files: the one holding the data.
func largest(t *testing.T, files []string) string {
	t.Helper()
	var best string
	var size int64 = -1
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.Size() > size {
			best, size = f, fi.Size()
		}
	}
	if size <= 0 {
		t.Fatalf("no file with data among %v", files)
	}
	return best
}

func flip(t *testing.T, path string, at float64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := int(float64(len(b)) * at)
	for j := i; j < i+16 && j < len(b); j++ {
		b[j] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantDamaged(t *testing.T, err error, says ...string) {
	t.Helper()
	var de *DamagedError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v, want a DamagedError", err)
	}
	for _, s := range says {
		if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(s)) {
			t.Fatalf("the message does not say %q:\n%v", s, err)
		}
	}
}

// After a crash, the last groups are only in the write-ahead log. A log cut short loses
// acknowledged groups: the store refuses to open and says so, instead of starting without them.
func TestTruncatedWALAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s := loaded(t, dir, 1000)
	s.crashed = true
	s.Close()
	wal := largest(t, files(t, dir, "*.log"))
	fi, _ := os.Stat(wal)
	if err := os.Truncate(wal, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), Options{Path: dir})
	wantDamaged(t, err, "acknowledged events are missing", "write-ahead log", "restore", watermarkFile)
}

// Damage inside the log of a crashed store: Pebble stops its replay there, and the groups after
// it were acknowledged: refused.
func TestDamagedWALAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s := loaded(t, dir, 1000)
	s.crashed = true
	s.Close()
	wal := largest(t, files(t, dir, "*.log"))
	flip(t, wal, 0.3)
	_, err := Open(context.Background(), Options{Path: dir})
	wantDamaged(t, err, "restore")
	if !strings.Contains(err.Error(), "acknowledged events are missing") && !strings.Contains(err.Error(), filepath.Base(wal)) {
		t.Fatalf("the refusal says neither that acknowledged events are missing nor which log is damaged: %v", err)
	}
}

// A clean stop flushes the memtables: the log holds nothing acknowledged, so damage to it or its
// loss loses nothing.
func TestWALAfterCleanStopHoldsNothing(t *testing.T) {
	dir := t.TempDir()
	s := loaded(t, dir, 1000)
	want := accepted(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, wal := range files(t, dir, "*.log") {
		if err := os.Truncate(wal, 0); err != nil {
			t.Fatal(err)
		}
	}
	s = open(t, dir)
	defer s.Close()
	if got := accepted(t, s); got != want || want != 1000 {
		t.Fatalf("after a clean stop and an emptied log the store counts %d events, want %d", got, want)
	}
	if diffs, err := s.Verify(context.Background()); err != nil || len(diffs) > 0 {
		t.Fatalf("verify: %v %v", err, diffs)
	}
}

// A damaged table is found at open or by verify, as a DamagedError naming the table, never a
// panic.
func TestDamagedTable(t *testing.T) {
	dir := t.TempDir()
	s := loaded(t, dir, 1000)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sst := largest(t, files(t, dir, "*.sst"))
	flip(t, sst, 0.2)
	s, err := Open(context.Background(), Options{Path: dir})
	if err == nil {
		_, err = s.Verify(context.Background())
		s.Close()
	}
	wantDamaged(t, err, filepath.Base(sst), "restore")
}

// A table missing from the directory: refused at open, naming it.
func TestMissingTable(t *testing.T) {
	dir := t.TempDir()
	s := loaded(t, dir, 1000)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sst := largest(t, files(t, dir, "*.sst"))
	if err := os.Remove(sst); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), Options{Path: dir})
	wantDamaged(t, err, strings.TrimSuffix(filepath.Base(sst), ".sst"))
}

// Raw events missing from the tables (a table lost, or salvaged away) are found by verify,
// which counts them against the acknowledged count written with every group.
func TestVerifyFindsMissingEvents(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := loaded(t, dir, 500)
	defer s.Close()
	n := 0
	var keys [][]byte
	if err := s.scanKeys(ctx, []byte(pEvent), func(k []byte) {
		if n++; n%100 == 0 {
			keys = append(keys, append([]byte(nil), k...))
		}
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := s.db.Delete(k, nil); err != nil {
			t.Fatal(err)
		}
	}
	diffs, err := s.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) == 0 || !strings.Contains(strings.Join(diffs, "\n"), "acknowledged events missing: 500 accepted, 495 stored raw (5 missing)") {
		t.Fatalf("verify after losing 5 raw events: %v", diffs)
	}
}

// A second open of a locked store names the lock file and the store.
func TestLockedStore(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	_, err := Open(context.Background(), Options{Path: dir})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), filepath.Join(dir, "LOCK")) || !strings.Contains(err.Error(), "--storage.path than "+dir) {
		t.Fatalf("second open: %v", err)
	}
}

// Salvage of a store whose log lost acknowledged groups keeps what is intact, says exactly how
// many acknowledged events were lost, copies the store aside first, and leaves a store that
// opens and verifies.
func TestSalvage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := loaded(t, dir, 1000)
	s.crashed = true
	s.Close()
	truncated := largest(t, files(t, dir, "*.log"))
	fi, _ := os.Stat(truncated)
	if err := os.Truncate(truncated, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	s, rep, err := Salvage(ctx, Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	if rep.AckedEvents != 1000 || rep.LostEvents == 0 || rep.KeptEvents+rep.LostEvents != 1000 || rep.LostGroups[0] == 0 || rep.LostGroups[1] != 20 {
		t.Fatalf("salvage report %+v", rep)
	}
	if got := accepted(t, s); got != int64(rep.KeptEvents) {
		t.Fatalf("after salvage the store counts %d events, the report says %d kept", got, rep.KeptEvents)
	}
	if diffs, err := s.Verify(ctx); err != nil || len(diffs) > 0 {
		t.Fatalf("verify after salvage: %v %v", err, diffs)
	}
	if _, err := os.Stat(filepath.Join(rep.Copy, filepath.Base(truncated))); err != nil {
		t.Fatalf("the store was not copied aside before salvage: %v", err)
	}
	// Writes go on, and the next start needs no salvage.
	if _, err := s.Commit(ctx, decode(t, aiEvents(t, 5000, 50))); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if got := accepted(t, s); got != int64(rep.KeptEvents)+50 {
		t.Fatalf("after a restart the store counts %d events, want %d", got, rep.KeptEvents+50)
	}
	if diffs, err := s.Verify(ctx); err != nil || len(diffs) > 0 {
		t.Fatalf("verify after restart: %v %v", err, diffs)
	}
}

// Damage met while running fails the read that met it, is counted (an alert watches the count),
// and is no panic.
func TestDamageFoundWhileRunning(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := loaded(t, dir, 2000)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	sst := largest(t, files(t, dir, "*.sst"))
	for _, at := range []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6} { // blocks not read by the open: raw events
		flip(t, sst, at)
	}
	_, err := s.Verify(ctx)
	wantDamaged(t, err, filepath.Base(sst), "restore")
	if s.CorruptionsFound() == 0 {
		t.Fatalf("damage met while running was not counted: %v", err)
	}
}

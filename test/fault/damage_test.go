package fault

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// loadStore starts an exporter on a new store, has it acknowledge n events in batches of 100,
// and returns it running, with the client's record.
func loadStore(t *testing.T, n int) (string, *exporter, *client) {
	t.Helper()
	store := filepath.Join(t.TempDir(), "data")
	e := start(t, store)
	c := &client{url: e.url, now: time.Now().UTC()}
	for c.acked < int64(n) {
		if a := c.send(t, 100); a.status != 202 {
			t.Fatalf("POST /v1/events: %d %s", a.status, a.body)
		}
	}
	return store, e, c
}

func largest(t *testing.T, dir, pattern string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, pattern))
	var best string
	var size int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.Size() > size {
			best, size = f, fi.Size()
		}
	}
	if best == "" {
		t.Fatalf("no %s with data in %s", pattern, dir)
	}
	return best
}

func flipBytes(t *testing.T, path string, at float64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := int(float64(len(b)) * at); i < int(float64(len(b))*at)+16 && i < len(b); i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func truncateHalf(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// wantRefusal checks that the exporter refuses the store with exit code 1 and a message saying
// each of says, without a panic.
func wantRefusal(t *testing.T, store string, says ...string) string {
	t.Helper()
	code, out := refused(t, store)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	noPanic(t, out)
	for _, s := range says {
		if !strings.Contains(out, s) {
			t.Errorf("the exporter's refusal does not say %q:\n%s", s, out)
		}
	}
	return out
}

// After a crash the last groups are only in the write-ahead log. Damaged or cut short, it has
// lost acknowledged events: the exporter refuses to start and says which store, what is wrong
// and what to do; restoring the backup taken before the damage loses nothing.
func TestWALAfterKill(t *testing.T) {
	for name, damage := range map[string]func(t *testing.T, wal string){
		"truncated": truncateHalf,
		"damaged":   func(t *testing.T, wal string) { flipBytes(t, wal, 0.3) },
	} {
		t.Run(name, func(t *testing.T) {
			store, e, c := loadStore(t, 3000)
			e.kill(t)
			backup := store + ".backup"
			copyDir(t, store, backup)
			damage(t, largest(t, store, "*.log"))
			out := wantRefusal(t, store, "the store at "+store+" is damaged", "Restore the store directory from a backup")
			if name == "truncated" && !strings.Contains(out, "acknowledged events are missing") {
				t.Errorf("the refusal of a truncated log does not say acknowledged events are missing:\n%s", out)
			}
			t.Logf("operator sees: %s", lastLine(out))
			if !strings.Contains(out, "usagectl ledger salvage --storage.path="+store) {
				t.Errorf("the refusal does not offer the salvage:\n%s", out)
			}

			// Without a backup: an explicit salvage keeps what is intact and says exactly what
			// was lost; the ledger then counts what the client saw acknowledged, less that.
			salvaged := store + ".salvaged"
			copyDir(t, store, salvaged)
			if out, err := exec.Command(usagectlBin, "ledger", "salvage", "--storage.path="+salvaged).CombinedOutput(); err == nil || !strings.Contains(string(out), "--accept-loss") {
				t.Errorf("salvage without --accept-loss: %v\n%s", err, out)
			}
			sout, err := exec.Command(usagectlBin, "ledger", "salvage", "--storage.path="+salvaged, "--accept-loss").CombinedOutput()
			if err != nil {
				t.Fatalf("salvage: %v\n%s", err, sout)
			}
			var lost, acked, kept int64
			var from, to int
			if _, err := fmt.Sscanf(string(sout[strings.Index(string(sout), "LOST"):]), "LOST %d acknowledged events (groups %d to %d; %d were acknowledged, %d are kept)", &lost, &from, &to, &acked, &kept); err != nil {
				t.Fatalf("salvage does not say what was lost (%v):\n%s", err, sout)
			}
			t.Logf("salvage says: %s", strings.TrimSpace(string(sout)))
			if lost <= 0 || acked != c.acked || kept != c.acked-lost {
				t.Errorf("salvage reports %d lost, %d acknowledged, %d kept; the client saw %d acknowledged", lost, acked, kept, c.acked)
			}
			checkCountedLess(t, salvaged, c, lost)
			aout, err := exec.Command(usagectlBin, "audit", "verify", "--storage.path="+salvaged).CombinedOutput()
			if err != nil || !strings.Contains(string(aout), "audit trail intact") {
				t.Errorf("audit verify after salvage: %v\n%s", err, aout)
			}

			// With a backup: the operator restores it, and nothing acknowledged is lost.
			os.RemoveAll(store)
			copyDir(t, backup, store)
			checkCounted(t, store, c)
		})
	}
}

// A clean stop flushes every acknowledged event into the tables: the write-ahead log left
// behind holds nothing that only it holds, so damaging or emptying it loses nothing.
func TestWALAfterCleanStop(t *testing.T) {
	store, e, c := loadStore(t, 3000)
	e.stop(t)
	logs, _ := filepath.Glob(filepath.Join(store, "*.log"))
	for _, wal := range logs {
		flipBytes(t, wal, 0.5)
		truncateHalf(t, wal)
	}
	checkCounted(t, store, c)
}

// A damaged table: the exporter refuses to start, and usagectl ledger verify fails, both naming
// the table, neither panicking.
func TestDamagedTable(t *testing.T) {
	store, e, c := loadStore(t, 3000)
	e.stop(t)
	backup := store + ".backup"
	copyDir(t, store, backup)
	sst := largest(t, store, "*.sst")
	flipBytes(t, sst, 0.3)
	out := wantRefusal(t, store, "the store at "+store+" is damaged", sst, "checksum mismatch")
	t.Logf("operator sees: %s", lastLine(out))
	vout, err := exec.Command(usagectlBin, "ledger", "verify", "--storage.path="+store).CombinedOutput()
	if err == nil || !strings.Contains(string(vout), sst) {
		t.Errorf("usagectl ledger verify on a damaged table: %v\n%s", err, vout)
	}
	noPanic(t, string(vout))
	os.RemoveAll(store)
	copyDir(t, backup, store)
	checkCounted(t, store, c)
}

// A store directory missing a table: refused, naming it.
func TestMissingTable(t *testing.T) {
	store, e, c := loadStore(t, 3000)
	e.stop(t)
	backup := store + ".backup"
	copyDir(t, store, backup)
	sst := largest(t, store, "*.sst")
	if err := os.Remove(sst); err != nil {
		t.Fatal(err)
	}
	out := wantRefusal(t, store, "the store at "+store+" is damaged", strings.TrimSuffix(filepath.Base(sst), ".sst"), "does not exist")
	t.Logf("operator sees: %s", lastLine(out))
	os.RemoveAll(store)
	copyDir(t, backup, store)
	checkCounted(t, store, c)
}

// A second exporter on the same store is refused, told the lock file, the store and the
// process holding it; the first goes on.
func TestSecondProcess(t *testing.T) {
	store, e, c := loadStore(t, 100)
	out := wantRefusal(t, store, filepath.Join(store, "LOCK"), "--storage.path than "+store, "held by process")
	if pid := e.cmd.Process.Pid; !strings.Contains(out, "pid="+itoa(pid)) && !strings.Contains(out, "process "+itoa(pid)) {
		t.Errorf("the refusal does not name the holder, process %d:\n%s", pid, out)
	}
	t.Logf("operator sees: %s", lastLine(out))
	if a := c.send(t, 100); a.status != 202 {
		t.Fatalf("the first exporter after the second was refused: %d %s", a.status, a.body)
	}
	e.stop(t)
	checkCounted(t, store, c)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

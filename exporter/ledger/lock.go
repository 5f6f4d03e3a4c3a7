package ledger

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// The store's lock. Pebble locks LOCK in the store's directory (a POSIX record lock), and a
// second process on the same directory got only "resource temporarily unavailable". The store
// takes that lock itself before opening Pebble, and names in its refusal the lock file, the
// store, and the process holding it: from the lock itself (F_GETLK gives the holder's PID on
// this host), and from LOCK.holder, which the holder writes once it has the lock (PID, command,
// start time, host: useful when the holder runs in another PID namespace).

const holderFile = "LOCK.holder"

// storeLock is the held lock of a store's directory.
type storeLock struct {
	pebble     *pebble.Lock
	holderPath string
}

// ErrLocked refuses to open a store another process has open.
var ErrLocked = errors.New("the store is in use by another process")

func lockStore(dir string) (*storeLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the store's directory %s: %w", dir, err)
	}
	l, err := pebble.LockDirectory(dir, vfs.Default)
	if err != nil {
		lockPath := filepath.Join(dir, "LOCK")
		holder := describeHolder(lockPath, filepath.Join(dir, holderFile))
		return nil, fmt.Errorf("%w: cannot lock %s (%v); %s. Stop that process, or give this one another --storage.path than %s",
			ErrLocked, lockPath, err, holder, dir)
	}
	return &storeLock{pebble: l, holderPath: filepath.Join(dir, holderFile)}, nil
}

// recordHolder writes LOCK.holder: who holds the lock, for the message of the next one to try.
func (l *storeLock) recordHolder(log *slog.Logger) {
	host, _ := os.Hostname()
	text := fmt.Sprintf("pid=%d\nhost=%s\nstarted=%s\ncommand=%s\n", os.Getpid(), host,
		time.Now().UTC().Format(time.RFC3339), strings.Join(os.Args, " "))
	if err := os.WriteFile(l.holderPath, []byte(text), 0o644); err != nil {
		log.Warn("cannot record the lock's holder; a second exporter on this store will not be told who holds it", "file", l.holderPath, "err", err)
	}
}

func (l *storeLock) release() {
	if l == nil || l.pebble == nil {
		return
	}
	_ = os.Remove(l.holderPath)
	_ = l.pebble.Close()
	l.pebble = nil
}

// describeHolder says who holds the lock, as far as it can be known.
func describeHolder(lockPath, holderPath string) string {
	var parts []string
	if pid := lockHolderPID(lockPath); pid > 0 {
		desc := fmt.Sprintf("it is held by process %d", pid)
		if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && len(cmd) > 0 {
			desc += fmt.Sprintf(" (%s)", strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")))
		}
		parts = append(parts, desc)
	}
	if b, err := os.ReadFile(holderPath); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		parts = append(parts, fmt.Sprintf("%s says: %s", holderPath, strings.Join(lines, ", ")))
	}
	if len(parts) == 0 {
		return "its holder is unknown"
	}
	return strings.Join(parts, "; ")
}

//go:build unix

package ledger

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// lockHolderPID asks the kernel which process holds the record lock on path (0 when none, or
// when it cannot tell).
func lockHolderPID(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	spec := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &spec); err != nil || spec.Type == unix.F_UNLCK {
		return 0
	}
	return int(spec.Pid)
}

//go:build unix

package ledger

import "golang.org/x/sys/unix"

// statfs returns the space available to unprivileged users on the filesystem of path (what the
// exporter may write) and the filesystem's size.
func statfs(path string) (free, size int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

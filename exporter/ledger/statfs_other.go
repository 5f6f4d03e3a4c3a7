//go:build !unix

package ledger

import "errors"

// statfs is not implemented here: the free-space reserve is not enforced.
func statfs(string) (free, size int64, err error) {
	return 0, 0, errors.New("free disk space is not available on this platform")
}

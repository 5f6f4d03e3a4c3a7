//go:build unix

package usagectl

import "syscall"

// setReceiveBuffer sets a socket's receive buffer (SO_RCVBUF), which also stops the kernel from
// growing it on its own.
func setReceiveBuffer(c syscall.RawConn, bytes int) error {
	var serr error
	if err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, bytes) }); err != nil {
		return err
	}
	return serr
}

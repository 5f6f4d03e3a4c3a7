//go:build !unix

package usagectl

import "syscall"

// setReceiveBuffer leaves the receive buffer to the system: --limit-rate then limits what
// usagectl reads, not what the kernel buffers ahead of it.
func setReceiveBuffer(syscall.RawConn, int) error { return nil }

//go:build !linux

package localstack

import "syscall"

// sysProcAttr puts a child in its own process group. Outside Linux there is no parent-death
// signal: a supervisor killed hard leaves its programs running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

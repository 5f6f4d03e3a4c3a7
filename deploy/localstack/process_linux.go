package localstack

import "syscall"

// sysProcAttr puts a child in its own process group (a Ctrl-C in the terminal reaches only the
// supervisor, which stops the programs in order, and a stop can signal the whole group) and has
// the kernel kill it when the supervisor's launcher thread dies (see launch.go).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

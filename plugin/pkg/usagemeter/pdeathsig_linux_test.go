package usagemeter

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes a child process get SIGTERM when the test process dies, so a killed test
// run leaves no exporter or VictoriaMetrics behind.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

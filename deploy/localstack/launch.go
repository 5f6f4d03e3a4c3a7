package localstack

import (
	"os/exec"
	"runtime"
	"sync"
)

// The children of the stack are started from one goroutine locked to its OS thread for the life
// of the process. On Linux each child asks the kernel for SIGKILL when its parent dies
// (SysProcAttr.Pdeathsig), and "parent" there is the thread that forked it: a child started
// from an ordinary goroutine would be killed whenever the Go runtime retired that thread, and
// one started from a thread that is never retired dies exactly when the supervisor does, however
// it dies (SIGKILL, a crash, the OOM killer), instead of keeping its port.
var launcher struct {
	once sync.Once
	reqs chan launchReq
}

type launchReq struct {
	cmd *exec.Cmd
	err chan error
}

// launch starts cmd on the launcher thread.
func launch(cmd *exec.Cmd) error {
	launcher.once.Do(func() {
		launcher.reqs = make(chan launchReq)
		go func() {
			// Never unlocked and never returning: the thread lives as long as the process.
			runtime.LockOSThread()
			for r := range launcher.reqs {
				r.err <- r.cmd.Start()
			}
		}()
	})
	r := launchReq{cmd: cmd, err: make(chan error, 1)}
	launcher.reqs <- r
	return <-r.err
}

package localstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Process is one program of the stack.
type Process struct {
	Name string
	Path string
	Args []string
	// ReadyURL answers 200 once the program serves; empty means ready as soon as it started.
	ReadyURL string
	// Env is added to the supervisor's environment.
	Env []string
}

// running is a started Process.
type running struct {
	Process
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has exited; err is set before
	err  error
}

// start launches p with its output appended to logDir/<name>.log. The process gets its own
// process group: a Ctrl-C in the terminal reaches only the stack's supervisor, which then stops
// the programs in order instead of all of them dying at once. On Linux it also dies with the
// supervisor, however the supervisor dies (launch.go).
func start(p Process, logDir string) (*running, error) {
	if _, err := os.Stat(p.Path); err != nil {
		return nil, fmt.Errorf("%s: %w", p.Name, err)
	}
	logPath := filepath.Join(logDir, p.Name+".log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: opening log: %w", p.Name, err)
	}
	fmt.Fprintf(log, "\n=== %s starting %s %q\n", time.Now().UTC().Format(time.RFC3339), p.Path, p.Args)
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Stdout, cmd.Stderr = log, log
	if len(p.Env) > 0 {
		cmd.Env = append(os.Environ(), p.Env...)
	}
	cmd.SysProcAttr = sysProcAttr()
	if err := launch(cmd); err != nil {
		log.Close()
		return nil, fmt.Errorf("%s: starting %s: %w", p.Name, p.Path, err)
	}
	r := &running{Process: p, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		log.Close()
		close(r.done)
	}()
	return r, nil
}

// waitReady polls ReadyURL until it answers 200, the process exits, or ctx ends.
func (r *running) waitReady(ctx context.Context) error {
	if r.ReadyURL == "" {
		return nil
	}
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.ReadyURL, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", r.Name, err)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-r.done:
			return fmt.Errorf("%s exited before it was ready (%v); see %s", r.Name, r.err, r.log.Name())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w; see %s", r.Name, r.ReadyURL, ctx.Err(), r.log.Name())
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM, waits up to grace, then kills. It returns the program's exit error, if
// it did not exit 0 on SIGTERM.
func (r *running) stop(grace time.Duration) error {
	select {
	case <-r.done:
		return r.exitErr()
	default:
	}
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: SIGTERM: %w", r.Name, err)
	}
	select {
	case <-r.done:
		return r.exitErr()
	case <-time.After(grace):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM: killed", r.Name, grace)
	}
}

func (r *running) exitErr() error {
	if r.err != nil {
		return fmt.Errorf("%s: %w (see %s)", r.Name, r.err, r.log.Name())
	}
	return nil
}

package localstack

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// checkPorts fails, before anything is started, when a port the stack is to listen on is taken,
// naming the port, the stack's program that wanted it and the holder: typically a program of a
// previous stack whose supervisor was killed (before children died with it) or another server.
func checkPorts(want map[string]int) error {
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		port := want[name]
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			continue
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			errs = append(errs, fmt.Errorf("%s: port %d: %w", name, port, err))
			continue
		}
		errs = append(errs, fmt.Errorf("%s: port %d is already in use %s", name, port, describeHolder(port)))
	}
	return errors.Join(errs...)
}

// describeHolder names the processes listening on port, from /proc (Linux), or says it cannot.
func describeHolder(port int) string {
	holders := portHolders(port)
	if len(holders) == 0 {
		return "(by a process this user cannot see; `ss -ltnp` or `lsof -i :" + strconv.Itoa(port) + "` as root names it)"
	}
	parts := make([]string, len(holders))
	for i, h := range holders {
		parts[i] = fmt.Sprintf("pid %d (%s)", h.pid, h.cmdline)
	}
	return "by " + strings.Join(parts, ", ") + "; stop it (kill " + strconv.Itoa(holders[0].pid) + ") or choose other ports"
}

type holder struct {
	pid     int
	cmdline string
}

// portHolders finds the processes with a listening TCP socket on port: the socket inodes from
// /proc/net/tcp and tcp6, then the processes whose /proc/<pid>/fd links to one of them.
func portHolders(port int) []holder {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for ino := range listeningInodes(string(b), port) {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var out []holder
	for _, dir := range procs {
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue // another user's process, or gone
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
				out = append(out, holder{pid: pid, cmdline: cmdline(pid)})
				break
			}
		}
	}
	return out
}

// cmdline is a process's command line, arguments separated by spaces, cut to 200 bytes.
func cmdline(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return "command line unknown"
	}
	s := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// listeningInodes reads a /proc/net/tcp{,6} table and returns the inodes of the sockets in
// state LISTEN (0A) whose local port is port.
func listeningInodes(table string, port int) map[string]bool {
	out := map[string]bool{}
	hexPort := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) < 10 || f[3] != "0A" || !strings.HasSuffix(f[1], hexPort) {
			continue
		}
		out[f[9]] = true
	}
	return out
}

package localstack

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv selects what TestHelperProcess does when the test binary runs itself.
const helperEnv = "LOCALSTACK_TEST_HELPER"

// TestHelperProcess is not a test: run as a subprocess of the tests below, it plays the stack's
// supervisor (launch: start a child with the stack's launcher, print its pid, wait to be
// killed) or a program holding a port (listen: print the port, wait to be killed).
func TestHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "launch":
		sleep, err := exec.LookPath("sleep")
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
		r, err := start(Process{Name: "sleeper", Path: sleep, Args: []string{"600"}}, os.Getenv("LOCALSTACK_TEST_DIR"))
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
		fmt.Println(r.cmd.Process.Pid)
	case "listen":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
		defer ln.Close()
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	default:
		t.Skip("helper process for other tests")
	}
	select {} // until killed
}

// helper runs TestHelperProcess in mode and returns it with the first line it printed.
func helper(t *testing.T, mode string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "LOCALSTACK_TEST_DIR="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.HasPrefix(line, "error:") {
		t.Fatalf("helper %s: %q %v", mode, line, err)
	}
	return cmd, strings.TrimSpace(line)
}

// alive reports whether pid runs (a zombie, waiting for a parent that is gone, does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// TestChildrenDieWithTheSupervisor: when the supervisor is killed hard (SIGKILL: no chance to
// stop anything), the programs it started die with it instead of keeping their ports.
func TestChildrenDieWithTheSupervisor(t *testing.T) {
	sup, line := helper(t, "launch")
	pid, err := strconv.Atoi(line)
	if err != nil {
		t.Fatalf("child pid %q: %v", line, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if !alive(pid) {
		t.Fatalf("child %d is not running", pid)
	}
	if err := sup.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = sup.Wait()
	// Not a timing assertion: the kernel signals the child at once; the bound only keeps a
	// failing run from hanging.
	for deadline := time.Now().Add(30 * time.Second); alive(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d outlived its supervisor", pid)
		}
	}
}

// TestPortInUseNamesTheHolder: a port of the stack that another program holds stops the start
// with a message naming the port, the stack's program that wanted it, and the holder (pid and
// command line), before anything is started.
func TestPortInUseNamesTheHolder(t *testing.T) {
	holder, line := helper(t, "listen")
	port, err := strconv.Atoi(line)
	if err != nil {
		t.Fatalf("port %q: %v", line, err)
	}
	dir := t.TempDir()
	_, err = Start(t.Context(), Config{
		StateDir: filepath.Join(dir, "state"), BinDir: filepath.Join(dir, "nobin"), ToolsDir: filepath.Join(dir, "notools"),
		RulesDir: dir, AlertmanagerConfig: filepath.Join("..", "alertmanager", "alertmanager.yml"), Catalogue: "catalogue.yml",
		ScrapeInterval: time.Second, EvalInterval: time.Second,
		Ports: Ports{VictoriaMetrics: port},
	})
	if err == nil {
		t.Fatal("Start succeeded on a port in use")
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{"port " + line, "victoria-metrics", "pid " + strconv.Itoa(holder.Process.Pid), filepath.Base(os.Args[0])} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if strings.Contains(msg, "usage-exporter: stat") {
		t.Errorf("programs were started before the ports were checked: %q", msg)
	}
}

func TestListeningInodes(t *testing.T) {
	// /proc/net/tcp and tcp6 lines: a listener on 127.0.0.1:9477 (0x2505), one on [::]:8428
	// (0x20EC), and a connection from port 9477 that is not a listener.
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2505 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:2505 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1
`
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:20EC 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 100 0 0 10 0
`
	if got := listeningInodes(tcp, 9477); len(got) != 1 || !got["1111"] {
		t.Errorf("9477: %v, want the listener's inode 1111 only", got)
	}
	if got := listeningInodes(tcp6, 8428); len(got) != 1 || !got["3333"] {
		t.Errorf("8428: %v", got)
	}
	if got := listeningInodes(tcp, 8428); len(got) != 0 {
		t.Errorf("8428 in tcp: %v", got)
	}
}

// TestUnknownHolderNamesThePortOnly: when /proc shows no listener on the port (another user's
// process, another network namespace), the message still names the port and says how to look.
func TestUnknownHolderNamesThePortOnly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nobody listens now: portHolders finds nothing, as for an invisible holder
	if h := portHolders(port); len(h) != 0 {
		t.Fatalf("holders of a closed port: %v", h)
	}
	if msg := describeHolder(port); !strings.Contains(msg, "lsof -i :"+strconv.Itoa(port)) || strings.Contains(msg, "pid") {
		t.Errorf("describeHolder = %q", msg)
	}
	// And a listener of this very process is found, with its command line.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h := portHolders(ln.Addr().(*net.TCPAddr).Port)
	if len(h) != 1 || h[0].pid != os.Getpid() || !strings.Contains(h[0].cmdline, filepath.Base(os.Args[0])) {
		t.Errorf("holders of our own listener: %+v", h)
	}
}

// Package loadgen is the benchmarks' load generator: it starts a real usage-exporter binary on
// loopback, sends it requests from concurrent clients measuring each one's latency, and reads
// the process's resources from /proc (bench/ingest, bench/soak).
package loadgen

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FreeAddr is a free loopback TCP address.
func FreeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Proc is a started exporter with its own store in a temporary directory.
type Proc struct {
	Cmd *exec.Cmd
	URL string
	Dir string // holds the store, Dir/data
}

// StorePath is the store directory.
func (p *Proc) StorePath() string { return filepath.Join(p.Dir, "data") }

// StartBinary starts the exporter bin on a free port with a fresh store and waits until it is
// ready.
func StartBinary(bin string, extra ...string) (*Proc, error) {
	dir, err := os.MkdirTemp("", "usagemeter-bench")
	if err != nil {
		return nil, err
	}
	addr := FreeAddr()
	args := append([]string{"--web.listen-address=" + addr, "--storage.path=" + filepath.Join(dir, "data"), "--log.level=warn"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Cmd: cmd, URL: "http://" + addr, Dir: dir}
	return p, WaitReady(p.URL + "/-/ready")
}

// Stop stops the exporter and removes its store.
func (p *Proc) Stop() {
	p.Cmd.Process.Signal(os.Interrupt)
	p.Cmd.Wait()
	os.RemoveAll(p.Dir)
}

// WaitReady polls url until it answers 200, for up to 30 s.
func WaitReady(url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready", url)
}

// Load runs n requests from clients concurrent clients and returns each one's latency, and
// the last error seen.
func Load(clients, n int, request func(client *http.Client, i int) error) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed error
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{}
			for i := range work {
				t0 := time.Now()
				err := request(client, i)
				lat[i] = time.Since(t0)
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return lat, failed
}

// Post sends body and checks the answer's status.
func Post(client *http.Client, url, contentType string, body io.Reader, want int) error {
	resp, err := client.Post(url, contentType, body)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return nil
}

// ProcCPU is a process's user and system CPU time so far (Linux /proc; zero elsewhere).
func ProcCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}

// NumCPU is the machine's CPU count as nproc reports it.
func NumCPU() int {
	out, _ := exec.Command("nproc").Output()
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// RSS is a process's resident set size in bytes (Linux /proc; zero elsewhere).
func RSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// OpenFiles is the number of a process's open file descriptors (Linux /proc; -1 elsewhere).
func OpenFiles(pid int) int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(entries)
}

// DirBytes is the apparent size of the files under dir.
func DirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// SumMetric sums every series of a metric in a text exposition.
func SumMetric(url, name string) (float64, error) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, nil
}

// FlushDerived asks for usage, which makes the exporter write every derived change first.
func FlushDerived(url string) error {
	resp, err := http.Get(url + "/v1/usage?tenant=tenant-0001&meter=ai_tokens")
	if err != nil {
		return fmt.Errorf("flushing derived usage: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("flushing derived usage: GET /v1/usage: %s", resp.Status)
	}
	return nil
}

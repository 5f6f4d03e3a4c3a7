package fault

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs of size bytes; it needs root (CI runs as root) and skips otherwise.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the full-disk test mounts a small tmpfs, which needs root (CI runs as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

func available(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fillTo writes a filler file until about leave bytes are free.
func fillTo(t *testing.T, path, dir string, leave int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	for free := available(t, dir); free > leave; free = available(t, dir) {
		if _, err := f.Write(buf[:min(int64(len(buf)), free-leave)]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

// A disk that fills under load: writes are refused with 507 and Retry-After before the store
// runs out, the process stays up, reads, /metrics and /-/healthy answer, /-/ready is false, one
// log line says why; once a file is deleted, writes resume without a restart, and every event
// acknowledged is counted once.
func TestFullDisk(t *testing.T) {
	dir := mountTmpfs(t, 64<<20)
	store := filepath.Join(dir, "data")
	e := start(t, store, "--storage.min-free-bytes=8MiB")
	c := &client{url: e.url, now: time.Now().UTC(), padded: true}
	filler := filepath.Join(dir, "filler")
	fillTo(t, filler, dir, 16<<20)

	var refusal answer
	for i := 0; ; i++ {
		if i > 5000 {
			t.Fatalf("no write refused after %d events", c.acked)
		}
		a := c.send(t, 200)
		if a.status == http.StatusAccepted {
			continue
		}
		if a.status != http.StatusInsufficientStorage {
			t.Fatalf("POST /v1/events on a filling disk: %d %s", a.status, a.body)
		}
		refusal = a
		break
	}
	t.Logf("client got: 507 Retry-After=%s %s", refusal.header.Get("Retry-After"), refusal.body)
	if refusal.header.Get("Retry-After") == "" || refusal.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("507 headers: %v", refusal.header)
	}
	var p struct {
		Type, Title, Detail string
		Status              int
	}
	if err := json.Unmarshal(refusal.body, &p); err != nil || p.Status != 507 || !strings.Contains(p.Detail, "free") || p.Type == "" {
		t.Errorf("507 problem body: %s (%v)", refusal.body, err)
	}
	// Many more refusals: still one log line.
	for range 50 {
		if a := c.send(t, 200); a.status != http.StatusInsufficientStorage {
			t.Fatalf("POST /v1/events on a full disk: %d %s", a.status, a.body)
		}
	}
	if n := strings.Count(e.log.String(), "the store refuses writes"); n != 1 {
		t.Errorf("%d log lines say the store refuses writes, want 1:\n%s", n, e.log)
	}
	// Reads, metrics and liveness answer; readiness does not.
	if got := counted(t, e.url, c.now); got != c.acked {
		t.Errorf("while refusing writes the ledger counts %d events, the client saw %d acknowledged", got, c.acked)
	}
	if code, body := get(e.url + "/-/healthy"); code != 200 {
		t.Errorf("/-/healthy on a full disk: %d %s", code, body)
	}
	if code, body := get(e.url + "/-/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "insufficient_storage") {
		t.Errorf("/-/ready on a full disk: %d %s", code, body)
	}
	code, metrics := get(e.url + "/metrics")
	if code != 200 || !strings.Contains(metrics, `usage_exporter_storage_writable{reason="insufficient_storage"} 0`) ||
		!strings.Contains(metrics, "usage_exporter_storage_free_bytes ") || !strings.Contains(metrics, `usage_exporter_events_rejected_total{reason="insufficient_storage"}`) {
		t.Errorf("/metrics on a full disk: %d\n%s", code, grepLines(metrics, "usage_exporter_storage", "rejected"))
	}

	// Space freed: writes resume, no restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for code, _ := get(e.url + "/-/ready"); code != 200; code, _ = get(e.url + "/-/ready") {
		if time.Now().After(deadline) {
			t.Fatalf("not ready again after space was freed:\n%s", e.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if a := c.send(t, 200); a.status != http.StatusAccepted {
		t.Fatalf("POST /v1/events after space was freed: %d %s", a.status, a.body)
	}
	if !strings.Contains(e.log.String(), "disk space is available again") {
		t.Errorf("no log line says writes resumed:\n%s", e.log)
	}
	noPanic(t, e.log.String())
	e.stop(t)
	checkCounted(t, store, c, "--storage.min-free-bytes=8MiB")
}

// Restarted with the disk still full, the exporter starts, serves reads, is not ready, and
// does not flood its log.
func TestStartOnFullDisk(t *testing.T) {
	dir := mountTmpfs(t, 64<<20)
	store := filepath.Join(dir, "data")
	e := start(t, store, "--storage.min-free-bytes=8MiB")
	c := &client{url: e.url, now: time.Now().UTC()}
	if a := c.send(t, 500); a.status != 202 {
		t.Fatalf("POST /v1/events: %d %s", a.status, a.body)
	}
	e.stop(t)
	fillTo(t, filepath.Join(dir, "filler"), dir, 4<<20)

	e = launch(t, store, "--storage.min-free-bytes=8MiB")
	c.url = e.url
	deadline := time.Now().Add(60 * time.Second)
	for code, _ := get(e.url + "/-/healthy"); code != 200; code, _ = get(e.url + "/-/healthy") {
		if time.Now().After(deadline) {
			t.Fatalf("the exporter did not come up on a full disk:\n%s", e.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body := get(e.url + "/-/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/-/ready on a full disk: %d %s", code, body)
	}
	if got := counted(t, e.url, c.now); got != c.acked {
		t.Errorf("on a full disk the ledger counts %d events, the client saw %d acknowledged", got, c.acked)
	}
	if a := c.send(t, 10); a.status != http.StatusInsufficientStorage {
		t.Errorf("POST /v1/events on a full disk: %d %s", a.status, a.body)
	}
	time.Sleep(2 * time.Second) // let a flooding log show itself
	if n := strings.Count(e.log.String(), "\n"); n > 30 {
		t.Errorf("%d log lines within seconds of a start on a full disk:\n%s", n, e.log)
	}
	noPanic(t, e.log.String())
	e.stop(t)
}

func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

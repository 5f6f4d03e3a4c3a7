package backup_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/exporter/meter"
	"github.com/usagemeter/usagemeter/internal/testproc"
	"github.com/usagemeter/usagemeter/simulate"
)

// Fault tests with the real binaries (make build-go): usagectl and the exporter killed with
// SIGKILL in the middle of a backup stream.

func binaries(t *testing.T) (exporterBin, usagectlBin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("fault test with the real binaries skipped in -short mode")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	exporterBin, usagectlBin = filepath.Join(root, "bin", "usage-exporter"), filepath.Join(root, "bin", "usagectl")
	for _, b := range []string{exporterBin, usagectlBin} {
		if _, err := os.Stat(b); err != nil {
			t.Skipf("the fault test needs %s: run `make build-go` (make test does it first)", b)
		}
	}
	return exporterBin, usagectlBin
}

type exporterProc struct {
	cmd *exec.Cmd
	url string
	log *testproc.Output
}

func startExporter(t *testing.T, bin, store, cfg string) *exporterProc {
	t.Helper()
	addr := testproc.FreeAddr(t)
	e := &exporterProc{url: "http://" + addr, log: &testproc.Output{}}
	e.cmd = exec.Command(bin, "--web.listen-address="+addr, "--storage.path="+store, "--config.file="+cfg)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.kill)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(e.url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return e
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the exporter did not become ready:\n%s", e.log)
	return nil
}

func (e *exporterProc) kill() {
	if e.cmd.ProcessState == nil {
		e.cmd.Process.Signal(syscall.SIGKILL)
		e.cmd.Wait()
	}
}

func (e *exporterProc) stop(t *testing.T) {
	t.Helper()
	e.cmd.Process.Signal(syscall.SIGTERM)
	if err := e.cmd.Wait(); err != nil {
		t.Fatalf("the exporter did not stop cleanly: %v\n%s", err, e.log)
	}
}

// load is the events sent to an exporter, by request, with what was acknowledged.
type load struct {
	g      *simulate.Generator
	mu     sync.Mutex
	bodies [][]byte
	acked  []bool
}

func (l *load) batch(n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var body []byte
	now := time.Now()
	for j := range n {
		body = l.g.Next(body, now.Add(-time.Duration(len(l.bodies)*n+j)*3*time.Second))
		body = append(body, '\n')
	}
	l.bodies = append(l.bodies, body)
	l.acked = append(l.acked, false)
	return len(l.bodies) - 1
}

// send posts request i; it is marked acknowledged on 202.
func (l *load) send(url string, i int) (accepted, duplicates int, err error) {
	l.mu.Lock()
	body := l.bodies[i]
	l.mu.Unlock()
	resp, err := http.Post(url+"/v1/events", "application/x-ndjson", bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return 0, 0, fmt.Errorf("POST /v1/events: %s: %s", resp.Status, b)
	}
	var a struct{ Accepted, Duplicates int }
	if err := json.Unmarshal(b, &a); err != nil {
		return 0, 0, err
	}
	l.mu.Lock()
	l.acked[i] = true
	l.mu.Unlock()
	return a.Accepted, a.Duplicates, nil
}

// until sends new requests from clients goroutines until stop is closed, ignoring failures
// (the exporter may be killed under them).
func (l *load) until(url string, clients int, stop chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := l.send(url, l.batch(200)); err != nil {
					return
				}
			}
		}()
	}
	return &wg
}

// usageAnswers is /v1/usage, grouped by every dimension and by day, for every default meter of
// a few tenants.
func usageAnswers(t *testing.T, base string) string {
	t.Helper()
	to := time.Now().Truncate(time.Hour).Add(2 * time.Hour)
	from := to.Add(-40 * 24 * time.Hour)
	var b strings.Builder
	for _, tenant := range []string{"tenant-0001", "tenant-0002", "tenant-0003", "tenant-0007"} {
		for _, d := range meter.Defaults() {
			q := url.Values{"tenant": {tenant}, "meter": {d.Name}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)},
				"window": {"day"}, "group_by": {strings.Join(d.Dimensions, ",")}}
			resp, err := http.Get(base + "/v1/usage?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("/v1/usage %s: %s", q.Encode(), body)
			}
			fmt.Fprintf(&b, "%s %s %s\n", tenant, d.Name, body)
		}
	}
	return b.String()
}

type result struct {
	code   int
	output string
}

func usagectl(t *testing.T, bin string, args ...string) result {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, string(out)}
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestKill9DuringBackup(t *testing.T) {
	exporterBin, usagectlBin := binaries(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "archive.key")
	os.WriteFile(keyFile, []byte(hex.EncodeToString(bytes.Repeat([]byte{5}, 32))), 0o600)
	cfg := filepath.Join(dir, "config.yml")
	os.WriteFile(cfg, []byte("retention:\n  key_file: "+keyFile+"\n"), 0o600)
	store := filepath.Join(dir, "data")
	e := startExporter(t, exporterBin, store, cfg)
	l := &load{g: simulate.NewGenerator(20, 11)}
	// Enough for a store of well over the socket buffers between the exporter and usagectl, so
	// that a slow reader holds the exporter in the middle of its stream.
	for range 300 {
		if _, _, err := l.send(e.url, l.batch(200)); err != nil {
			t.Fatal(err)
		}
	}

	// 1. A whole backup, quiet store: the restored copy answers as the original did then.
	atSnapshot := usageAnswers(t, e.url)
	good := filepath.Join(dir, "good"+".umbak")
	if r := usagectl(t, usagectlBin, "backup", "--url", e.url, "--output", good, "--config.file", cfg); r.code != 0 || !strings.Contains(r.output, "verified") {
		t.Fatalf("backup: exit %d:\n%s", r.code, r.output)
	}
	for range 20 {
		l.send(e.url, l.batch(200))
	}

	// 2. usagectl killed in the middle of the stream: its partial file is refused by restore,
	// and the exporter, unharmed, drops its checkpoint.
	cut := filepath.Join(dir, "cut.umbak")
	slow := exec.Command(usagectlBin, "backup", "--url", e.url, "--output", cut, "--limit-rate", "512KiB")
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "usagectl to write some of the backup", func() bool { return fileSize(cut+".partial") > 256<<10 })
	slow.Process.Signal(syscall.SIGKILL)
	slow.Wait()
	if _, err := os.Stat(cut); err == nil {
		t.Fatal("a killed backup left a file under the real name")
	}
	refused := filepath.Join(dir, "refused")
	r := usagectl(t, usagectlBin, "restore", cut+".partial", "--storage.path", refused, "--config.file", cfg)
	if r.code == 0 || !strings.Contains(r.output, "truncated") || !strings.Contains(r.output, "nothing was restored") {
		t.Fatalf("restore of the partial backup: exit %d, want a refusal saying it is truncated:\n%s", r.code, r.output)
	}
	t.Logf("restore of the backup cut by kill -9 of usagectl: %s", lastLine(r.output))
	if entries, _ := os.ReadDir(refused); len(entries) != 0 {
		t.Fatalf("a refused restore left %d entries in the store directory", len(entries))
	}
	waitFor(t, "the exporter to drop the checkpoint of the broken backup", func() bool {
		m, _ := filepath.Glob(filepath.Join(store, "auxiliary", "backup-*"))
		return len(m) == 0
	})

	// 3. The exporter killed in the middle of a backup, under load: usagectl says the backup
	// is incomplete and keeps nothing; the exporter restarts cleanly and counts every
	// acknowledged event once.
	stopLoad := make(chan struct{})
	loading := l.until(e.url, 3, stopLoad)
	broken := filepath.Join(dir, "broken.umbak")
	doneBefore := strings.Count(e.log.String(), "backup done")
	var out bytes.Buffer
	victim := exec.Command(usagectlBin, "backup", "--url", e.url, "--output", broken, "--limit-rate", "512KiB")
	victim.Stdout, victim.Stderr = &out, &out
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "usagectl to receive some of the backup", func() bool { return fileSize(broken+".partial") > 256<<10 })
	if strings.Count(e.log.String(), "backup done") != doneBefore {
		t.Fatalf("the exporter finished the backup before the kill: the store is too small for this test\n%s", e.log)
	}
	e.kill()
	close(stopLoad)
	loading.Wait()
	err := victim.Wait()
	if err == nil || !strings.Contains(out.String(), "incomplete") || !strings.Contains(out.String(), "nothing was written") {
		t.Fatalf("usagectl after the exporter died: %v, want a clear failure:\n%s", err, out.String())
	}
	t.Logf("usagectl when the exporter was killed under it: %s", lastLine(out.String()))
	for _, p := range []string{broken, broken + ".partial"} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("usagectl kept %s of a broken backup", p)
		}
	}
	e = startExporter(t, exporterBin, store, cfg)
	if m, _ := filepath.Glob(filepath.Join(store, "auxiliary", "backup-*")); len(m) != 0 {
		t.Fatalf("the restarted exporter kept the stale checkpoint %v", m)
	}
	if !strings.Contains(e.log.String(), "removed the checkpoints of backups that did not finish") {
		t.Fatalf("the restart did not say it removed the stale checkpoint:\n%s", e.log)
	}
	// Every acknowledged request is there: sent again, all duplicates. Those whose answer the
	// kill swallowed are sent again too, so that every event is stored exactly once.
	totals := simulate.NewTotals(meter.Defaults())
	ackedBefore := 0
	for i := range l.bodies {
		wasAcked := l.acked[i]
		acc, dup, err := l.send(e.url, i)
		if err != nil {
			t.Fatal(err)
		}
		if wasAcked {
			ackedBefore++
			if acc != 0 {
				t.Fatalf("request %d was acknowledged before the kill, but %d of its events were missing after the restart (%d duplicates)", i, acc, dup)
			}
		}
		for line := range bytes.Lines(l.bodies[i]) {
			if err := totals.Add(bytes.TrimSpace(line)); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d requests acknowledged before the kill, %d sent in all", ackedBefore, len(l.bodies))
	checkTotals(t, e.url, totals)

	// 4. The good backup restores; the restored store answers as the original did when the
	// backup was taken, and the ledger verifies.
	restored := filepath.Join(dir, "restored")
	if r := usagectl(t, usagectlBin, "restore", good, "--storage.path", restored, "--config.file", cfg); r.code != 0 {
		t.Fatalf("restore: exit %d:\n%s", r.code, r.output)
	}
	if r := usagectl(t, usagectlBin, "ledger", "verify", "--storage.path", restored); r.code != 0 || !strings.Contains(r.output, "ledger OK") {
		t.Fatalf("ledger verify on the restored store: exit %d:\n%s", r.code, r.output)
	}
	copyExporter := startExporter(t, exporterBin, restored, cfg)
	if got := usageAnswers(t, copyExporter.url); got != atSnapshot {
		t.Fatalf("the restored store answers differently from the original at the backup:\n got %.1500s\nwant %.1500s", got, atSnapshot)
	}
	copyExporter.stop(t)
	final := usageAnswers(t, e.url)
	e.stop(t)
	if r := usagectl(t, usagectlBin, "ledger", "verify", "--storage.path", store); r.code != 0 {
		t.Fatalf("ledger verify on the original after the crash: exit %d:\n%s", r.code, r.output)
	}

	// 5. Offline, the exporter stopped: usagectl backs the store up itself, sealed with the
	// key, and the restored copy answers as the original.
	offline := filepath.Join(dir, "offline.umbak")
	if r := usagectl(t, usagectlBin, "backup", "--storage.path", store, "--config.file", cfg, "--output", offline); r.code != 0 || !strings.Contains(r.output, "verified") {
		t.Fatalf("offline backup: exit %d:\n%s", r.code, r.output)
	}
	if r := usagectl(t, usagectlBin, "restore", offline, "--check-only"); r.code == 0 || !strings.Contains(r.output, "encrypted") {
		t.Fatalf("a sealed backup checked without its key: exit %d:\n%s", r.code, r.output)
	}
	again := filepath.Join(dir, "again")
	if r := usagectl(t, usagectlBin, "restore", offline, "--storage.path", again, "--config.file", cfg); r.code != 0 {
		t.Fatalf("restore of the offline backup: exit %d:\n%s", r.code, r.output)
	}
	copyExporter = startExporter(t, exporterBin, again, cfg)
	if got := usageAnswers(t, copyExporter.url); got != final {
		t.Fatalf("the store restored from the offline backup answers differently:\n got %.1500s\nwant %.1500s", got, final)
	}
	copyExporter.stop(t)
}

// checkTotals compares every tenant's /v1/usage total of every summed or counted meter with the
// totals of the events sent.
func checkTotals(t *testing.T, base string, totals *simulate.Totals) {
	t.Helper()
	to := time.Now().Truncate(time.Hour).Add(2 * time.Hour)
	from := to.Add(-40 * 24 * time.Hour)
	checked := 0
	for _, tenant := range totals.Tenants() {
		for _, d := range meter.Defaults() {
			if d.Aggregation != meter.Sum && d.Aggregation != meter.Count {
				continue
			}
			q := url.Values{"tenant": {tenant}, "meter": {d.Name}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}}
			resp, err := http.Get(base + "/v1/usage?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			var body struct{ Rows []struct{ Value int64 } }
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			var got int64
			for _, r := range body.Rows {
				got += r.Value
			}
			if want := totals.Value(tenant, d.Name); got != want {
				t.Errorf("/v1/usage %s %s = %d, want %d (every event once)", tenant, d.Name, got, want)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("nothing was checked")
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

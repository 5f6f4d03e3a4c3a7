// Package fault runs the real usage-exporter and usagectl binaries against faults of one node:
// a full disk, a damaged or truncated write-ahead log, a damaged or missing table, a second
// process on the same store. Each test keeps the client's own record of what was acknowledged
// (202) and checks, with the same accounting, that the ledger counts every acknowledged event
// exactly once, and that the operator is told clearly what happened (log text, exit code).
// Add further faults beside these, one file each.
package fault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/internal/testproc"
)

var exporterBin, usagectlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "usagemeter-fault")
	if err != nil {
		panic(err)
	}
	exporterBin = filepath.Join(dir, "usage-exporter")
	usagectlBin = filepath.Join(dir, "usagectl")
	for bin, pkg := range map[string]string{exporterBin: "./cmd/usage-exporter", usagectlBin: "./cmd/usagectl"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type exporter struct {
	cmd  *exec.Cmd
	url  string
	log  *testproc.Output
	done chan struct{}
	err  error // of Wait, once done is closed
}

// launch starts the exporter on store and returns at once.
func launch(t *testing.T, store string, args ...string) *exporter {
	t.Helper()
	addr := testproc.FreeAddr(t)
	e := &exporter{url: "http://" + addr, log: &testproc.Output{}, done: make(chan struct{})}
	e.cmd = exec.Command(exporterBin, append([]string{"--web.listen-address=" + addr, "--storage.path=" + store}, args...)...)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.err = e.cmd.Wait(); close(e.done) }()
	t.Cleanup(func() {
		select {
		case <-e.done:
		default:
			_ = e.cmd.Process.Kill()
			<-e.done
		}
	})
	return e
}

// start launches the exporter and waits until it is ready.
func start(t *testing.T, store string, args ...string) *exporter {
	t.Helper()
	e := launch(t, store, args...)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-e.done:
			t.Fatalf("the exporter exited before it was ready (%v):\n%s", e.err, e.log)
		default:
		}
		if code, _ := get(e.url + "/-/ready"); code == http.StatusOK {
			return e
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, ready := get(e.url + "/-/ready")
	t.Fatalf("the exporter did not become ready (%s):\n%s", ready, e.log)
	return nil
}

// refused launches the exporter on a store it must refuse, and returns its exit code and output.
func refused(t *testing.T, store string) (int, string) {
	t.Helper()
	e := launch(t, store)
	select {
	case <-e.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the exporter did not refuse the store:\n%s", e.log)
	}
	var ee *exec.ExitError
	if !errors.As(e.err, &ee) {
		t.Fatalf("the exporter exited with %v, want a failure:\n%s", e.err, e.log)
	}
	return ee.ExitCode(), e.log.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (e *exporter) stop(t *testing.T) {
	t.Helper()
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the exporter did not stop:\n%s", e.log)
	}
	if e.err != nil {
		t.Fatalf("the exporter stopped with %v:\n%s", e.err, e.log)
	}
}

// kill ends the exporter as a crash would.
func (e *exporter) kill(t *testing.T) {
	t.Helper()
	_ = e.cmd.Process.Kill()
	<-e.done
}

func get(u string) (int, string) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// client sends batches of feature.used events of tenant "t" and keeps its record of what
// the exporter acknowledged.
type client struct {
	url    string
	next   int
	acked  int64 // events acknowledged (202), new or duplicate
	now    time.Time
	padded bool
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// send posts n new events; an event is acknowledged only by a 202.
func (c *client) send(t *testing.T, n int) answer {
	t.Helper()
	var b bytes.Buffer
	pad := ""
	if c.padded {
		pad = strings.Repeat("x", 200) // fills a disk sooner
	}
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"specversion":"1.0","id":"e%d","source":"fault","type":"feature.used","time":%q,"data":{"tenant":"t","user":"u%d","feature":"f%s"}}`+"\n",
			c.next+i, c.now.Format(time.RFC3339), (c.next+i)%20, pad)
	}
	resp, err := http.Post(c.url+"/v1/events", "application/x-ndjson", &b)
	if err != nil {
		t.Fatalf("POST /v1/events got no answer: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: body}
	if resp.StatusCode == http.StatusAccepted {
		var res struct{ Accepted, Duplicates int }
		if err := json.Unmarshal(body, &res); err != nil || res.Accepted+res.Duplicates != n {
			t.Fatalf("202 with %s (%v), want %d events", body, err, n)
		}
		c.acked += int64(n)
		c.next += n
	}
	return a
}

// counted is what the ledger says it holds: the tenant's feature uses, over all time.
func counted(t *testing.T, base string, now time.Time) int64 {
	t.Helper()
	q := url.Values{"tenant": {"t"}, "meter": {"feature_uses"},
		"from": {now.Add(-24 * time.Hour).Truncate(time.Hour).Format(time.RFC3339)},
		"to":   {now.Add(2 * time.Hour).Truncate(time.Hour).Format(time.RFC3339)}}
	code, body := get(base + "/v1/usage?" + q.Encode())
	if code != http.StatusOK {
		t.Fatalf("GET /v1/usage: %d %s", code, body)
	}
	var res struct{ Rows []struct{ Value int64 } }
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, r := range res.Rows {
		n += r.Value
	}
	return n
}

// checkCounted checks that the store at dir counts exactly what the client saw acknowledged,
// through the API of a fresh exporter and through usagectl ledger verify; it stops the exporter.
func checkCounted(t *testing.T, store string, c *client, args ...string) {
	t.Helper()
	checkCountedLess(t, store, c, 0, args...)
}

// checkCountedLess is checkCounted for a store that lost some acknowledged events, as reported.
func checkCountedLess(t *testing.T, store string, c *client, lost int64, args ...string) {
	t.Helper()
	e := start(t, store, args...)
	if got := counted(t, e.url, c.now); got != c.acked-lost {
		t.Errorf("the ledger counts %d events, the client saw %d acknowledged and %d were reported lost", got, c.acked, lost)
	}
	e.stop(t)
	out, err := exec.Command(usagectlBin, "ledger", "verify", "--storage.path="+store).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ledger OK") {
		t.Errorf("usagectl ledger verify: %v\n%s", err, out)
	}
}

// copyDir copies the store (a backup, taken while no exporter runs).
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

// noPanic fails if out holds a panic or a stack trace.
func noPanic(t *testing.T, out string) {
	t.Helper()
	for _, s := range []string{"panic:", "\ngoroutine ", "runtime.goexit", "stack trace"} {
		if strings.Contains(out, s) {
			t.Errorf("the output holds %q (a panic or a stack trace):\n%s", s, out)
		}
	}
}

func itoa(n int) string { return fmt.Sprint(n) }

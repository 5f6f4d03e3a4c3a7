package localstack_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/deploy/localstack"
)

// A shell example of the README or docs/*.md: a fenced block labelled sh, bash or shell. The
// HTML comment on the line before it says how it runs against the local stack:
//
//	<!-- not-runnable: why -->   it cannot run there (needs Docker, runs forever, ...): say why
//	<!-- after-stop: why -->     it runs offline on the stack's store, once the stack is stopped
//	<!-- file: NAME -->          (any block) its text is written to NAME in the working directory
//
// Every other shell block runs, in document order, against a started stack.
type docExample struct {
	file      string
	line      int
	lang      string
	body      string
	skip      string // not-runnable: the reason
	afterStop string // after-stop: the reason
	writeAs   string
}

var (
	markerRE = regexp.MustCompile(`^<!--\s*(not-runnable|after-stop|file):\s*(.*?)\s*-->$`)
	shellish = regexp.MustCompile(`^(usagectl|curl|make|bin/|go |kubectl|docker|\./)`)
)

// docFiles are the documents whose examples must run: the README and docs/**/*.md.
func docFiles(t *testing.T, root string) []string {
	t.Helper()
	files := []string{filepath.Join(root, "README.md")}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// docExamples reads every fenced block of a document, with its marker.
func docExamples(path string) ([]docExample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []docExample
	var cur *docExample
	prev := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &docExample{file: path, line: n, lang: strings.TrimSpace(strings.TrimPrefix(line, "```"))}
			if m := markerRE.FindStringSubmatch(strings.TrimSpace(prev)); m != nil {
				if m[2] == "" {
					return nil, fmt.Errorf("%s:%d: %s without a reason", path, n-1, m[1])
				}
				switch m[1] {
				case "not-runnable":
					cur.skip = m[2]
				case "after-stop":
					cur.afterStop = m[2]
				case "file":
					cur.writeAs = m[2]
				}
			} else if strings.HasPrefix(strings.TrimSpace(prev), "<!--") && strings.Contains(prev, "runnable") {
				return nil, fmt.Errorf("%s:%d: a marker must read <!-- not-runnable: why -->", path, n-1)
			}
		case cur != nil && strings.HasPrefix(line, "```"):
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.body += line + "\n"
		}
		if strings.TrimSpace(line) != "" {
			prev = line
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: unclosed code block", path, cur.line)
	}
	return out, sc.Err()
}

func (e docExample) shell() bool { return e.lang == "sh" || e.lang == "bash" || e.lang == "shell" }

func (e docExample) String() string { return fmt.Sprintf("%s:%d", filepath.Base(e.file), e.line) }

// TestDocExamplesAreMarked needs no stack: every shell block of the docs is labelled as shell and
// either runs or says why it cannot; a block of commands left unlabelled would escape the run.
func TestDocExamplesAreMarked(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	shells := 0
	for _, f := range docFiles(t, root) {
		exs, err := docExamples(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range exs {
			first := strings.TrimSpace(strings.SplitN(strings.TrimSpace(e.body), "\n", 2)[0])
			if e.lang == "" && shellish.MatchString(first) {
				t.Errorf("%s: an unlabelled block of commands (%q): label it sh (and mark it if it cannot run on the local stack) or text", e, first)
			}
			if e.shell() {
				shells++
			}
		}
	}
	if shells < 10 {
		t.Fatalf("only %d shell examples found: is the extraction broken?", shells)
	}
}

// TestDocExamplesRun runs every runnable shell example of the README and docs/ against a started
// local stack, in document order (README first), from a scratch directory, with bin/ on the PATH
// and the documented addresses (localhost:9477, ...) pointed at the stack's free ports. curl
// fails on an HTTP error (--fail-with-body), so an example answered 4xx fails. Examples marked
// after-stop run once the stack is stopped, on its store (./data). Bounded: 90 s per example.
func TestDocExamplesRun(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	var missing []string
	for _, p := range []string{"bin/usage-exporter", "bin/usagectl", "bin/tools/victoria-metrics", "bin/tools/vmalert", "bin/tools/alertmanager"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			missing = append(missing, p)
		}
	}
	if _, err := exec.LookPath("bash"); err != nil {
		missing = append(missing, "bash")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		missing = append(missing, "curl")
	}
	if len(missing) > 0 {
		t.Skipf("the docs' examples need %s: run `make build tools` (make test does both first)", strings.Join(missing, ", "))
	}
	var all []docExample
	for _, f := range docFiles(t, root) {
		exs, err := docExamples(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, exs...)
	}

	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	stack, err := localstack.Start(t.Context(), localstack.Config{
		StateDir: state, BinDir: filepath.Join(root, "bin"), ToolsDir: filepath.Join(root, "bin", "tools"),
		RulesDir: filepath.Join(root, "rules"), AlertmanagerConfig: filepath.Join(root, "deploy", "alertmanager", "alertmanager.yml"),
		Catalogue:      filepath.Join(root, "deploy", "localstack", "catalogue.yml"),
		ScrapeInterval: time.Second, EvalInterval: time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("starting the stack: %v", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stack.Stop()
		}
	}()
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	hostOf := func(u string) string { p, _ := url.Parse(u); return p.Host }
	addrs := strings.NewReplacer(
		"localhost:9477", hostOf(stack.URLs.Exporter), "127.0.0.1:9477", hostOf(stack.URLs.Exporter),
		"localhost:8428", hostOf(stack.URLs.VictoriaMetrics), "127.0.0.1:8428", hostOf(stack.URLs.VictoriaMetrics),
		"localhost:9093", hostOf(stack.URLs.Alertmanager), "127.0.0.1:9093", hostOf(stack.URLs.Alertmanager),
	)
	// The local stack has no authentication: the examples' $KEY and $ADMIN may stay empty.
	prelude := fmt.Sprintf("set -euo pipefail\nexport PATH=%q:\"$PATH\" USAGEMETER_URL=%q KEY= ADMIN=\ncurl() { command curl --fail-with-body -sS \"$@\"; }\n",
		filepath.Join(root, "bin"), stack.URLs.Exporter)
	run := func(e docExample, body string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-c", prelude+body)
		cmd.Dir = work
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s does not run as written (%v, after %s):\n%s\n--- output:\n%s", e, err, time.Since(start).Round(time.Millisecond), body, tail(string(out), 4000))
			return
		}
		t.Logf("%s ran in %s", e, time.Since(start).Round(time.Millisecond))
	}
	var later []docExample
	ran, skipped := 0, 0
	for _, e := range all {
		if e.writeAs != "" {
			if err := os.WriteFile(filepath.Join(work, e.writeAs), []byte(e.body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		switch {
		case !e.shell():
		case e.skip != "":
			skipped++
			t.Logf("%s not runnable on the local stack: %s", e, e.skip)
		case e.afterStop != "":
			later = append(later, e)
		default:
			ran++
			run(e, addrs.Replace(e.body))
		}
	}
	stopped = true
	if err := stack.Stop(); err != nil {
		t.Fatalf("stopping the stack: %v", err)
	}
	for _, e := range later {
		ran++
		run(e, strings.ReplaceAll(e.body, "./data", filepath.Join(state, "data")))
	}
	t.Logf("%d examples ran, %d are marked not runnable on the local stack", ran, skipped)
}

package usagectl

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// TestMain lets the tests run usagectl as a process (exit codes, stdout and stderr as a user sees
// them): the test binary re-executes itself with USAGECTL_TEST_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("USAGECTL_TEST_MAIN") == "1" {
		os.Exit(Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func usagectl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "USAGECTL_TEST_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// TestVerifiersRefuseAMissingStore: neither verifier creates what it verifies; both refuse a
// missing store, or a directory without one, the same way (exit 1, the same message), and both
// pass on a real store (issue #19: audit verify created an empty store and said "intact").
func TestVerifiersRefuseAMissingStore(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nothing-here")
	empty := t.TempDir()
	for _, verifier := range [][]string{{"ledger", "verify"}, {"audit", "verify"}} {
		for _, dir := range []string{missing, empty} {
			code, _, stderr := usagectl(t, append(verifier, "--storage.path="+dir)...)
			if code != 1 || !strings.Contains(stderr, "no store at --storage.path="+dir) {
				t.Errorf("%v on %s: exit %d, stderr %q; want exit 1 and a refusal naming the path", verifier, dir, code, stderr)
			}
		}
		if _, err := os.Stat(missing); !os.IsNotExist(err) {
			t.Fatalf("%v created %s (%v)", verifier, missing, err)
		}
		if ents, _ := os.ReadDir(empty); len(ents) > 0 {
			t.Fatalf("%v wrote %d files into an empty directory", verifier, len(ents))
		}
	}

	store := t.TempDir()
	s, err := ledger.Open(context.Background(), ledger.Options{Path: store})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if code, out, stderr := usagectl(t, "audit", "verify", "--storage.path="+store); code != 0 || !strings.Contains(out, "audit trail intact: 0 entries") {
		t.Errorf("audit verify on a real store: exit %d, %q %q", code, out, stderr)
	}
	if code, out, stderr := usagectl(t, "ledger", "verify", "--storage.path="+store); code != 0 || !strings.Contains(out, "ledger OK") {
		t.Errorf("ledger verify on a real store: exit %d, %q %q", code, out, stderr)
	}
}

// TestHelpGoesToStdout: help asked for is the answer (stdout, exit 0); a missing command or a bad
// flag is an error (stderr, exit 2).
func TestHelpGoesToStdout(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"ledger", "verify", "--help"}} {
		code, out, stderr := usagectl(t, args...)
		if code != 0 || !strings.Contains(out, "usage: usagectl") || stderr != "" {
			t.Errorf("usagectl %v: exit %d, stdout %q, stderr %q", args, code, out, stderr)
		}
	}
	for _, args := range [][]string{nil, {"--no-such-flag"}, {"invoices", "run"}, {"report", "usage", "--format", "docx"}} {
		code, out, stderr := usagectl(t, args...)
		if code != 2 || out != "" || stderr == "" {
			t.Errorf("usagectl %v: exit %d, stdout %q, stderr %q; want exit 2 and the error on stderr", args, code, out, stderr)
		}
	}
}

// TestFailuresExitOne: a command that ran and failed exits 1, whatever area registered it; a bad
// command line exits 2 (TestHelpGoesToStdout).
func TestFailuresExitOne(t *testing.T) {
	for _, args := range [][]string{
		{"invoices", "run", "--period", "2026-10", "--url", "http://127.0.0.1:1"},
		{"report", "usage", "--url", "http://127.0.0.1:1"},
		{"ledger", "verify", "--storage.path", filepath.Join(t.TempDir(), "none")},
	} {
		if code, _, stderr := usagectl(t, args...); code != 1 || stderr == "" {
			t.Errorf("usagectl %v: exit %d, stderr %q; want 1 and the error", args, code, stderr)
		}
	}
}

package reportcli

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/usagemeter/usagemeter/analytics"
	"github.com/usagemeter/usagemeter/analytics/internal/ledgertest"
)

func TestReportCommands(t *testing.T) {
	st := ledgertest.Open(t)
	at := time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
	ledgertest.Load(t, st,
		ledgertest.E("ai.tokens", at, "tenant", "acme", "user", "ann", "feature", "chat", "model", "gpt-large", "input_tokens", 70, "output_tokens", 30),
		ledgertest.E("ai.tokens", at, "tenant", "beta", "user", "bo", "feature", "chat", "model", "gpt-small", "input_tokens", 5, "output_tokens", 0),
	)
	s := &analytics.Service{Store: st, Now: func() time.Time { return at.Add(24 * time.Hour) }}
	var auth []string
	mux := http.NewServeMux()
	for _, r := range s.Routes() {
		h := r.Handler
		mux.HandleFunc(r.Method+" "+r.Pattern, func(w http.ResponseWriter, req *http.Request) {
			auth = append(auth, req.Header.Get("Authorization"))
			h(w, req)
		})
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()

	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		app := kingpin.New("usagectl", "")
		RegisterTo(app, &out)
		_, err := app.Parse(append(args, "--url", srv.URL, "--token", "secret"))
		return out.String(), err
	}
	out, err := run("report", "usage", "--meter", "ai_tokens", "--group-by", "model", "--month", "2026-11", "--filter", "model=gpt-large,gpt-small")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"acme,ai_tokens,tokens,flow,2026-11-01T00:00:00Z,2026-12-01T00:00:00Z,gpt-large,100", "beta,ai_tokens,tokens,flow,2026-11-01T00:00:00Z,2026-12-01T00:00:00Z,gpt-small,5"} {
		if !strings.Contains(out, want) {
			t.Errorf("usage report lacks %q:\n%s", want, out)
		}
	}
	if auth[0] != "Bearer secret" {
		t.Errorf("authorization header %q", auth[0])
	}

	dir := t.TempDir()
	def := filepath.Join(dir, "def.yaml")
	os.WriteFile(def, []byte("name: tokens\nmeters: [ai_tokens]\nwindow: none\nperiod: {month: \"2026-11\"}\nformat: json\n"), 0o600)
	dest := filepath.Join(dir, "out.xlsx")
	if _, err := run("report", "run", def, "--format", "xlsx", "--tenant", "acme", "-o", dest); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(dest)
	if !bytes.HasPrefix(b, []byte("PK")) {
		t.Errorf("xlsx output starts %q", b[:min(4, len(b))])
	}
	if _, err := run("report", "executive", "-o", filepath.Join(dir, "x.pdf")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "x.pdf")); !bytes.HasPrefix(b, []byte("%PDF")) {
		t.Error("executive summary is not a PDF")
	}
	out, err = run("report", "compliance", "--format", "csv", "--tenant", "acme", "--last", "month")
	if err != nil || !strings.Contains(out, "acme,1,") {
		t.Errorf("compliance: %v\n%s", err, out)
	}
	// Errors from the server come back as the problem's detail.
	if _, err := run("report", "usage", "--meter", "nope"); err == nil || !strings.Contains(err.Error(), `unknown meter "nope"`) {
		t.Errorf("bad meter: %v", err)
	}

	// The output's name decides the format when --format is not given (issue #19: the docs
	// wrote a definition's XLSX into report.csv); a --format contradicting it is refused.
	os.WriteFile(def, []byte("name: tokens\nmeters: [ai_tokens]\nwindow: none\nperiod: {month: \"2026-11\"}\nformat: xlsx\n"), 0o600)
	csvOut := filepath.Join(dir, "report.csv")
	if _, err := run("report", "run", def, "--tenant", "acme", "-o", csvOut); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(csvOut); !bytes.Contains(b, []byte("tenant,meter,unit")) {
		t.Errorf("report.csv holds %q, want CSV", b[:min(8, len(b))])
	}
	if _, err := run("report", "usage", "--format", "xlsx", "-o", filepath.Join(dir, "u.csv")); err == nil || !strings.Contains(err.Error(), "--format xlsx but --output") {
		t.Errorf("--format xlsx -o u.csv: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "u.csv")); err == nil {
		t.Error("a refused report left a file")
	}
	if _, err := run("report", "usage", "--month", "2026-11", "-o", filepath.Join(dir, "u.json")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "u.json")); !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
		t.Errorf("u.json holds %q", b[:min(8, len(b))])
	}
}

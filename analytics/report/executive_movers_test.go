package report

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ledongthuc/pdf"

	"github.com/usagemeter/usagemeter/analytics/stats"
)

func growth(tenant string, cur, prev int64) stats.Growth {
	g := stats.Growth{Tenant: tenant, Meter: "ai_tokens", Unit: "tokens"}
	g.WeekOverWeek.Current, g.WeekOverWeek.Previous, g.WeekOverWeek.Delta = cur, prev, cur-prev
	if prev != 0 {
		pc := 100 * float64(cur-prev) / float64(prev)
		g.WeekOverWeek.Percent = &pc
	}
	return g
}

// TestTopMoversNeedEvidence: a one-event test tenant is not crowned the top mover however large
// its percentage; movers rank by the size of their change (issue #19).
func TestTopMoversNeedEvidence(t *testing.T) {
	gs := []stats.Growth{
		growth("tenant-test", 40, 1),             // +3900 %, but 40 of 1,010,040 tokens
		growth("tenant-big", 900_000, 1_000_000), // -10 %: 100,000 tokens
		growth("tenant-mid", 70_000, 20_000),     // +250 %: 50,000 tokens
		growth("tenant-flat", 40_000, 40_000),    // no change
	}
	stats.SortMovers(gs) // the order the trends come in: by percentage
	got := topMovers(gs, 5)
	if len(got) != 2 || got[0].Tenant != "tenant-big" || got[1].Tenant != "tenant-mid" {
		t.Fatalf("movers %v, want tenant-big then tenant-mid", got)
	}
}

// TestExecutiveShowsNames: the one-page summary names tenants by their configured names.
func TestExecutiveShowsNames(t *testing.T) {
	x := &Executive{ChartMeter: "ai_tokens", Movers: []stats.Growth{growth("tenant-0007", 2000, 1000)},
		TenantNames: map[string]string{"tenant-0007": "Globex Corporation"}}
	var buf bytes.Buffer
	if err := x.WritePDF(&buf); err != nil {
		t.Fatal(err)
	}
	r, err := pdf.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := r.GetPlainText()
	txt, _ := io.ReadAll(tr)
	if !bytes.Contains(txt, []byte("Globex Corporation")) || bytes.Contains(txt, []byte("tenant-0007")) {
		t.Errorf("the summary does not name the tenant:\n%s", txt)
	}
}

// sample writes a rendered document to $RENDER_SAMPLE_DIR, when set, to look at it (pdftoppm).
func sample(t *testing.T, name string, b []byte) {
	if dir := os.Getenv("RENDER_SAMPLE_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

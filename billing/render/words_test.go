package render

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledongthuc/pdf"

	"github.com/usagemeter/usagemeter/billing/rating"
)

func pdfText(t *testing.T, b []byte) string {
	t.Helper()
	r, err := pdf.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("not a readable PDF: %v", err)
	}
	tr, err := r.GetPlainText()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(tr)
	return string(raw)
}

// TestSuggestionOnlyWhenAnUpgrade: the customer's invoice never advertises a cheaper, smaller
// plan (a downgrade); a larger plan that would have cost less is shown.
func TestSuggestionOnlyWhenAnUpgrade(t *testing.T) {
	inv := sampleInvoice(t)
	for _, c := range []struct {
		s    rating.Suggestion
		show bool
	}{
		{rating.Suggestion{Period: inv.Period, CurrentPlan: "pro", CurrentCost: 148400, Plan: "starter", Cost: 90000, Saving: 58400}, false},
		{rating.Suggestion{Period: inv.Period, CurrentPlan: "pro", CurrentCost: 148400, Plan: "enterprise", Cost: 120000, Saving: 28400, Upgrade: true}, true},
	} {
		inv.Suggestion = &c.s
		var buf bytes.Buffer
		if err := PDF(&buf, inv); err != nil {
			t.Fatal(err)
		}
		text := pdfText(t, buf.Bytes())
		if shown := strings.Contains(text, "would have cost"); shown != c.show || (c.show && !strings.Contains(text, "on the enterprise plan")) {
			t.Errorf("suggestion of %s (upgrade %v): shown %v\n%s", c.s.Plan, c.s.Upgrade, shown, text)
		}
		if name := os.Getenv("RENDER_SAMPLE_DIR"); name != "" { // for a look: pdftoppm -png
			_ = os.WriteFile(filepath.Join(name, "invoice-"+c.s.Plan+".pdf"), buf.Bytes(), 0o644)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1091192768: "1,091,192,768", -1234567: "-1,234,567"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
	for in, want := range map[string]string{"1484.00": "1,484.00", "-10.00": "-10.00", "-1234.5": "-1,234.5", "12": "12"} {
		if got := grouped(in); got != want {
			t.Errorf("grouped(%q) = %q, want %q", in, got, want)
		}
	}
}

package collector

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

func store(t *testing.T, seriesLimit int, body string) *ledger.Store {
	return storeOpts(t, ledger.Options{Path: t.TempDir(), SeriesLimit: seriesLimit}, body)
}

func storeOpts(t *testing.T, o ledger.Options, body string) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	evs, err := (&event.Decoder{}).Decode("application/x-ndjson", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	return s
}

func evline(id, typ, data string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"t","type":%q,"time":%q,"data":%s}`+"\n", id, typ, time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), data)
}

func render(t *testing.T, u *Usage) string {
	t.Helper()
	var b bytes.Buffer
	if err := u.Write(&b, false); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func parse(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, text)
	}
	return mfs
}

// family extracts one family's lines, for golden comparison.
func familyLines(text, name string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, name+"{") || strings.HasPrefix(l, name+" ") || strings.HasSuffix(strings.Fields(l + " x x x")[2], name) && strings.HasPrefix(l, "# ") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestGoldenExposition(t *testing.T) {
	s := store(t, 100,
		evline("1", "ai.tokens", `{"tenant":"acme","user":"u1","feature":"chat","model":"m1","input_tokens":10,"output_tokens":20}`)+
			evline("2", "ai.tokens", `{"tenant":"acme","user":"u2","feature":"chat","model":"m1","input_tokens":1,"output_tokens":2}`)+
			evline("3", "document.created", `{"tenant":"acme","user":"u1","document_id":"d","doc_type":"pdf","bytes":100}`)+
			evline("4", "storage.measured", `{"tenant":"beta","storage_class":"hot","bytes":5}`)+
			evline("5", "user.login", `{"tenant":"beta","user":"x"}`)+
			evline("6", "feature.used", `{"tenant":"beta","user":"x","feature":"say \"hi\"\\now"}`))
	text := render(t, NewUsage(s, nil))
	golden := map[string]string{
		"usage_ai_tokens_total": `# HELP usage_ai_tokens_total AI tokens per tenant, feature, model and direction.
# TYPE usage_ai_tokens_total counter
usage_ai_tokens_total{direction="input",feature="chat",model="m1",tenant="acme"} 11
usage_ai_tokens_total{direction="output",feature="chat",model="m1",tenant="acme"} 22`,
		"usage_active_users": `# HELP usage_active_users Distinct users active per tenant over trailing windows.
# TYPE usage_active_users gauge
usage_active_users{tenant="acme",window="1d"} 2
usage_active_users{tenant="acme",window="30d"} 2
usage_active_users{tenant="acme",window="7d"} 2
usage_active_users{tenant="beta",window="1d"} 1
usage_active_users{tenant="beta",window="30d"} 1
usage_active_users{tenant="beta",window="7d"} 1`,
		"usage_documents": `# HELP usage_documents Documents held per tenant and document type.
# TYPE usage_documents gauge
usage_documents{doc_type="pdf",tenant="acme"} 1`,
		"usage_storage_bytes": `# HELP usage_storage_bytes Latest storage reading per tenant and storage class.
# TYPE usage_storage_bytes gauge
usage_storage_bytes{storage_class="hot",tenant="beta"} 5`,
		"usage_user_logins_total": `# HELP usage_user_logins_total User logins per tenant.
# TYPE usage_user_logins_total counter
usage_user_logins_total{tenant="beta"} 1`,
		"usage_feature_uses_total": `# HELP usage_feature_uses_total Feature uses per tenant and feature.
# TYPE usage_feature_uses_total counter
usage_feature_uses_total{feature="say \"hi\"\\now",tenant="beta"} 1`,
	}
	for name, want := range golden {
		if got := familyLines(text, name); got != want {
			t.Errorf("%s:\n got:\n%s\nwant:\n%s", name, got, want)
		}
	}
	mfs := parse(t, text)
	if v := mfs["usage_feature_uses_total"].GetMetric()[0].GetLabel()[0].GetValue(); v != `say "hi"\now` {
		t.Errorf("escaped label value parses back as %q", v)
	}
	var list []*dto.MetricFamily
	for _, mf := range mfs {
		list = append(list, mf)
	}
	problems, err := promlint.NewWithMetricFamilies(list).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestOverflow(t *testing.T) {
	var body string
	for i := range 5 {
		body += evline(fmt.Sprint(i), "feature.used", fmt.Sprintf(`{"tenant":"t%d","user":"u","feature":"f"}`, i))
	}
	text := render(t, NewUsage(store(t, 2, body), nil))
	mfs := parse(t, text)
	ms := mfs["usage_feature_uses_total"].GetMetric()
	if len(ms) != 3 {
		t.Fatalf("%d series, want 2 admitted + 1 overflow:\n%s", len(ms), text)
	}
	var total float64
	for _, m := range ms {
		total += m.GetCounter().GetValue()
	}
	if total != 5 {
		t.Errorf("series add up to %v, want 5", total)
	}
	want := `usage_feature_uses_total{feature="__overflow__",tenant="__overflow__"} 3`
	if !strings.Contains(text, want) {
		t.Errorf("no %s in\n%s", want, text)
	}
	if !strings.Contains(text, `usage_exporter_series_overflow_total{metric="usage_feature_uses_total"} 3`) {
		t.Errorf("overflow counter missing:\n%s", text)
	}
}

func TestHandlerNegotiatesOpenMetrics(t *testing.T) {
	s := store(t, 100, evline("1", "user.login", `{"tenant":"a","user":"u"}`))
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "usage_exporter_things_total", Help: "Things."}))
	h := Handler(NewUsage(s, nil), reg, func(err error) { t.Error(err) })

	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0; charset=utf-8")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body := rec.Body.String()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("content type %q", ct)
	}
	for _, want := range []string{"# TYPE usage_user_logins counter\n", `usage_user_logins_total{tenant="a"} 1`, "# TYPE usage_exporter_things counter", "# EOF\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("OpenMetrics output lacks %q:\n%s", want, body)
		}
	}
	if !strings.HasSuffix(body, "# EOF\n") {
		t.Error("# EOF is not last")
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("default content type %q", ct)
	}
	mfs := parse(t, rec.Body.String())
	names := make([]string, 0, len(mfs))
	for n := range mfs {
		names = append(names, n)
	}
	if !slices.Contains(names, "usage_user_logins_total") || !slices.Contains(names, "usage_exporter_things_total") {
		t.Errorf("families %v", names)
	}
}

func TestPerUserLabelsArePseudonymised(t *testing.T) {
	s := storeOpts(t, ledger.Options{Path: t.TempDir(), PerUserLabels: true},
		evline("1", "feature.used", `{"tenant":"a","user":"alice@example.com","feature":"f"}`)+
			evline("2", "feature.used", `{"tenant":"a","user":"bob@example.com","feature":"f"}`)+
			evline("3", "feature.used", `{"tenant":"a","user":"alice@example.com","feature":"f"}`))
	text := render(t, NewUsage(s, func(tenant, u string) string { return "p_" + tenant + fmt.Sprint(len(u)) + u[:1] }))
	for _, want := range []string{
		`usage_feature_uses_total{feature="f",tenant="a",user="p_a17a"} 2`,
		`usage_feature_uses_total{feature="f",tenant="a",user="p_a15b"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %s in\n%s", want, text)
		}
	}
	if strings.Contains(text, "alice") || strings.Contains(text, "example.com") {
		t.Errorf("a user id leaked into the exposition:\n%s", text)
	}
	// Metrics of meters without users are unchanged.
	if !strings.Contains(text, `usage_active_users{tenant="a",window="1d"} 2`) {
		t.Errorf("active users changed:\n%s", text)
	}
}

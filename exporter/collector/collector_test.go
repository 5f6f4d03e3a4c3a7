package collector

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

func store(t *testing.T, seriesLimit int, body string) *ledger.Store {
	t.Helper()
	s, err := ledger.Open(context.Background(), ledger.Options{Path: t.TempDir(), SeriesLimit: seriesLimit})
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

func line(id, typ, data string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"t","type":%q,"time":%q,"data":%s}`+"\n", id, typ, time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), data)
}

func TestGoldenExposition(t *testing.T) {
	s := store(t, 100,
		line("1", "ai.tokens", `{"tenant":"acme","user":"u1","feature":"chat","model":"m1","input_tokens":10,"output_tokens":20}`)+
			line("2", "ai.tokens", `{"tenant":"acme","user":"u2","feature":"chat","model":"m1","input_tokens":1,"output_tokens":2}`)+
			line("3", "document.created", `{"tenant":"acme","user":"u1","document_id":"d","doc_type":"pdf","bytes":100}`)+
			line("4", "storage.measured", `{"tenant":"beta","storage_class":"hot","bytes":5}`)+
			line("5", "user.login", `{"tenant":"beta","user":"x"}`))
	c := NewUsage(s)
	want := `
# HELP usage_ai_tokens_total AI tokens per tenant, feature, model and direction.
# TYPE usage_ai_tokens_total counter
usage_ai_tokens_total{direction="input",feature="chat",model="m1",tenant="acme"} 11
usage_ai_tokens_total{direction="output",feature="chat",model="m1",tenant="acme"} 22
# HELP usage_active_users Distinct users active per tenant over trailing windows.
# TYPE usage_active_users gauge
usage_active_users{tenant="acme",window="1d"} 2
usage_active_users{tenant="acme",window="30d"} 2
usage_active_users{tenant="acme",window="7d"} 2
usage_active_users{tenant="beta",window="1d"} 1
usage_active_users{tenant="beta",window="30d"} 1
usage_active_users{tenant="beta",window="7d"} 1
# HELP usage_documents Documents held per tenant and document type.
# TYPE usage_documents gauge
usage_documents{doc_type="pdf",tenant="acme"} 1
# HELP usage_storage_bytes Latest storage reading per tenant and storage class.
# TYPE usage_storage_bytes gauge
usage_storage_bytes{storage_class="hot",tenant="beta"} 5
# HELP usage_user_logins_total User logins per tenant.
# TYPE usage_user_logins_total counter
usage_user_logins_total{tenant="beta"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "usage_ai_tokens_total", "usage_active_users", "usage_documents", "usage_storage_bytes", "usage_user_logins_total"); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.CollectAndLint(c)
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
		body += line(fmt.Sprint(i), "feature.used", fmt.Sprintf(`{"tenant":"t%d","user":"u","feature":"f"}`, i))
	}
	c := NewUsage(store(t, 2, body))
	// Two series admitted; three folded into one __overflow__ series holding their sum.
	n := testutil.CollectAndCount(c, "usage_feature_uses_total")
	if n != 3 {
		t.Fatalf("%d series, want 2 admitted + 1 overflow", n)
	}
	want := `
# HELP usage_exporter_series_overflow_total Label sets folded into the __overflow__ series of a metric because its series cap was reached.
# TYPE usage_exporter_series_overflow_total counter
usage_exporter_series_overflow_total{metric="usage_feature_uses_total"} 3
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "usage_exporter_series_overflow_total"); err != nil {
		// Other metrics report 0; compare only the line we care about.
		if !strings.Contains(err.Error(), `metric="usage_feature_uses_total"} 3`) {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	overflow := false
	for _, mf := range mfs {
		if mf.GetName() != "usage_feature_uses_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
			for _, l := range m.GetLabel() {
				if l.GetName() == "tenant" && l.GetValue() == Overflow {
					overflow = true
					if m.GetCounter().GetValue() != 3 {
						t.Errorf("overflow series = %v, want 3", m.GetCounter().GetValue())
					}
				}
			}
		}
	}
	if !overflow || total != 5 {
		t.Errorf("overflow=%v total=%v; want the overflow series and a total of 5", overflow, total)
	}
}

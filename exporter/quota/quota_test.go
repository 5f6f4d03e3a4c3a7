package quota

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/seriescap"
)

const catalogue = `
plans:
  - name: free
    enforcement: hard
    warning_ratio: 0.5
    limits: {ai_tokens: 100, documents: 2, active_users: 1}
  - name: pro
    enforcement: soft
    limits: {ai_tokens: 1000}
default_plan: free
tenants:
  - {id: m, plan: pro}
  - {id: y, plan: free}
  - {id: zz, plan: pro, limits: {ai_tokens: 10}, warning_ratio: 0.9}
`

func TestQuotaStatesAndMetrics(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Parse([]byte(catalogue))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ledger.Open(ctx, ledger.Options{Path: t.TempDir(), Meters: cfg.Meters})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	var body string
	add := func(id, typ, data string) {
		body += fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"t","type":%q,"time":%q,"data":%s}`+"\n", id, typ, now.Format(time.RFC3339), data)
	}
	add("1", "ai.tokens", `{"tenant":"aa","user":"a","feature":"f","model":"m","input_tokens":40,"output_tokens":20}`) // 60 of 100: warning at 0.5
	add("2", "document.created", `{"tenant":"aa","user":"a","document_id":"d1","doc_type":"pdf","bytes":1}`)
	add("3", "document.created", `{"tenant":"aa","user":"b","document_id":"d2","doc_type":"pdf","bytes":1}`)
	add("4", "document.created", `{"tenant":"aa","user":"b","document_id":"d3","doc_type":"pdf","bytes":1}`)         // 3 of 2: exceeded
	add("5", "ai.tokens", `{"tenant":"zz","user":"a","feature":"f","model":"m","input_tokens":5,"output_tokens":4}`) // 9 of 10 (override): warning at 0.9
	evs, err := (&event.Decoder{}).Decode("application/x-ndjson", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, evs); err != nil {
		t.Fatal(err)
	}
	e := New(s, func() *config.Config { return cfg }, nil)
	states := map[string]Status{}
	_, aa := e.Tenant(ctx, "aa")
	for _, st := range aa {
		states[st.Meter] = st
	}
	for meter, want := range map[string]string{"ai_tokens": StateWarning, "documents": StateExceeded, "active_users": StateExceeded} {
		if got := states[meter].State; got != want {
			t.Errorf("small %s: %s (%+v), want %s", meter, got, states[meter], want)
		}
	}
	if st := states["ai_tokens"]; st.Used != 60 || st.Limit != 100 || st.PeriodEnd == nil {
		t.Errorf("small ai_tokens = %+v", st)
	}
	plan, big := e.Tenant(ctx, "zz")
	if plan.Name != "pro" {
		t.Errorf("zz is on %q, want pro", plan.Name)
	}
	if len(big) != 1 || big[0].Limit != 10 || big[0].State != StateWarning || big[0].Enforcement != "soft" {
		t.Errorf("big = %+v", big)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(e))
	want := `
# HELP usage_tenant_info A tenant's plan.
# TYPE usage_tenant_info gauge
usage_tenant_info{plan="free",tenant="aa"} 1
usage_tenant_info{plan="free",tenant="y"} 1
usage_tenant_info{plan="pro",tenant="m"} 1
usage_tenant_info{plan="pro",tenant="zz"} 1
`
	// The pedantic registry fails on series collected twice: zz is both configured and known
	// from usage, in an order that once defeated a binary search.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "usage_tenant_info"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(NewCollector(e), "usage_quota_limit"); n != 8 {
		t.Errorf("%d usage_quota_limit series, want 3 (aa) + 1 (zz) + 1 (m) + 3 (y)", n)
	}

	// Under a cap of 3 series per family, in tenant order: aa's three quotas are admitted, the
	// five of m, y and zz fold into __overflow__ (limits and usage summed, the others counted);
	// aa, m and y keep their tenant_info, zz's folds.
	adm := seriescap.New(3)
	capped := prometheus.NewPedanticRegistry()
	capped.MustRegister(NewCappedCollector(e, adm))
	for i := range 2 { // the same on every scrape
		if err := testutil.GatherAndCompare(capped, strings.NewReader(`
# HELP usage_quota_limit Quota limit in force for a tenant and meter (plan, or tenant override).
# TYPE usage_quota_limit gauge
usage_quota_limit{meter="__overflow__",tenant="__overflow__"} 1113
usage_quota_limit{meter="active_users",tenant="aa"} 1
usage_quota_limit{meter="ai_tokens",tenant="aa"} 100
usage_quota_limit{meter="documents",tenant="aa"} 2
# HELP usage_tenant_info A tenant's plan.
# TYPE usage_tenant_info gauge
usage_tenant_info{plan="__overflow__",tenant="__overflow__"} 1
usage_tenant_info{plan="free",tenant="aa"} 1
usage_tenant_info{plan="free",tenant="y"} 1
usage_tenant_info{plan="pro",tenant="m"} 1
`), "usage_quota_limit", "usage_tenant_info"); err != nil {
			t.Fatalf("scrape %d: %v", i, err)
		}
		if err := testutil.GatherAndCompare(capped, strings.NewReader(`
# HELP usage_quota_used Exact usage counted against the quota: current calendar month for flow meters, current level for stock meters.
# TYPE usage_quota_used gauge
usage_quota_used{meter="__overflow__",tenant="__overflow__"} 9
usage_quota_used{meter="active_users",tenant="aa"} 2
usage_quota_used{meter="ai_tokens",tenant="aa"} 60
usage_quota_used{meter="documents",tenant="aa"} 3
# HELP usage_quota_warning_ratio Share of the limit at which the quota warns.
# TYPE usage_quota_warning_ratio gauge
usage_quota_warning_ratio{meter="__overflow__",tenant="__overflow__"} 5
usage_quota_warning_ratio{meter="active_users",tenant="aa"} 0.5
usage_quota_warning_ratio{meter="ai_tokens",tenant="aa"} 0.5
usage_quota_warning_ratio{meter="documents",tenant="aa"} 0.5
`), "usage_quota_used", "usage_quota_warning_ratio"); err != nil {
			t.Fatalf("scrape %d: %v", i, err)
		}
	}
	if f := adm.Folded(); f["usage_quota_limit"] != 5 || f["usage_tenant_info"] != 1 || f["usage_quota_hard"] != 5 {
		t.Errorf("folded %v", f)
	}
}

// TestScopedReadsEveryKindOfMeter: user and feature usage is exact for a flow meter (kept sums)
// and for a stock meter (documents a user holds: read with the usage query), and a named user's
// and a feature's limits are listed with their usage.
func TestScopedReadsEveryKindOfMeter(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Parse([]byte(`
plans:
  - name: p
    limits: {ai_tokens: 1000}
    user_limits: {ai_tokens: 100, documents: 3}
    feature_limits: {chat: {ai_tokens: 50}}
tenants:
  - {id: acme, plan: p, users: {alice: {documents: 1}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ledger.Open(ctx, ledger.Options{Path: t.TempDir(), Meters: cfg.Meters})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	var body string
	add := func(id, typ, data string) {
		body += fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"t","type":%q,"time":%q,"data":%s}`+"\n", id, typ, now.Format(time.RFC3339), data)
	}
	add("1", "document.created", `{"tenant":"acme","user":"bob","document_id":"d1","doc_type":"pdf","bytes":1}`)
	add("2", "document.created", `{"tenant":"acme","user":"bob","document_id":"d2","doc_type":"pdf","bytes":1}`)
	add("3", "document.created", `{"tenant":"acme","user":"bob","document_id":"d3","doc_type":"txt","bytes":1}`)
	add("4", "document.deleted", `{"tenant":"acme","user":"bob","document_id":"d2","doc_type":"pdf","bytes":1}`) // bob holds 2
	add("5", "ai.tokens", `{"tenant":"acme","user":"bob","feature":"chat","model":"m","input_tokens":30,"output_tokens":5}`)
	add("6", "ai.tokens", `{"tenant":"acme","user":"alice","feature":"chat","model":"m","input_tokens":7,"output_tokens":0}`)
	evs, err := (&event.Decoder{}).Decode("application/x-ndjson", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, evs); err != nil {
		t.Fatal(err)
	}
	e := New(s, func() *config.Config { return cfg }, nil)
	plan := e.Plan(ctx, "acme")
	for _, c := range []struct {
		meter, user, feature string
		want                 string
	}{
		{"documents", "bob", "", "[{user bob 2 3}]"},
		{"documents", "alice", "", "[{user alice 0 1}]"},
		{"ai_tokens", "bob", "chat", "[{user bob 35 100} {feature chat 42 50}]"},
		{"ai_tokens", "alice", "search", "[{user alice 7 100}]"},
		{"ai_tokens", "", "", "[]"},
	} {
		got, err := e.Scoped(ctx, plan, "acme", c.meter, c.user, c.feature)
		if err != nil {
			t.Fatal(err)
		}
		if s := fmt.Sprint(got); s != c.want && !(c.want == "[]" && got == nil) {
			t.Errorf("%s %s %s: %s, want %s", c.meter, c.user, c.feature, s, c.want)
		}
	}
	users, err := e.UserStatuses(ctx, "acme", plan)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range users {
		got = append(got, fmt.Sprintf("%s %s %d/%d %s", st.User, st.Meter, st.Used, st.Limit, st.State))
	}
	want := "alice ai_tokens 7/100 ok|alice documents 0/1 ok|bob ai_tokens 35/100 ok|bob documents 2/3 ok"
	if strings.Join(got, "|") != want {
		t.Errorf("user quotas: %s, want %s", strings.Join(got, "|"), want)
	}
}

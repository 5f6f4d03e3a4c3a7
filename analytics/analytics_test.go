package analytics

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/analytics/insights"
	"github.com/usagemeter/usagemeter/analytics/internal/ledgertest"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

var now = time.Date(2026, 11, 20, 0, 30, 0, 0, time.UTC)

func d(m time.Month, day, hour int) time.Time {
	return time.Date(2026, m, day, hour, 0, 0, 0, time.UTC)
}

// server serves the routes behind a stand-in for the lead's guard: it records the action and
// tenant of every route, and the Authorize hook denies per-user detail when the request says so.
func server(t *testing.T, st *ledger.Store) (*httptest.Server, *[]string) {
	var seen []string
	s := &Service{Store: st, Now: func() time.Time { return now },
		Authorize: func(r *http.Request, action, tenant string) error {
			if action == route.ActionUsageUserRead && r.Header.Get("X-Deny-Users") != "" {
				return errors.New("denied")
			}
			return nil
		}}
	mux := http.NewServeMux()
	for _, rt := range s.Routes() {
		h := rt.Handler
		action := rt.Action
		mux.HandleFunc(rt.Method+" "+rt.Pattern, func(w http.ResponseWriter, r *http.Request) {
			seen = append(seen, action+" "+route.Tenant(r))
			h(w, r)
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &seen
}

func fixture(t *testing.T) *ledger.Store {
	st := ledgertest.Open(t)
	ai := func(at time.Time, tenant, user, model string, n int) ledgertest.Event {
		return ledgertest.E("ai.tokens", at, "tenant", tenant, "user", user, "feature", "chat", "model", model, "input_tokens", n, "output_tokens", 0)
	}
	ledgertest.Load(t, st,
		ai(d(10, 20, 9), "acme", "old", "gpt-small", 1000),
		ai(d(11, 8, 9), "acme", "ann", "gpt-large", 200),
		ai(d(11, 15, 9), "acme", "ann", "gpt-small", 300),
		ai(d(11, 16, 9), "beta", "bo", "gpt-small", 50),
		ledgertest.E("document.created", d(11, 1, 0), "tenant", "acme", "user", "ann", "document_id", "a", "doc_type", "pdf", "bytes", 100, "content_hash", "h"),
		ledgertest.E("document.created", d(11, 2, 0), "tenant", "acme", "user", "ann", "document_id", "b", "doc_type", "pdf", "bytes", 100, "content_hash", "h"),
	)
	return st
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestRoutesDeclareActions(t *testing.T) {
	for _, r := range (&Service{}).Routes() {
		want := route.ActionAnalyticsRead
		if strings.HasPrefix(r.Pattern, "/v1/reports") {
			want = route.ActionReportsExport
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.Pattern, "/apply") {
			want = route.ActionAnalyticsWrite // changes state
		}
		if r.Action != want || !r.Audit || r.Handler == nil {
			t.Errorf("%s %s: action %q audit %v", r.Method, r.Pattern, r.Action, r.Audit)
		}
	}
}

func TestAnalyticsEndpoints(t *testing.T) {
	st := fixture(t)
	srv, seen := server(t, st)

	resp, body := get(t, srv.URL+"/v1/analytics/trends?meter=ai_tokens")
	var tr TrendsResponse
	if resp.StatusCode != 200 || json.Unmarshal(body, &tr) != nil {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// Week [Nov 13, Nov 20): acme 300 vs 200 the week before; beta 50 from nothing.
	if tr.Total != 2 || tr.Trends[0].Tenant != "acme" || tr.Trends[0].WeekOverWeek.Current != 300 || tr.Trends[0].WeekOverWeek.Previous != 200 || tr.Trends[0].MonthOverMonth.Current != 1000 {
		t.Errorf("trends %s", body)
	}
	if (*seen)[0] != "analytics.read " {
		t.Errorf("guard saw %v", *seen)
	}

	resp, body = get(t, srv.URL+"/v1/analytics/engagement?tenant=acme&users=true", "X-Deny-Users", "1")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "usage.read_users") {
		t.Errorf("per-user list without permission: %d %s", resp.StatusCode, body)
	}
	resp, body = get(t, srv.URL+"/v1/analytics/engagement?tenant=acme&users=true")
	var eng struct {
		Inactive []string `json:"inactive"`
		MAU      int64    `json:"mau"`
	}
	json.Unmarshal(body, &eng)
	// "old" was last seen on Oct 20, more than 30 days before Nov 20.
	if resp.StatusCode != 200 || len(eng.Inactive) != 1 || eng.Inactive[0] != "old" || eng.MAU != 1 {
		t.Errorf("engagement %d %s", resp.StatusCode, body)
	}

	for _, bad := range []string{"/v1/analytics/seasonality?tenant=acme", "/v1/analytics/forecast?tenant=acme&meter=nope",
		"/v1/analytics/adoption?tenant=acme&from=yesterday", "/v1/analytics/forecast?tenant=acme&meter=ai_tokens&season=yearly"} {
		if resp, body := get(t, srv.URL+bad); resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s", bad, resp.StatusCode, body)
		}
	}
	for _, ok := range []string{"/v1/analytics/seasonality?tenant=acme&meter=ai_tokens", "/v1/analytics/forecast?tenant=acme&meter=ai_tokens",
		"/v1/analytics/adoption?tenant=acme", "/v1/analytics/ingestion?tenant=acme"} {
		if resp, body := get(t, srv.URL+ok); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", ok, resp.StatusCode, body)
		}
	}

	// Insights: acme's chat on gpt-large and its duplicate document.
	resp, body = get(t, srv.URL+"/v1/analytics/insights?tenant=acme")
	var ir InsightsResponse
	if resp.StatusCode != 200 || json.Unmarshal(body, &ir) != nil {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	kinds := map[string]insights.Insight{}
	for _, in := range ir.Insights {
		kinds[in.Kind] = in
	}
	dup := kinds[insights.KindDuplicateDocuments]
	if dup.Saving.Units != 100 || kinds[insights.KindCheaperModel].Saving.Units != 200 {
		t.Fatalf("insights %s", body)
	}
	r, err := http.Post(srv.URL+"/v1/analytics/tenants/acme/insights/"+dup.ID+"/apply", "application/json", strings.NewReader(`{"note":"ticket 42"}`))
	if err != nil || r.StatusCode != http.StatusCreated {
		t.Fatalf("apply: %v %v", r.StatusCode, err)
	}
	r.Body.Close()
	// Applying changes state: it is guarded by the write permission, not by analytics.read.
	if last := (*seen)[len(*seen)-1]; last != route.ActionAnalyticsWrite+" acme" {
		t.Errorf("apply was guarded as %q, want %q", last, route.ActionAnalyticsWrite+" acme")
	}
	if r, _ := http.Post(srv.URL+"/v1/analytics/tenants/acme/insights/ffffffffffffffff/apply", "", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("applying an unknown insight: %d", r.StatusCode)
	}
	_, body = get(t, srv.URL+"/v1/analytics/insights/applied?tenant=acme")
	var ar AppliedResponse
	json.Unmarshal(body, &ar)
	if len(ar.Applied) != 1 || ar.Applied[0].Status != "pending" || ar.Applied[0].Note != "ticket 42" || ar.Applied[0].Insight.Saving.Units != 100 {
		t.Errorf("applied %s", body)
	}
}

func TestReportEndpoints(t *testing.T) {
	st := fixture(t)
	srv, seen := server(t, st)
	resp, body := get(t, srv.URL+"/v1/reports/usage?tenant=acme&meter=ai_tokens&group_by=model&month=2026-11&format=csv")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" || !strings.Contains(resp.Header.Get("Content-Disposition"), ".csv") {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	cr := csv.NewReader(bytes.NewReader(body))
	cr.FieldsPerRecord = -1
	recs, _ := cr.ReadAll()
	got := map[string]string{}
	for _, r := range recs {
		if len(r) == 8 && r[0] == "acme" {
			got[r[6]] = r[7]
		}
	}
	if len(got) != 2 || got["gpt-large"] != "200" || got["gpt-small"] != "300" {
		t.Errorf("usage report %s", body)
	}
	if (*seen)[0] != "reports.export acme" {
		t.Errorf("guard saw %v", *seen)
	}
	resp, body = get(t, srv.URL+"/v1/reports/usage?group_by=user&month=2026-11", "X-Deny-Users", "1")
	if resp.StatusCode != 403 {
		t.Errorf("per-user report without permission: %d %s", resp.StatusCode, body)
	}
	for _, bad := range []string{"?format=docx", "?meter=nope", "?window=week", "?filter=model", "?month=2026-13"} {
		if resp, body := get(t, srv.URL+"/v1/reports/usage"+bad); resp.StatusCode != 400 {
			t.Errorf("%s: %d %s", bad, resp.StatusCode, body)
		}
	}
	def := "kind: usage\nmeters: [documents]\nwindow: none\nformat: json\nperiod: {from: 2026-11-01T00:00:00Z, to: 2026-11-20T00:00:00Z}\n"
	r, err := http.Post(srv.URL+"/v1/reports?tenant=acme", "application/yaml", strings.NewReader(def))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(r.Body)
	r.Body.Close()
	var rep struct {
		Tables []struct{ Rows [][]any }
	}
	if r.StatusCode != 200 || json.Unmarshal(body, &rep) != nil || len(rep.Tables[0].Rows) != 1 || rep.Tables[0].Rows[0][6] != float64(2) {
		t.Errorf("posted definition: %d %s", r.StatusCode, body)
	}
	r, _ = http.Post(srv.URL+"/v1/reports?tenant=beta", "application/yaml", strings.NewReader("tenants: [acme]\n"))
	if r.StatusCode != 400 {
		t.Errorf("a definition naming another tenant than the request: %d", r.StatusCode)
	}
	resp, body = get(t, srv.URL+"/v1/reports/executive")
	if resp.StatusCode != 200 || !bytes.HasPrefix(body, []byte("%PDF")) {
		t.Errorf("executive: %d %.40q", resp.StatusCode, body)
	}
	resp, body = get(t, srv.URL+"/v1/reports/compliance?format=json&tenant=acme")
	if resp.StatusCode != 200 || !strings.Contains(string(body), "the audit log is not wired") || !strings.Contains(string(body), `["acme",5,"2026-10-20T09:00:00Z","2026-11-15T09:00:00Z",2,2,200,0]`) {
		t.Errorf("compliance: %d %s", resp.StatusCode, body)
	}
}

// TestComplianceScope: the compliance report shows the server's settings only to a reader who
// may read the whole audit trail (May audit.read), and anyone may ask for the tenant scope
// (scope=tenant: the Grafana plugin, which renders with its own token, does for its users).
func TestComplianceScope(t *testing.T) {
	var cfg config.Config
	if err := yaml.Unmarshal([]byte("raw_events: 400d\narchive_dir: /srv/usagemeter/archive\n"), &cfg.Retention); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mayAudit bool
		query    string
		full     bool
	}{
		{true, "", true},
		{true, "&scope=tenant", false},
		{false, "", false},
		{false, "&scope=full", false}, // asking cannot widen
	} {
		s := &Service{Store: fixture(t), Now: func() time.Time { return now }, Config: func() *config.Config { return &cfg },
			May: func(r *http.Request, action, tenant string) bool {
				return c.mayAudit && action == route.ActionAuditRead
			}}
		rec := httptest.NewRecorder()
		s.complianceReport(rec, httptest.NewRequest(http.MethodGet, "/v1/reports/compliance?format=json&tenant=acme"+c.query, nil))
		body := rec.Body.String()
		if rec.Code != 200 || !strings.Contains(body, "400d") {
			t.Fatalf("may audit %v, %q: %d %s", c.mayAudit, c.query, rec.Code, body)
		}
		if got := strings.Contains(body, "/srv/usagemeter/archive"); got != c.full {
			t.Errorf("may audit %v, %q: archive path shown = %v, want %v", c.mayAudit, c.query, got, c.full)
		}
	}
}

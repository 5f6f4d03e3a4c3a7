package analytics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/usagemeter/usagemeter/analytics/insights"
	"github.com/usagemeter/usagemeter/analytics/internal/ledgertest"
)

// TestInsightsEndpointWithIndex: the endpoint answers the same with the service's index as
// without, for all tenants and for one, before and after new events.
func TestInsightsEndpointWithIndex(t *testing.T) {
	st, ch := ledgertest.OpenFollowed(t, insights.RawTypes()...)
	index := &insights.Index{Store: st, Changes: ch, Now: func() time.Time { return now }}
	serve := func(s *Service) string {
		mux := http.NewServeMux()
		for _, rt := range s.Routes() {
			mux.HandleFunc(rt.Method+" "+rt.Pattern, rt.Handler)
		}
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	clock := func() time.Time { return now }
	indexed := serve(&Service{Store: st, Now: clock, Insights: index})
	scanned := serve(&Service{Store: st, Now: clock})
	doc := func(typ string, at time.Time, tenant, id, hash string, bytes int) ledgertest.Event {
		return ledgertest.E(typ, at, "tenant", tenant, "user", "ann", "document_id", id, "doc_type", "pdf", "bytes", bytes, "content_hash", hash)
	}
	ledgertest.Load(t, st,
		ledgertest.E("ai.tokens", d(11, 8, 9), "tenant", "acme", "user", "ann", "feature", "chat", "model", "gpt-large", "input_tokens", 200, "output_tokens", 0),
		ledgertest.E("ai.tokens", d(11, 15, 9), "tenant", "acme", "user", "ann", "feature", "chat", "model", "gpt-small", "input_tokens", 300, "output_tokens", 0),
		doc("document.created", d(11, 1, 0), "acme", "a", "h", 100),
		doc("document.created", d(11, 2, 0), "acme", "b", "h", 100),
	)
	compare := func(path string) string {
		t.Helper()
		_, want := get(t, scanned+path)
		resp, got := get(t, indexed+path)
		if resp.StatusCode != 200 || string(got) != string(want) {
			t.Fatalf("%s: %d\nindexed %s\nscanned %s", path, resp.StatusCode, got, want)
		}
		return string(got)
	}
	compare("/v1/analytics/insights")
	if body := compare("/v1/analytics/insights?tenant=acme"); !strings.Contains(body, `"kind":"duplicate_documents","tenant":"acme"`) {
		t.Fatalf("acme's duplicate is not detected: %s", body)
	}
	// A late copy for beta, a deletion for acme: the duplicate moves from acme to beta.
	ledgertest.Load(t, st,
		doc("document.created", d(11, 3, 0), "beta", "c", "h2", 50),
		doc("document.created", d(11, 4, 0), "beta", "d", "h2", 50),
		doc("document.deleted", d(11, 19, 0), "acme", "b", "h", 100),
	)
	compare("/v1/analytics/insights")
	if body := compare("/v1/analytics/insights?tenant=beta"); !strings.Contains(body, `"kind":"duplicate_documents","tenant":"beta"`) {
		t.Fatalf("beta's late duplicate is not detected: %s", body)
	}
	if s := index.Stats(); s.Builds != 1 || s.Updates != 4 {
		t.Fatalf("index stats %+v", s)
	}
}

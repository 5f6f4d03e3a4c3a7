package usagemeter

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/experimental"
	"github.com/grafana/grafana-plugin-sdk-go/experimental/datasourcetest"
)

// TestGRPC drives the datasource through the SDK's real gRPC server and client
// (datasourcetest.Manage): instance management from plugin context settings, frames encoded as
// Arrow and back, resource responses streamed as messages.
func TestGRPC(t *testing.T) {
	fs := newFixtureServer(t)
	tp, err := datasourcetest.Manage(func(ctx context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
		d, err := New(ctx, s)
		if err != nil {
			return nil, err
		}
		d.now = func() time.Time { return fixedNow }
		return d, nil
	}, datasourcetest.ManageOpts{Address: freeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.Shutdown() })
	pc := func(u *backend.User) backend.PluginContext {
		return backend.PluginContext{PluginID: PluginID, User: u, DataSourceInstanceSettings: &backend.DataSourceInstanceSettings{
			ID: 1, UID: "um", JSONData: []byte(settingsJSON(fs.URL)), DecryptedSecureJSONData: map[string]string{"apiToken": "um_test_token"}, Updated: time.Unix(1, 0)}}
	}
	ctx := context.Background()

	h, err := tp.Client.CheckHealth(ctx, &backend.CheckHealthRequest{PluginContext: pc(admin)})
	if err != nil || h.Status != backend.HealthStatusOk {
		t.Fatalf("CheckHealth: %v %+v", err, h)
	}

	// Every golden case over gRPC gives the same frames as the direct call.
	req := &backend.QueryDataRequest{PluginContext: pc(admin)}
	for qt, m := range map[string]map[string]string{
		"usage_summary_tenant": {"queryType": QueryUsageSummary, "tenant": "acme"},
		"top_users":            {"queryType": QueryTopUsers, "tenant": "acme", "meter": "ai_tokens"},
		"billing_kpis":         {"queryType": QueryBillingKPIs, "tenant": "acme"},
		"usage_timeseries":     {"queryType": QueryUsageTimeseries, "tenant": "acme", "meter": "ai_tokens", "period": "day"},
		"audit":                {"queryType": QueryAudit, "tenant": "acme"},
	} {
		b, _ := json.Marshal(m)
		req.Queries = append(req.Queries, backend.DataQuery{RefID: qt, QueryType: m["queryType"], JSON: b,
			TimeRange: backend.TimeRange{From: fixedNow.Add(-7 * 24 * time.Hour), To: fixedNow}})
	}
	resp, err := tp.Client.QueryData(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for name, dr := range resp.Responses {
		for _, f := range dr.Frames {
			f.RefID = "A" // the golden files were recorded with refId A
		}
		experimental.CheckGoldenJSONResponse(t, "testdata/golden", name, &dr, false)
	}

	// A denied query over gRPC carries its status and message.
	b, _ := json.Marshal(map[string]string{"queryType": QueryTopUsers, "tenant": "acme"})
	resp, err = tp.Client.QueryData(ctx, &backend.QueryDataRequest{PluginContext: pc(nil), Queries: []backend.DataQuery{{RefID: "A", QueryType: QueryTopUsers, JSON: b}}})
	if err != nil {
		t.Fatal(err)
	}
	if dr := resp.Responses["A"]; dr.Status != backend.StatusForbidden || dr.Error == nil {
		t.Fatalf("no-user top_users over gRPC: status %d error %v", dr.Status, dr.Error)
	}

	// A large export arrives as many messages, each under Grafana's 16 MiB limit.
	var body bytes.Buffer
	status, chunks := 0, 0
	path := "export?report=usage&format=csv&tenant=acme&meter=bulk&window=hour&from=" + url.QueryEscape("2026-01-01T00:00:00Z") + "&to=" + url.QueryEscape("2026-02-01T00:00:00Z")
	err = tp.Client.CallResource(ctx, &backend.CallResourceRequest{PluginContext: pc(admin), Path: "export", Method: "GET", URL: path},
		backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error {
			if chunks == 0 {
				status = r.Status
			}
			chunks++
			if len(r.Body) > 16<<20 {
				t.Errorf("chunk of %d bytes", len(r.Body))
			}
			body.Write(r.Body)
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	if status != 200 {
		t.Fatalf("export status %d: %s", status, body.String())
	}
	cr := csv.NewReader(&body)
	cr.Comment = '#'
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != bulkRows+1 || recs[0][0] != "tenant" || recs[bulkRows][7] != strconv.Itoa(bulkRows-1) {
		t.Fatalf("export: %d records, last %v", len(recs), recs[len(recs)-1])
	}
	// The report's parameters reach the analytics endpoint.
	var asked string
	for _, r := range fs.requests {
		if strings.HasPrefix(r, "/v1/reports/usage?") {
			asked = r
		}
	}
	u, _ := url.Parse(asked)
	if q := u.Query(); q.Get("format") != "csv" || q.Get("tenant") != "acme" || q.Get("meter") != "bulk" || q.Get("window") != "hour" ||
		q.Get("from") != "2026-01-01T00:00:00Z" || q.Get("to") != "2026-02-01T00:00:00Z" {
		t.Errorf("asked analytics %s", asked)
	}
	if chunks < 10 {
		t.Errorf("a %d-byte export came in %d message(s): not streamed", body.Len(), chunks)
	}
	t.Logf("export: %d rows in %d messages", bulkRows, chunks)

	// Exports need the reports.export permission: an SRE has none.
	sreStatus := 0
	err = tp.Client.CallResource(ctx, &backend.CallResourceRequest{PluginContext: pc(&backend.User{Login: "viewer", Role: "Viewer"}), Path: "export", Method: "GET", URL: "export?report=usage&tenant=acme"},
		backend.CallResourceResponseSenderFunc(func(r *backend.CallResourceResponse) error {
			if sreStatus == 0 {
				sreStatus = r.Status
			}
			return nil
		}))
	if err != nil || sreStatus != 403 {
		t.Fatalf("sre export: %v status %d", err, sreStatus)
	}
}

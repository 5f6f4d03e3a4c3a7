package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ledongthuc/pdf"
	"github.com/xuri/excelize/v2"
	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/analytics/insights"
	"github.com/usagemeter/usagemeter/analytics/internal/ledgertest"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/meter"
	"github.com/usagemeter/usagemeter/simulate"
)

var ctx = context.Background()

var (
	sep1 = time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	nov1 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
)

// simulated loads n simulator events spread evenly over September and October 2026 and returns
// the simulator's independent totals and the raw events.
func simulated(t testing.TB, n, tenants int) (*ledger.Store, *simulate.Totals, [][]byte) {
	st := ledgertest.Open(t)
	g := simulate.NewGenerator(tenants, 7)
	tot := simulate.NewTotals(meter.Defaults())
	span := nov1.Sub(sep1)
	var raws [][]byte
	var chunk [][]byte
	var chunkStart, chunkEnd time.Time
	flush := func() {
		if len(chunk) == 0 {
			return
		}
		if err := ledgertest.CommitRaw(st, chunkEnd, chunk); err != nil {
			t.Fatal(err)
		}
		chunk = nil
	}
	for i := range n {
		at := sep1.Add(time.Duration(int64(span) / int64(n) * int64(i)))
		raw := g.Next(nil, at)
		if err := tot.Add(raw); err != nil {
			t.Fatal(err)
		}
		if len(chunk) == 2000 || (len(chunk) > 0 && at.Sub(chunkStart) > 30*24*time.Hour) {
			flush()
		}
		if len(chunk) == 0 {
			chunkStart = at
		}
		raws = append(raws, raw)
		chunk = append(chunk, raw)
		chunkEnd = at
	}
	flush()
	return st, tot, raws
}

type jsonReport struct {
	Tables []struct {
		Title   string   `json:"title"`
		Columns []string `json:"columns"`
		Rows    [][]any  `json:"rows"`
	} `json:"tables"`
	Error string `json:"error"`
}

func runUsage(t *testing.T, s *Source, d Definition) []byte {
	t.Helper()
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tb, err := NewTables(d.Format, &buf, "Usage report", nov1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Usage(ctx, d, nov1, tb)
	if cerr := tb.Close(err); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	return buf.Bytes()
}

func TestUsageReportMatchesSimulatorTotals(t *testing.T) {
	st, tot, _ := simulated(t, 20000, 30)
	s := &Source{Store: st, Workers: 3}
	// The whole period in one window: every meter's value equals the simulator's all-time value
	// (flows: the sum; stocks: the level at the end; active_users: distinct users).
	out := runUsage(t, s, Definition{Format: JSON, Window: "none", Period: Period{From: sep1, To: nov1}})
	var rep jsonReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("%v: %.300s", err, out)
	}
	got := map[string]int64{}
	for _, r := range rep.Tables[0].Rows {
		got[r[0].(string)+"/"+r[1].(string)] += int64(r[len(r)-1].(float64))
	}
	checked := 0
	for _, tenant := range tot.Tenants() {
		for _, m := range meter.Defaults() {
			if want := tot.Value(tenant, m.Name); got[tenant+"/"+m.Name] != want {
				t.Errorf("%s %s: report %d, simulator %d", tenant, m.Name, got[tenant+"/"+m.Name], want)
			} else {
				checked++
			}
		}
	}
	if checked != 30*len(meter.Defaults()) {
		t.Fatalf("checked %d values", checked)
	}

	// By month, as CSV: the months of a flow add up to the total (read from month totals), a
	// stock's October row is its level.
	out = runUsage(t, s, Definition{Format: CSV, Period: Period{From: sep1, To: nov1}})
	recs, err := readCSV(out)
	if err != nil {
		t.Fatal(err)
	}
	flows := map[string]int64{}
	levels := map[string]int64{}
	for _, r := range recs[1:] {
		v, _ := strconv.ParseInt(r[len(r)-1], 10, 64)
		k := r[0] + "/" + r[1]
		if r[3] == "flow" {
			flows[k] += v
		} else if r[4] == "2026-10-01T00:00:00Z" {
			levels[k] = v
		}
	}
	for _, tenant := range tot.Tenants() {
		for _, m := range meter.Defaults() {
			k := tenant + "/" + m.Name
			g := flows[k]
			if m.Kind == meter.Stock {
				g = levels[k]
				if m.Aggregation == meter.UniqueCount {
					continue // October's distinct users are not the two months' distinct users
				}
			}
			if g != tot.Value(tenant, m.Name) {
				t.Errorf("monthly %s: %d, simulator %d", k, g, tot.Value(tenant, m.Name))
			}
		}
	}
}

func TestUsageReportFiltersAndGroups(t *testing.T) {
	st, _, raws := simulated(t, 6000, 8)
	// Independent: ai tokens of gpt-large or gpt-small per tenant and feature, from the raw JSON.
	want := map[string]int64{}
	for _, raw := range raws {
		var ev struct {
			Type string
			Data map[string]any
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "ai.tokens" || (ev.Data["model"] != "gpt-large" && ev.Data["model"] != "gpt-small") {
			continue
		}
		want[ev.Data["tenant"].(string)+"/"+ev.Data["feature"].(string)] += int64(ev.Data["input_tokens"].(float64) + ev.Data["output_tokens"].(float64))
	}
	def, err := Parse([]byte(`
name: big models
meters: [ai_tokens, storage_bytes]
group_by: [feature]
window: none
format: csv
period: {month: "2026-10"}
filters: {model: [gpt-large, gpt-small]}
`))
	if err != nil {
		t.Fatal(err)
	}
	def.Period = Period{From: sep1, To: nov1}
	out := runUsage(t, &Source{Store: st}, def)
	recs, err := readCSV(out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != "tenant,meter,unit,kind,window_start,window_end,feature,model,value" {
		t.Fatalf("header %v", recs[0])
	}
	got := map[string]int64{}
	for _, r := range recs[1:] {
		if r[1] != "ai_tokens" || r[7] != "" {
			t.Fatalf("row %v: storage_bytes has no model and must be left out; model is a filter, not a group", r)
		}
		v, _ := strconv.ParseInt(r[8], 10, 64)
		got[r[0]+"/"+r[6]] += v
	}
	if len(got) != len(want) || len(want) < 20 {
		t.Fatalf("%d groups, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d", k, got[k], v)
		}
	}
}

func TestFormatsCarryTheSameRows(t *testing.T) {
	st, _, _ := simulated(t, 3000, 5)
	s := &Source{Store: st}
	d := Definition{Meters: []string{"ai_tokens", "documents"}, GroupBy: []string{"model"}, Window: "day", Period: Period{From: sep1.AddDate(0, 0, 20), To: sep1.AddDate(0, 0, 23)}}
	csvOut := runUsage(t, s, withFormat(d, CSV))
	recs, err := readCSV(csvOut)
	if err != nil {
		t.Fatal(err)
	}
	f, err := excelize.OpenReader(bytes.NewReader(runUsage(t, s, withFormat(d, XLSX))))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := f.GetRows("Usage")
	if err != nil {
		t.Fatal(err)
	}
	// the header is row 1: notes are on their own sheet
	if len(rows) != len(recs) || len(rows) < 10 {
		t.Fatalf("xlsx %d rows, csv %d", len(rows), len(recs))
	}
	for i := range rows {
		if strings.Join(rows[i], ",") != strings.TrimRight(strings.Join(recs[i], ","), ",") {
			t.Fatalf("row %d: xlsx %v, csv %v", i, rows[i], recs[i])
		}
	}
	p := runUsage(t, s, withFormat(d, PDF))
	r, err := pdf.NewReader(bytes.NewReader(p), int64(len(p)))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := r.GetPlainText()
	if err != nil {
		t.Fatal(err)
	}
	txt, _ := io.ReadAll(tr)
	if !bytes.Contains(txt, []byte(recs[1][0])) || !bytes.Contains(txt, []byte("Usage report")) {
		t.Fatalf("the PDF lacks the first tenant %q", recs[1][0])
	}
}

// readCSV returns the records from the header on (the title and note lines before it have one
// field each).
func readCSV(b []byte) ([][]string, error) {
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	for i, rec := range recs {
		if rec[0] == "tenant" {
			return recs[i:], err
		}
	}
	return nil, fmt.Errorf("no header in %q", b)
}

func withFormat(d Definition, f string) Definition { d.Format = f; return d }

func TestDefinitionAndPeriods(t *testing.T) {
	now := time.Date(2026, 11, 26, 21, 40, 0, 0, time.UTC)
	for _, c := range []struct {
		p        Period
		from, to string
	}{
		{Period{}, "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"},
		{Period{Month: "2026-02"}, "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"},
		{Period{Last: "7d"}, "2026-11-19T00:00:00Z", "2026-11-26T00:00:00Z"},
		{Period{Last: "24h"}, "2026-11-25T22:00:00Z", "2026-11-26T22:00:00Z"},
		{Period{Last: "mtd"}, "2026-11-01T00:00:00Z", "2026-11-26T22:00:00Z"},
		{Period{Last: "ytd"}, "2026-01-01T00:00:00Z", "2026-11-26T22:00:00Z"},
	} {
		f, to, err := c.p.Resolve(now)
		if err != nil || f.Format(time.RFC3339) != c.from || to.Format(time.RFC3339) != c.to {
			t.Errorf("%+v: %s..%s %v; want %s..%s", c.p, f.Format(time.RFC3339), to.Format(time.RFC3339), err, c.from, c.to)
		}
	}
	for _, bad := range []Period{{Last: "3w"}, {Month: "2026-13"}, {From: now, To: now.Add(time.Hour)}} {
		if _, _, err := bad.Resolve(now); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	d, err := Parse([]byte(`{"kind": "executive", "tenants": ["a"]}`))
	if err != nil || d.Format != PDF || d.Window != "month" {
		t.Errorf("JSON definition: %+v %v", d, err)
	}
	for _, bad := range []string{"meterz: [x]", "format: docx", "window: week", "kind: weird", "filters: {model: []}"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	st := ledgertest.Open(t)
	if _, err := (&Source{Store: st}).Usage(ctx, Definition{Meters: []string{"nope"}}, now, &csvTables{w: csv.NewWriter(io.Discard)}); err == nil {
		t.Error("unknown meter accepted")
	}
}

func TestExecutiveSummary(t *testing.T) {
	st := ledgertest.Open(t)
	var evs []ledgertest.Event
	// acme: 100 tokens a day from Aug 10 to Oct 31, doubling in the last week; beta: 50 a day.
	for day := time.Date(2026, 8, 10, 12, 0, 0, 0, time.UTC); day.Before(nov1); day = day.Add(24 * time.Hour) {
		n := 100
		if !day.Before(nov1.Add(-7 * 24 * time.Hour)) {
			n = 200
		}
		evs = append(evs, ledgertest.E("ai.tokens", day, "tenant", "acme", "user", "u1", "feature", "chat", "model", "gpt-large", "input_tokens", n, "output_tokens", 0))
		evs = append(evs, ledgertest.E("ai.tokens", day, "tenant", "beta", "user", "u2", "feature", "chat", "model", "gpt-small", "input_tokens", 50, "output_tokens", 0))
	}
	ledgertest.Load(t, st, evs...)
	s := &Source{Store: st}
	x, err := s.ExecutiveSummary(ctx, nil, nov1.Add(3*time.Hour), &insights.Engine{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	// Oct 2..Oct 31: acme 23×100 + 7×200 = 3700, beta 30×50 = 1500; the 30 days before: 4500.
	if x.Tenants != 2 || x.KPIs[0].Meter != "ai_tokens" || x.KPIs[0].Value != 5200 || x.KPIs[0].Previous != 4500 {
		t.Fatalf("tenants %d, kpi %+v", x.Tenants, x.KPIs[0])
	}
	if au := x.KPIs[4]; au.Meter != "active_users" || au.Value != 2 {
		t.Errorf("active users %+v", au)
	}
	if len(x.Daily) != 30 || x.Daily[29].Value != 250 || x.Daily[0].Value != 150 || len(x.Forecast) != 7 || len(x.History) != 84 {
		t.Errorf("daily %d (last %v) forecast %d history %d", len(x.Daily), x.Daily[29].Value, len(x.Forecast), len(x.History))
	}
	// acme grew 100 % week over week (1400 vs 700); beta did not move (0 %), so it is no mover.
	if len(x.Movers) != 1 || x.Movers[0].Tenant != "acme" || *x.Movers[0].WeekOverWeek.Percent != 100 {
		t.Errorf("movers %+v", x.Movers)
	}
	// acme's chat on gpt-large: gpt-small serves chat for beta.
	if x.InsightCount != 1 || x.Insights[0].Kind != insights.KindCheaperModel || x.Insights[0].Saving.Units != 3700 {
		t.Errorf("insights %d %+v", x.InsightCount, x.Insights)
	}
	var buf bytes.Buffer
	if err := x.WritePDF(&buf); err != nil {
		t.Fatal(err)
	}
	sample(t, "executive.pdf", buf.Bytes())
	r, err := pdf.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if r.NumPage() != 1 {
		t.Fatalf("%d pages, want one", r.NumPage())
	}
	tr, _ := r.GetPlainText()
	txt, _ := io.ReadAll(tr)
	for _, w := range []string{"Executive summary", "Top movers", "acme", "+100.0%", "Holt-Winters"} {
		if !bytes.Contains(txt, []byte(w)) {
			t.Errorf("PDF text lacks %q", w)
		}
	}
	buf.Reset()
	tb, _ := NewTables(JSON, &buf, "Executive summary", nov1)
	if err := x.WriteTables(tb); err != nil {
		t.Fatal(err)
	}
	tb.Close(nil)
	var rep jsonReport
	if err := json.Unmarshal(buf.Bytes(), &rep); err != nil || len(rep.Tables) != 5 || rep.Tables[0].Rows[0][3].(float64) != 5200 {
		t.Fatalf("json tables: %v %s", err, buf.String())
	}
}

func TestComplianceReport(t *testing.T) {
	st := ledgertest.Open(t)
	ledgertest.Load(t, st,
		ledgertest.E("document.created", time.Date(2026, 10, 3, 0, 0, 0, 0, time.UTC), "tenant", "acme", "user", "ann", "document_id", "d1", "doc_type", "pdf", "bytes", 700),
		ledgertest.E("document.created", time.Date(2026, 10, 4, 0, 0, 0, 0, time.UTC), "tenant", "acme", "user", "bob", "document_id", "d2", "doc_type", "pdf", "bytes", 300),
		ledgertest.E("storage.measured", time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC), "tenant", "acme", "storage_class", "standard", "bytes", 5000),
		ledgertest.E("user.login", time.Date(2026, 10, 6, 0, 0, 0, 0, time.UTC), "tenant", "beta", "user", "cy"),
	)
	log, err := audit.Open(st.DB(), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	for i, e := range []audit.Entry{
		{Subject: "alice", Action: "usage.read", Tenant: "acme", Allow: true, Status: 200, Time: time.Date(2026, 10, 10, 0, 0, 0, 0, time.UTC)},
		{Subject: "mallory", Action: "reports.export", Tenant: "acme", Allow: false, Status: 403, Time: time.Date(2026, 10, 11, 0, 0, 0, 0, time.UTC)},
		{Subject: "alice", Action: "usage.read", Tenant: "beta", Allow: true, Status: 200, Time: time.Date(2026, 10, 12, 0, 0, 0, 0, time.UTC)},
		{Subject: "alice", Action: "usage.read", Tenant: "acme", Allow: true, Status: 200, Time: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)},
	} {
		if _, err := log.Append(ctx, e); err != nil {
			t.Fatal(i, err)
		}
	}
	var ret yaml.Node
	yaml.Unmarshal([]byte("raw_events: 400d\naudit: {keep: 7y}\n"), &ret)
	s := &Source{Store: st}
	c, err := s.ComplianceReport(ctx, "acme", time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), nov1, nov1, &ret, log, ScopeFull)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Held) != 1 {
		t.Fatalf("held %+v", c.Held)
	}
	h := c.Held[0]
	if h.Tenant != "acme" || h.RawEvents != 3 || h.Users != 2 || h.Documents != 2 || h.DocumentBytes != 1000 || h.StorageBytes != 5000 || !h.FirstEvent.Equal(time.Date(2026, 10, 3, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("held %+v", h)
	}
	if len(c.Retention) != 2 || c.Retention[0] != [2]string{"retention.raw_events", "400d"} || c.Retention[1] != [2]string{"retention.audit.keep", "7y"} {
		t.Errorf("retention %v", c.Retention)
	}
	a := c.Audit
	if !a.Verified || a.ChainLength != 4 || a.Entries != 2 || a.Denied != 1 || a.Subjects != 2 || a.ByAction["usage.read"] != 1 || len(a.Listed) != 2 {
		t.Errorf("audit %+v", a)
	}
	compliancePDF(t, c, "compliance.pdf", false)
	// The report says when there is nothing to say.
	c, err = s.ComplianceReport(ctx, "", time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), nov1, nov1, nil, nil, ScopeFull)
	if err != nil || len(c.Held) != 2 || c.RetentionNote == "" || c.Audit.Available {
		t.Errorf("without retention and audit: %+v %v", c, err)
	}
	var buf bytes.Buffer
	tb, _ := NewTables(CSV, &buf, "Compliance", nov1)
	if err := c.WriteTables(tb); err != nil || tb.Close(nil) != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "not available: the audit log is not wired") {
		t.Errorf("csv: %s", buf.String())
	}
	compliancePDF(t, c, "compliance-empty.pdf", true)
}

// compliancePDF renders c as PDF and checks what a reader sees: headers aligned with their
// columns (numbers right-aligned under right-aligned headers) and "none" for an empty table.
func compliancePDF(t *testing.T, c *Compliance, name string, empty bool) {
	t.Helper()
	var buf bytes.Buffer
	tb, _ := NewTables(PDF, &buf, "Compliance report", nov1)
	if err := c.WriteTables(tb); err != nil || tb.Close(nil) != nil {
		t.Fatal(err)
	}
	sample(t, name, buf.Bytes())
	r, err := pdf.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := r.GetPlainText()
	txt, _ := io.ReadAll(tr)
	if bytes.Contains(txt, []byte("none")) != empty {
		t.Errorf("empty tables %v, \"none\" shown %v:\n%s", empty, !empty, txt)
	}
}

// TestPDFTablesAlignHeadersWithColumns: a column of numbers is right-aligned, header included;
// a text column, and a key/value column whose values start as text, are left-aligned.
func TestPDFTablesAlignHeadersWithColumns(t *testing.T) {
	p := newPDFTables(io.Discard, "t", nov1)
	var none *float64
	if err := p.Begin("Data held", []string{"tenant", "raw_events", "first_event", "change_percent"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Row("acme", int64(1234567), nov1, none); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"L", "R", "L", "R"} {
		if got := p.align(i); got != want {
			t.Errorf("column %s aligned %s, want %s", p.cols[i], got, want)
		}
	}
	if got := pdfText(int64(1234567)); got != "1,234,567" {
		t.Errorf("pdfText = %q", got)
	}
	p.Begin("Audit summary", []string{"item", "value"})
	p.Row("period", "2026-10-01T00:00:00Z to 2026-11-01T00:00:00Z")
	p.Row("chain_length", int64(4))
	if p.align(1) != "L" {
		t.Errorf("a key/value column aligned %s", p.align(1))
	}
}

// TestComplianceReportTenantScope: a tenant's own report (a customer's admin) shows what
// concerns that tenant only: no server paths or key settings, no entries about other tenants
// or the server, and no names of principals refused on the tenant (other tenants' people,
// failed logins). The full scope (platform admins) still shows everything.
func TestComplianceReportTenantScope(t *testing.T) {
	st := ledgertest.Open(t)
	ledgertest.Load(t, st,
		ledgertest.E("user.login", time.Date(2026, 10, 6, 0, 0, 0, 0, time.UTC), "tenant", "acme", "user", "ann"),
		ledgertest.E("user.login", time.Date(2026, 10, 6, 0, 0, 0, 0, time.UTC), "tenant", "beta", "user", "cy"),
	)
	log, err := audit.Open(st.DB(), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	at := time.Date(2026, 10, 10, 0, 0, 0, 0, time.UTC)
	for i, e := range []audit.Entry{
		{Subject: "ann", Action: "usage.read", Tenant: "acme", Allow: true, Status: 200, Time: at},
		{Subject: "gus@globex.example", Action: "usage.read", Tenant: "acme", Allow: false, Status: 403, Time: at,
			Reason: `tenant "acme" is not among the principal's tenants`},
		{Subject: "bo@beta.example", Action: "usage.read", Tenant: "beta", Allow: true, Status: 200, Time: at},
		{Subject: "op-alice", Action: "admin", Tenant: "", Path: "/v1/admin/reload", Allow: true, Status: 200, Time: at},
	} {
		if _, err := log.Append(ctx, e); err != nil {
			t.Fatal(i, err)
		}
	}
	var ret yaml.Node
	yaml.Unmarshal([]byte("raw_events: 400d\narchive_dir: /srv/usagemeter/archive\nkey_file: /etc/usagemeter/archive.key\nkey_env: UM_ARCHIVE_KEY\n"), &ret)
	s := &Source{Store: st}
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

	c, err := s.ComplianceReport(ctx, "acme", from, nov1, nov1, &ret, log, ScopeTenant)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tb, _ := NewTables(CSV, &buf, "Compliance", nov1)
	if err := c.WriteTables(tb); err != nil || tb.Close(nil) != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(c)
	for _, out := range []string{buf.String(), string(js)} {
		for _, secret := range []string{"/srv/usagemeter", "/etc/usagemeter", "UM_ARCHIVE_KEY", "gus@globex.example", "bo@beta.example", "op-alice", "/v1/admin/reload"} {
			if strings.Contains(out, secret) {
				t.Errorf("the tenant's report shows %q:\n%s", secret, out)
			}
		}
	}
	if len(c.Held) != 1 || c.Held[0].Tenant != "acme" {
		t.Errorf("held %+v", c.Held)
	}
	if !slices.Contains(c.Retention, [2]string{"retention.raw_events", "400d"}) {
		t.Errorf("the tenant's report hides the retention period: %v", c.Retention)
	}
	a := c.Audit
	if a.Entries != 2 || a.Denied != 1 || len(a.Listed) != 2 || a.Listed[0].Subject != "ann" || a.Listed[1].Subject == "" || !a.Verified {
		t.Errorf("audit %+v", a)
	}

	full, err := s.ComplianceReport(ctx, "", from, nov1, nov1, &ret, log, ScopeFull)
	if err != nil {
		t.Fatal(err)
	}
	fj, _ := json.Marshal(full)
	for _, want := range []string{"/srv/usagemeter/archive", "/etc/usagemeter/archive.key", "gus@globex.example", "op-alice"} {
		if !strings.Contains(string(fj), want) {
			t.Errorf("the full report lacks %q", want)
		}
	}
	if full.Audit.Entries != 4 || full.Audit.ChainLength != 4 {
		t.Errorf("full audit %+v", full.Audit)
	}
}

// The report reads ungrouped meters with ledger.Store.UngroupedUsage: it must answer exactly
// what Store.Usage answers, for every kind of meter and window, aligned or not.
func TestUngroupedUsageEqualsUsage(t *testing.T) {
	st, tot, _ := simulated(t, 8000, 12)
	ranges := [][2]time.Time{
		{sep1, nov1},
		{sep1.Add(53 * time.Hour), nov1.Add(-31 * time.Hour)},
		{sep1.AddDate(0, 0, 20).Add(7 * time.Hour), sep1.AddDate(0, 0, 20).Add(9 * time.Hour)},
		{nov1, nov1.AddDate(0, 1, 0)}, // after every event: stock levels carry on
	}
	n := 0
	for _, tenant := range tot.Tenants() {
		for _, m := range meter.Defaults() {
			for _, r := range ranges {
				for _, w := range []string{ledger.WindowNone, ledger.WindowHour, ledger.WindowDay, ledger.WindowMonth} {
					q := ledger.Query{Meter: m.Name, Tenant: tenant, From: r[0], To: r[1], Window: w}
					want, err := st.Usage(ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					got, err := st.UngroupedUsage(ctx, q)
					if err != nil {
						t.Fatal(err)
					}
					if len(got) != len(want) {
						t.Fatalf("%s %s %v %s: %d rows, Usage %d", tenant, m.Name, r, w, len(got), len(want))
					}
					for i := range want {
						if !got[i].WindowStart.Equal(want[i].WindowStart) || !got[i].WindowEnd.Equal(want[i].WindowEnd) || got[i].Value != want[i].Value {
							t.Fatalf("%s %s %v %s row %d: %+v, Usage %+v", tenant, m.Name, r, w, i, got[i], want[i])
						}
					}
					n += len(want)
				}
			}
		}
	}
	if n < 10000 {
		t.Fatalf("only %d rows compared", n)
	}
}

// Insights read raw events with ledger.Store.RawEventsOfTypes, which skips decoding events whose
// JSON cannot be of the wanted types: it must yield exactly what RawEvents filtered by type does.
func TestRawEventsOfTypesEqualsFilteredRawEvents(t *testing.T) {
	st, _, _ := simulated(t, 5000, 6)
	types := []string{"document.deleted", "ingest.completed"}
	var want, got []string
	from, to := sep1.AddDate(0, 0, 3), nov1.AddDate(0, 0, -2)
	err := st.RawEvents(ctx, from, to, func(ev *event.Event) error {
		if ev.Type == types[0] || ev.Type == types[1] {
			want = append(want, ev.ID+ev.Type+ev.Time.String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.RawEventsOfTypes(ctx, from, to, types, func(ev *event.Event) error {
		got = append(got, ev.ID+ev.Type+ev.Time.String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 500 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%d events of the types, RawEventsOfTypes gave %d", len(want), len(got))
	}
}

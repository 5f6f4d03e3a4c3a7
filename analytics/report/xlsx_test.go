package report

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"github.com/usagemeter/usagemeter/analytics/stats"
)

// xlsxSample writes the executive summary's tables as XLSX: a text, number and percentage
// sheet (KPIs, one percentage absent) and a time series (Daily), with notes.
func xlsxSample(t *testing.T) []byte {
	t.Helper()
	pc := 15.6
	day := time.Date(2026, 10, 2, 0, 0, 0, 0, time.UTC)
	x := &Executive{From: day, To: day.Add(30 * stats.Day), Tenants: 2, ChartMeter: "ai_tokens",
		KPIs: []KPI{{Name: "AI tokens", Meter: "ai_tokens", Unit: "tokens", Value: 5200, Previous: 4500, Percent: &pc},
			{Name: "Logins", Meter: "logins", Unit: "logins", Value: 0}},
		Daily: []stats.Point{{Time: day, Value: 150}, {Time: day.Add(stats.Day), Value: 250}}}
	var buf bytes.Buffer
	tb, err := NewTables(XLSX, &buf, "Executive summary", day)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.WriteTables(tb); err != nil {
		t.Fatal(err)
	}
	if err := tb.Close(nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestXLSXIsASpreadsheet reads an XLSX report back: the header on row 1, bold, frozen and
// filtered; columns sized to their content; times as dates and percentages as numbers; notes on
// their own sheet (issue #19).
func TestXLSXIsASpreadsheet(t *testing.T) {
	f, err := excelize.OpenReader(bytes.NewReader(xlsxSample(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sheets := f.GetSheetList()
	if len(sheets) != 6 || sheets[0] != "KPIs" || sheets[5] != "Notes" {
		t.Fatalf("sheets %v, want the five tables then Notes", sheets)
	}
	for _, sh := range sheets[:5] {
		if v, _ := f.GetCellValue(sh, "A1"); v == "" || v == "note" {
			t.Errorf("%s: A1 is %q, want the first column's header", sh, v)
		}
		sid, _ := f.GetCellStyle(sh, "A1")
		if st, err := f.GetStyle(sid); err != nil || st.Font == nil || !st.Font.Bold {
			t.Errorf("%s: the header is not bold (%v)", sh, err)
		}
		panes, err := f.GetPanes(sh)
		if err != nil || !panes.Freeze || panes.YSplit != 1 || panes.TopLeftCell != "A2" {
			t.Errorf("%s: panes %+v (%v), want the header row frozen", sh, panes, err)
		}
		tables, err := f.GetTables(sh)
		if err != nil || len(tables) != 1 || tables[0].Range[:3] != "A1:" {
			t.Errorf("%s: tables %+v (%v), want one filtered table from A1", sh, tables, err)
		}
	}
	// KPIs: kpi, meter, unit, last_30_days, previous_30_days, change_percent.
	// A number cell has no type attribute (excelize: unset) or "n"; text is a string type.
	for cell, want := range map[string]string{"D2": "5200", "F2": "15.6"} {
		ty, _ := f.GetCellType("KPIs", cell)
		raw, _ := f.GetCellValue("KPIs", cell, excelize.Options{RawCellValue: true})
		if (ty != excelize.CellTypeUnset && ty != excelize.CellTypeNumber) || raw != want {
			t.Errorf("KPIs %s is of type %v holding %q, want the number %s", cell, ty, raw, want)
		}
	}
	if v, _ := f.GetCellValue("KPIs", "F3"); v != "" {
		t.Errorf("an absent percentage shows %q, want an empty cell", v)
	}
	if w, _ := f.GetColWidth("KPIs", "E"); w < float64(len("previous_30_days")) {
		t.Errorf("column E is %.1f wide, narrower than its header", w)
	}
	// Daily: day (a date cell, UTC), value.
	raw, _ := f.GetCellValue("Daily ai_tokens", "A2", excelize.Options{RawCellValue: true})
	shown, _ := f.GetCellValue("Daily ai_tokens", "A2")
	if raw != "46297" || shown != "2026-10-02T00:00:00Z" {
		t.Errorf("a day is stored %q shown %q, want the date serial 46297 shown as 2026-10-02T00:00:00Z", raw, shown)
	}
	if v, _ := f.GetCellValue("Notes", "B2"); v == "" {
		t.Errorf("the Notes sheet has no note")
	}
}

// TestXLSXWithOpenpyxl reads the same file with openpyxl, as a spreadsheet user's tools would,
// when python3 and openpyxl are installed (Debian: apt-get install python3-openpyxl).
func TestXLSXWithOpenpyxl(t *testing.T) {
	var py string
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import openpyxl").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		t.Skip("python3 with openpyxl not found (apt-get install python3-openpyxl): the excelize read-back above still runs")
	}
	file := filepath.Join(t.TempDir(), "summary.xlsx")
	if err := os.WriteFile(file, xlsxSample(t), 0o600); err != nil {
		t.Fatal(err)
	}
	script := `
import datetime, sys, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
assert wb.sheetnames[0] == "KPIs" and wb.sheetnames[-1] == "Notes", wb.sheetnames
for ws in wb.worksheets[:-1]:
    assert ws["A1"].value and ws["A1"].font.bold, (ws.title, ws["A1"].value)
    assert ws.freeze_panes == "A2", (ws.title, ws.freeze_panes)
    assert len(ws.tables) == 1 and list(ws.tables.values())[0].ref.startswith("A1:"), ws.title
kpi = wb["KPIs"]
assert isinstance(kpi["D2"].value, (int, float)), type(kpi["D2"].value)
assert isinstance(kpi["F2"].value, float) and abs(kpi["F2"].value - 15.6) < 1e-9, kpi["F2"].value
assert kpi["F3"].value is None, kpi["F3"].value
assert kpi.column_dimensions["E"].width >= len("previous_30_days"), kpi.column_dimensions["E"].width
day = wb["Daily ai_tokens"]["A2"].value
assert day == datetime.datetime(2026, 10, 2), day
assert wb["Notes"]["B2"].value, "no note"
print("ok")
`
	out, err := exec.Command(py, "-c", script, file).CombinedOutput()
	if err != nil {
		t.Fatalf("openpyxl: %v\n%s", err, out)
	}
}

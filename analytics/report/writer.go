package report

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/go-pdf/fpdf"
	"github.com/xuri/excelize/v2"
)

// Formats.
const (
	CSV  = "csv"
	JSON = "json"
	PDF  = "pdf"
	XLSX = "xlsx"
)

// ContentType is the media type of a format.
func ContentType(format string) string {
	switch format {
	case CSV:
		return "text/csv; charset=utf-8"
	case JSON:
		return "application/json"
	case PDF:
		return "application/pdf"
	case XLSX:
		return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	}
	return "application/octet-stream"
}

// CheckFormat validates a format name.
func CheckFormat(f string) error {
	switch f {
	case CSV, JSON, PDF, XLSX:
		return nil
	}
	return fmt.Errorf("format %q must be csv, json, pdf or xlsx", f)
}

// Tables writes a report as a sequence of tables. Rows are written as they come (CSV and JSON
// reach the client row by row; XLSX rows go to excelize's stream writer, which spills to a
// temporary file; PDF pages are laid out as rows arrive).
type Tables interface {
	// Begin starts a table; notes are free text lines printed above it.
	Begin(title string, columns []string, notes ...string) error
	Row(values ...any) error
	// Close finishes the document; err, when not nil, is recorded in it (the status line is
	// already sent when a streamed report fails half-way).
	Close(err error) error
}

// NewTables returns the table writer of a format.
func NewTables(format string, w io.Writer, title string, generated time.Time) (Tables, error) {
	switch format {
	case CSV:
		return &csvTables{w: csv.NewWriter(w)}, nil
	case JSON:
		bw := bufio.NewWriterSize(w, 64<<10)
		return &jsonTables{w: bw, title: title, generated: generated}, nil
	case XLSX:
		return &xlsxTables{out: w, f: excelize.NewFile()}, nil
	case PDF:
		return newPDFTables(w, title, generated), nil
	}
	return nil, CheckFormat(format)
}

func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return formatFloat(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case bool:
		return strconv.FormatBool(x)
	case *float64:
		if x == nil {
			return ""
		}
		return formatFloat(*x)
	case *int64:
		if x == nil {
			return ""
		}
		return strconv.FormatInt(*x, 10)
	}
	return fmt.Sprint(v)
}

// formatFloat keeps four decimals: analytics ratios, not money (money is integer minor units).
func formatFloat(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return ""
	}
	return strconv.FormatFloat(math.Round(f*1e4)/1e4, 'f', -1, 64)
}

type csvTables struct {
	w      *csv.Writer
	tables int
	n      int
	rec    []string
	times  map[time.Time]string // formatted window bounds: a report repeats them on every row
}

func (c *csvTables) Begin(title string, columns []string, notes ...string) error {
	if c.tables > 0 {
		c.w.Write(nil) // a blank line between tables
	}
	c.tables++
	if c.tables > 1 || len(notes) > 0 {
		c.w.Write([]string{"# " + title})
		for _, n := range notes {
			c.w.Write([]string{"# " + n})
		}
	}
	return c.w.Write(columns)
}

func (c *csvTables) Row(values ...any) error {
	if cap(c.rec) < len(values) {
		c.rec = make([]string, len(values))
	}
	rec := c.rec[:len(values)]
	for i, v := range values {
		if t, ok := v.(time.Time); ok {
			if c.times == nil || len(c.times) > 1<<16 {
				c.times = map[time.Time]string{}
			}
			s, ok := c.times[t]
			if !ok {
				s = text(t)
				c.times[t] = s
			}
			rec[i] = s
			continue
		}
		rec[i] = text(v)
	}
	if err := c.w.Write(rec); err != nil {
		return err
	}
	if c.n++; c.n%1024 == 0 {
		c.w.Flush()
		return c.w.Error()
	}
	return nil
}

func (c *csvTables) Close(err error) error {
	if err != nil {
		c.w.Write([]string{"# error: " + err.Error()})
	}
	c.w.Flush()
	return c.w.Error()
}

type jsonTables struct {
	w         *bufio.Writer
	title     string
	generated time.Time
	open      bool // a table is open
	rows      int
	started   bool
}

func (j *jsonTables) start() {
	if j.started {
		return
	}
	j.started = true
	t, _ := json.Marshal(j.title)
	fmt.Fprintf(j.w, `{"title":%s,"generated_at":"%s","tables":[`, t, j.generated.UTC().Format(time.RFC3339))
}

func (j *jsonTables) Begin(title string, columns []string, notes ...string) error {
	j.start()
	if j.open {
		j.w.WriteString("]},")
	}
	j.open, j.rows = true, 0
	t, _ := json.Marshal(title)
	c, _ := json.Marshal(columns)
	if notes == nil {
		notes = []string{}
	}
	n, _ := json.Marshal(notes)
	_, err := fmt.Fprintf(j.w, "\n"+`{"title":%s,"notes":%s,"columns":%s,"rows":[`, t, n, c)
	return err
}

func (j *jsonTables) Row(values ...any) error {
	if j.rows > 0 {
		j.w.WriteByte(',')
	}
	j.w.WriteByte('\n')
	j.rows++
	out := make([]any, len(values))
	for i, v := range values {
		switch x := v.(type) {
		case time.Time:
			out[i] = x.UTC().Format(time.RFC3339)
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				out[i] = nil
			} else {
				out[i] = math.Round(x*1e4) / 1e4
			}
		default:
			out[i] = v
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = j.w.Write(b)
	return err
}

func (j *jsonTables) Close(err error) error {
	j.start()
	if j.open {
		j.w.WriteString("]}")
	}
	j.w.WriteString("]")
	if err != nil {
		e, _ := json.Marshal(err.Error())
		fmt.Fprintf(j.w, `,"error":%s`, e)
	}
	j.w.WriteString("}\n")
	return j.w.Flush()
}

type xlsxTables struct {
	out    io.Writer
	f      *excelize.File
	sw     *excelize.StreamWriter
	sheet  string
	cols   []string
	row    int
	sheets int
	names  map[string]bool
	// pending holds a sheet's first rows until the column widths are known from them.
	pending [][]any
	started bool
	notes   [][2]string // sheet, note: written on their own sheet at the end
	styles  struct{ header, date, number int }
}

// xlsxWidthRows is how many rows of a sheet size its columns before the sheet is streamed.
const xlsxWidthRows = 200

func sheetName(title string, taken map[string]bool) string {
	// Excel limits sheet names to 31 characters and forbids []:*?/\.
	b := []rune{}
	for _, r := range title {
		switch r {
		case '[', ']', ':', '*', '?', '/', '\\':
			r = '-'
		}
		b = append(b, r)
	}
	if len(b) > 28 {
		b = b[:28]
	}
	name := string(b)
	if name == "" {
		name = "Sheet"
	}
	for i := 2; taken[name]; i++ {
		name = fmt.Sprintf("%s %d", string(b), i)
	}
	taken[name] = true
	return name
}

// Begin starts a sheet: the header on row 1 (bold, frozen, with filters), the notes kept for the
// Notes sheet. Times are date cells in UTC shown as RFC 3339; percentages and other numbers are
// numbers.
func (x *xlsxTables) Begin(title string, columns []string, notes ...string) error {
	if err := x.endSheet(); err != nil {
		return err
	}
	if x.names == nil {
		x.names = map[string]bool{"Notes": true}
		var err error
		if x.styles.header, err = x.f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true},
			Fill: excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{"E7E6E6"}}}); err != nil {
			return err
		}
		fmtDate := `yyyy-mm-dd"T"hh:mm:ss"Z"`
		if x.styles.date, err = x.f.NewStyle(&excelize.Style{CustomNumFmt: &fmtDate}); err != nil {
			return err
		}
	}
	name := sheetName(title, x.names)
	if x.sheets == 0 {
		if err := x.f.SetSheetName("Sheet1", name); err != nil {
			return err
		}
	} else if _, err := x.f.NewSheet(name); err != nil {
		return err
	}
	x.sheets++
	sw, err := x.f.NewStreamWriter(name)
	if err != nil {
		return err
	}
	x.sw, x.sheet, x.cols, x.row, x.pending, x.started = sw, name, columns, 0, nil, false
	for _, n := range notes {
		x.notes = append(x.notes, [2]string{name, n})
	}
	hdr := make([]any, len(columns))
	for i, c := range columns {
		hdr[i] = c
	}
	return x.Row(hdr...)
}

func (x *xlsxTables) Row(values ...any) error {
	vals := make([]any, len(values))
	for i, v := range values {
		switch t := v.(type) {
		case time.Time:
			vals[i] = excelize.Cell{StyleID: x.styles.date, Value: t.UTC()}
		case *float64:
			if t != nil {
				vals[i] = *t
			}
		case *int64:
			if t != nil {
				vals[i] = *t
			}
		default:
			vals[i] = v
		}
	}
	if !x.started {
		x.pending = append(x.pending, vals)
		if len(x.pending) < xlsxWidthRows {
			return nil
		}
		return x.start()
	}
	return x.write(vals)
}

func (x *xlsxTables) write(vals []any) error {
	x.row++
	cell, err := excelize.CoordinatesToCellName(1, x.row)
	if err != nil {
		return err
	}
	if x.row == 1 {
		return x.sw.SetRow(cell, vals, excelize.RowOpts{StyleID: x.styles.header})
	}
	return x.sw.SetRow(cell, vals)
}

// start sizes the columns on the pending rows, freezes the header and writes the rows.
func (x *xlsxTables) start() error {
	x.started = true
	n := len(x.cols)
	for _, r := range x.pending {
		n = max(n, len(r))
	}
	for c := 0; c < n; c++ {
		w := 8
		for _, r := range x.pending {
			if c < len(r) {
				w = max(w, cellWidth(r[c]))
			}
		}
		if err := x.sw.SetColWidth(c+1, c+1, float64(min(w+2, 60))); err != nil {
			return err
		}
	}
	if err := x.sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"}); err != nil {
		return err
	}
	for _, r := range x.pending {
		if err := x.write(r); err != nil {
			return err
		}
	}
	x.pending = nil
	return nil
}

// cellWidth is a value's width in characters as shown.
func cellWidth(v any) int {
	switch t := v.(type) {
	case excelize.Cell:
		if _, ok := t.Value.(time.Time); ok {
			return len("2006-01-02T15:04:05Z")
		}
		return cellWidth(t.Value)
	case float64:
		return len(formatFloat(t))
	}
	return len([]rune(text(v)))
}

// endSheet writes the sheet's rows, puts filters on its header and data, and flushes it.
func (x *xlsxTables) endSheet() error {
	if x.sw == nil {
		return nil
	}
	if !x.started {
		if err := x.start(); err != nil {
			return err
		}
	}
	if len(x.cols) > 0 && x.row >= 1 && uniqueHeaders(x.cols) {
		last, err := excelize.CoordinatesToCellName(len(x.cols), max(x.row, 2))
		if err != nil {
			return err
		}
		off := false
		if err := x.sw.AddTable(&excelize.Table{Range: "A1:" + last, StyleName: "TableStyleLight1", ShowRowStripes: &off}); err != nil {
			return err
		}
	}
	err := x.sw.Flush()
	x.sw = nil
	return err
}

func uniqueHeaders(cols []string) bool {
	seen := map[string]bool{}
	for _, c := range cols {
		if c == "" || seen[c] {
			return false
		}
		seen[c] = true
	}
	return true
}

func (x *xlsxTables) Close(err error) error {
	defer x.f.Close()
	if err != nil {
		if x.sw == nil {
			if berr := x.Begin("Error", []string{"error"}); berr != nil {
				return berr
			}
		}
		x.Row("error: " + err.Error())
	}
	if ferr := x.endSheet(); ferr != nil {
		return ferr
	}
	if len(x.notes) > 0 {
		if _, nerr := x.f.NewSheet("Notes"); nerr != nil {
			return nerr
		}
		_ = x.f.SetColWidth("Notes", "A", "A", 24)
		_ = x.f.SetColWidth("Notes", "B", "B", 120)
		_ = x.f.SetSheetRow("Notes", "A1", &[]any{"sheet", "note"})
		_ = x.f.SetCellStyle("Notes", "A1", "B1", x.styles.header)
		for i, n := range x.notes {
			if serr := x.f.SetSheetRow("Notes", fmt.Sprintf("A%d", i+2), &[]any{n[0], n[1]}); serr != nil {
				return serr
			}
		}
	}
	return x.f.Write(x.out)
}

// pdfTables lays tables out on A4 landscape pages.
type pdfTables struct {
	out    io.Writer
	pdf    *fpdf.Fpdf
	tr     func(string) string
	widths []float64
	cols   []string
	title  string
	// aligns are the columns' alignments, known from the first row: numbers right-aligned, and
	// their headers with them. Until then the header waits (pending).
	aligns  []string
	pending bool
	rows    int
}

func newPDFTables(w io.Writer, title string, generated time.Time) *pdfTables {
	pdf := fpdf.New("L", "mm", "A4", "")
	pdf.SetTitle(title, true)
	pdf.SetCreationDate(generated)
	pdf.SetModificationDate(generated)
	pdf.SetMargins(10, 10, 10)
	pdf.SetAutoPageBreak(true, 10)
	p := &pdfTables{out: w, pdf: pdf, tr: pdf.UnicodeTranslatorFromDescriptor(""), title: title}
	pdf.SetFooterFunc(func() {
		pdf.SetY(-8)
		pdf.SetFont("Helvetica", "", 7)
		pdf.CellFormat(0, 4, p.tr(fmt.Sprintf("%s - generated %s - page %d", title, generated.UTC().Format(time.RFC3339), pdf.PageNo())), "", 0, "C", false, 0, "")
	})
	pdf.AddPage()
	pdf.SetFont("Helvetica", "B", 14)
	pdf.CellFormat(0, 8, p.tr(title), "", 1, "L", false, 0, "")
	return p
}

func (p *pdfTables) header() {
	p.pdf.SetFont("Helvetica", "B", 7.5)
	p.pdf.SetFillColor(225, 225, 225)
	for i, c := range p.cols {
		p.pdf.CellFormat(p.widths[i], 5, p.tr(fitText(p.pdf, c, p.widths[i])), "B", 0, p.align(i), true, 0, "")
	}
	p.pdf.Ln(-1)
	p.pdf.SetFont("Helvetica", "", 7.5)
}

func (p *pdfTables) align(i int) string {
	if i < len(p.aligns) && p.aligns[i] != "" {
		return p.aligns[i]
	}
	return "L"
}

// endTable closes the table in progress: a table without rows says "none".
func (p *pdfTables) endTable() {
	if p.cols == nil || p.rows > 0 {
		return
	}
	if p.pending {
		p.header()
		p.pending = false
	}
	p.pdf.SetFont("Helvetica", "I", 7.5)
	p.pdf.CellFormat(0, 4.2, "none", "", 1, "L", false, 0, "")
	p.pdf.SetFont("Helvetica", "", 7.5)
}

func (p *pdfTables) Begin(title string, columns []string, notes ...string) error {
	p.endTable()
	p.pdf.Ln(3)
	if p.pdf.GetY() > 170 {
		p.pdf.AddPage()
	}
	p.pdf.SetFont("Helvetica", "B", 10)
	p.pdf.CellFormat(0, 6, p.tr(title), "", 1, "L", false, 0, "")
	p.pdf.SetFont("Helvetica", "I", 7.5)
	for _, n := range notes {
		p.pdf.MultiCell(0, 4, p.tr(n), "", "L", false)
	}
	p.cols = columns
	p.widths = make([]float64, len(columns))
	for i := range columns {
		p.widths[i] = 277 / float64(max(len(columns), 1))
	}
	p.aligns, p.pending, p.rows = nil, true, 0
	return p.pdf.Error()
}

func (p *pdfTables) Row(values ...any) error {
	if p.pending {
		p.aligns = make([]string, len(p.cols))
		for i, v := range values {
			if i < len(p.aligns) && isNumber(v) {
				p.aligns[i] = "R"
			}
		}
		p.header()
		p.pending = false
	}
	p.rows++
	if p.pdf.GetY() > 195 {
		p.pdf.AddPage()
		p.header()
	}
	for i, v := range values {
		if i >= len(p.widths) {
			break
		}
		// The column's alignment, header included: a key/value table whose values start as text
		// keeps its later numbers under the same edge.
		p.pdf.CellFormat(p.widths[i], 4.2, p.tr(fitText(p.pdf, pdfText(v), p.widths[i])), "", 0, p.align(i), false, 0, "")
	}
	p.pdf.Ln(-1)
	return p.pdf.Error()
}

func isNumber(v any) bool {
	switch v.(type) {
	case int, int64, float64, *float64, *int64:
		return true
	}
	return false
}

// pdfText is text(v) for people: integers with thousands separators.
func pdfText(v any) string {
	switch x := v.(type) {
	case int:
		return groupDigits(int64(x))
	case int64:
		return groupDigits(x)
	case *int64:
		if x != nil {
			return groupDigits(*x)
		}
	}
	return text(v)
}

// groupDigits writes n with comma thousands separators.
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func (p *pdfTables) Close(err error) error {
	p.endTable()
	if err != nil {
		p.pdf.SetTextColor(200, 0, 0)
		p.pdf.MultiCell(0, 5, p.tr("error: "+err.Error()), "", "L", false)
	}
	return p.pdf.Output(p.out)
}

// fitText shortens s with an ellipsis to fit width w (mm) in the current font.
func fitText(pdf *fpdf.Fpdf, s string, w float64) string {
	if pdf.GetStringWidth(s) <= w-1 {
		return s
	}
	r := []rune(s)
	for len(r) > 1 && pdf.GetStringWidth(string(r)+"...") > w-1 {
		r = r[:len(r)-1]
	}
	return string(r) + "..."
}

package report

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/go-pdf/fpdf"

	"github.com/usagemeter/usagemeter/analytics/stats"
)

// human renders a value compactly for the page: 1.23M, 4.5 GiB.
func human(v float64, unit string) string {
	if unit == "bytes" {
		for i, u := range []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"} {
			if math.Abs(v) < 1024 || i == 5 {
				if i == 0 {
					return fmt.Sprintf("%.0f B", v)
				}
				return fmt.Sprintf("%.1f %s", v, u)
			}
			v /= 1024
		}
	}
	switch a := math.Abs(v); {
	case a >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case a >= 1e3: // 5200 → 5,200
		return fmt.Sprintf("%d,%03d", int64(v)/1000, int64(math.Abs(v))%1000)
	}
	return fmt.Sprintf("%.0f", v)
}

// chartName is the charted meter as people read it: its KPI name ("AI tokens"), else its name.
func (x *Executive) chartName() string {
	for _, k := range KPIMeters {
		if k.Meter == x.ChartMeter {
			return k.Name
		}
	}
	return x.ChartMeter
}

// WritePDF draws the summary on one A4 page: KPI tiles, a bar chart of the last 30 days, a line
// chart of twelve weeks with the forecast, the top movers and the top insights. Everything is
// drawn with fpdf primitives (rectangles, lines, text), no images.
func (x *Executive) WritePDF(w io.Writer) error {
	pdf := fpdf.New("P", "mm", "A4", "")
	tr := pdf.UnicodeTranslatorFromDescriptor("")
	pdf.SetTitle("Executive summary", true)
	pdf.SetCreationDate(x.GeneratedAt)
	pdf.SetModificationDate(x.GeneratedAt)
	pdf.SetMargins(12, 12, 12)
	pdf.SetAutoPageBreak(false, 0) // one page, by construction
	pdf.AddPage()

	pdf.SetFont("Helvetica", "B", 16)
	pdf.CellFormat(0, 8, "Executive summary", "", 1, "L", false, 0, "")
	pdf.SetFont("Helvetica", "", 8.5)
	pdf.SetTextColor(90, 90, 90)
	pdf.CellFormat(0, 5, tr(fmt.Sprintf("Last 30 days: %s to %s (UTC), compared with the 30 days before. %d tenants. Generated %s.",
		x.From.Format(time.DateOnly), x.To.Add(-time.Second).Format(time.DateOnly), x.Tenants, x.GeneratedAt.Format(time.RFC3339))), "", 1, "L", false, 0, "")
	pdf.SetTextColor(0, 0, 0)

	// KPI tiles: 3 per row.
	top := 28.0
	for i, k := range x.KPIs {
		col, row := i%3, i/3
		bx, by := 12+float64(col)*62.5, top+float64(row)*21
		pdf.SetFillColor(244, 246, 250)
		pdf.SetDrawColor(210, 214, 222)
		pdf.Rect(bx, by, 60, 19, "FD")
		pdf.SetXY(bx+2, by+1.5)
		pdf.SetFont("Helvetica", "", 7.5)
		pdf.CellFormat(56, 4, tr(k.Name), "", 2, "L", false, 0, "")
		pdf.SetFont("Helvetica", "B", 13)
		pdf.CellFormat(56, 7, tr(human(float64(k.Value), k.Unit)), "", 2, "L", false, 0, "")
		pdf.SetFont("Helvetica", "", 7.5)
		ch := "no previous period"
		if k.Percent != nil {
			ch = fmt.Sprintf("%+.1f%% vs %s", *k.Percent, human(float64(k.Previous), k.Unit))
			if *k.Percent >= 0 {
				pdf.SetTextColor(20, 120, 60)
			} else {
				pdf.SetTextColor(180, 40, 40)
			}
		}
		pdf.CellFormat(56, 4, tr(ch), "", 2, "L", false, 0, "")
		pdf.SetTextColor(0, 0, 0)
	}

	y := top + 2*21 + 3
	barChart(pdf, tr, 12, y, 186, 48, "Daily "+x.chartName()+", last 30 days", x.Daily)
	y += 54
	lineChart(pdf, tr, 12, y, 186, 50, fmt.Sprintf("%s by day: 12 weeks and a 7-day Holt-Winters forecast (backtest on the last 7 days: MAPE %.1f%%, RMSE %s)",
		x.chartName(), x.Backtest.MAPE, human(x.Backtest.RMSE, "")), x.History, x.Forecast)
	y += 56

	// Top movers.
	pdf.SetXY(12, y)
	pdf.SetFont("Helvetica", "B", 9.5)
	pdf.CellFormat(0, 5, tr("Top movers, week over week ("+x.chartName()+")"), "", 1, "L", false, 0, "")
	pdf.SetFont("Helvetica", "", 8)
	for _, g := range x.Movers {
		pct := "new"
		if g.WeekOverWeek.Percent != nil {
			pct = fmt.Sprintf("%+.1f%%", *g.WeekOverWeek.Percent)
		}
		pdf.SetX(12)
		pdf.CellFormat(60, 4.2, tr(fitText(pdf, x.Name(g.Tenant), 60)), "", 0, "L", false, 0, "")
		pdf.CellFormat(40, 4.2, tr(human(float64(g.WeekOverWeek.Current), g.Unit)), "", 0, "R", false, 0, "")
		pdf.CellFormat(40, 4.2, tr("from "+human(float64(g.WeekOverWeek.Previous), g.Unit)), "", 0, "R", false, 0, "")
		pdf.CellFormat(30, 4.2, pct, "", 1, "R", false, 0, "")
	}
	y = pdf.GetY() + 2

	pdf.SetXY(12, y)
	pdf.SetFont("Helvetica", "B", 9.5)
	head := fmt.Sprintf("Top insights (%d found", x.InsightCount)
	if x.InsightCurrency != "" {
		head += fmt.Sprintf("; priced savings %s %s", fmtMinor(x.InsightSavings), x.InsightCurrency)
	}
	pdf.CellFormat(0, 5, tr(head+")"), "", 1, "L", false, 0, "")
	pdf.SetFont("Helvetica", "", 8)
	for _, in := range x.Insights {
		if pdf.GetY() > 280 {
			break
		}
		saving := fmt.Sprintf("%s %s", human(float64(in.Saving.Units), in.Saving.Unit), in.Saving.Unit)
		if in.Saving.Units == 0 {
			saving = ""
		}
		if in.Saving.Amount != nil {
			saving += fmt.Sprintf("  %s %s", fmtMinor(*in.Saving.Amount), in.Saving.Currency)
		}
		pdf.SetX(12)
		pdf.CellFormat(30, 4.2, tr(fitText(pdf, x.Name(in.Tenant), 30)), "", 0, "L", false, 0, "")
		pdf.CellFormat(116, 4.2, tr(fitText(pdf, in.Title, 116)), "", 0, "L", false, 0, "")
		pdf.CellFormat(40, 4.2, tr(saving), "", 1, "R", false, 0, "")
	}
	for _, n := range x.Notes {
		if pdf.GetY() > 284 {
			break
		}
		pdf.SetX(12)
		pdf.SetFont("Helvetica", "I", 7.5)
		pdf.CellFormat(0, 4, tr(n), "", 1, "L", false, 0, "")
	}
	return pdf.Output(w)
}

// fmtMinor prints minor units as major units with two decimals (the catalogue's currencies).
func fmtMinor(v int64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%02d", sign, v/100, v%100)
}

func frame(pdf *fpdf.Fpdf, tr func(string) string, x, y, w, h float64, title string) (float64, float64, float64, float64) {
	pdf.SetXY(x, y)
	pdf.SetFont("Helvetica", "B", 9)
	pdf.CellFormat(w, 5, tr(fitText(pdf, title, w)), "", 0, "L", false, 0, "")
	pdf.SetDrawColor(200, 200, 200)
	pdf.SetLineWidth(0.2)
	// Plot area: left margin for the axis labels.
	px, py, pw, ph := x+14, y+7, w-16, h-12
	pdf.Line(px, py+ph, px+pw, py+ph)
	pdf.Line(px, py, px, py+ph)
	return px, py, pw, ph
}

func axisMax(vs ...[]stats.Point) float64 {
	m := 0.0
	for _, ps := range vs {
		for _, p := range ps {
			m = max(m, p.Value)
		}
	}
	if m == 0 {
		return 1
	}
	return m * 1.1
}

func yLabels(pdf *fpdf.Fpdf, px, py, pw, ph, top float64) {
	pdf.SetFont("Helvetica", "", 6)
	for i := 0; i <= 2; i++ {
		v := top * float64(i) / 2
		yy := py + ph - ph*float64(i)/2
		pdf.SetXY(px-14, yy-2)
		pdf.CellFormat(13, 4, human(v, ""), "", 0, "R", false, 0, "")
		if i > 0 {
			pdf.SetDrawColor(235, 235, 235)
			pdf.Line(px, yy, px+pw, yy)
		}
	}
}

func barChart(pdf *fpdf.Fpdf, tr func(string) string, x, y, w, h float64, title string, pts []stats.Point) {
	px, py, pw, ph := frame(pdf, tr, x, y, w, h, title)
	if len(pts) == 0 {
		return
	}
	top := axisMax(pts)
	yLabels(pdf, px, py, pw, ph, top)
	bw := pw / float64(len(pts))
	pdf.SetFillColor(66, 110, 180)
	for i, p := range pts {
		bh := ph * p.Value / top
		pdf.Rect(px+float64(i)*bw+bw*0.15, py+ph-bh, bw*0.7, bh, "F")
		if i%5 == 0 {
			pdf.SetFont("Helvetica", "", 5.5)
			pdf.SetXY(px+float64(i)*bw-2, py+ph+0.5)
			pdf.CellFormat(bw+4, 3, p.Time.Format("Jan 2"), "", 0, "C", false, 0, "")
		}
	}
}

func lineChart(pdf *fpdf.Fpdf, tr func(string) string, x, y, w, h float64, title string, hist, fc []stats.Point) {
	px, py, pw, ph := frame(pdf, tr, x, y, w, h, title)
	n := len(hist) + len(fc)
	if n < 2 {
		return
	}
	top := axisMax(hist, fc)
	yLabels(pdf, px, py, pw, ph, top)
	at := func(i int, v float64) (float64, float64) {
		return px + pw*float64(i)/float64(n-1), py + ph - ph*v/top
	}
	pdf.SetLineWidth(0.4)
	pdf.SetDrawColor(66, 110, 180)
	for i := 1; i < len(hist); i++ {
		x0, y0 := at(i-1, hist[i-1].Value)
		x1, y1 := at(i, hist[i].Value)
		pdf.Line(x0, y0, x1, y1)
	}
	pdf.SetDrawColor(220, 120, 30)
	pdf.SetDashPattern([]float64{1.2, 0.8}, 0)
	prev := len(hist) - 1
	for i, p := range fc {
		var x0, y0 float64
		if i == 0 && prev >= 0 {
			x0, y0 = at(prev, hist[prev].Value)
		} else if i > 0 {
			x0, y0 = at(len(hist)+i-1, fc[i-1].Value)
		} else {
			continue
		}
		x1, y1 := at(len(hist)+i, p.Value)
		pdf.Line(x0, y0, x1, y1)
	}
	pdf.SetDashPattern([]float64{}, 0)
	pdf.SetLineWidth(0.2)
	pdf.SetFont("Helvetica", "", 5.5)
	for i := 0; i < len(hist); i += 14 {
		xx, _ := at(i, 0)
		pdf.SetXY(xx-6, py+ph+0.5)
		pdf.CellFormat(12, 3, hist[i].Time.Format("Jan 2"), "", 0, "C", false, 0, "")
	}
	// Legend.
	pdf.SetXY(px+pw-50, py-1)
	pdf.SetTextColor(66, 110, 180)
	pdf.CellFormat(20, 3, "history", "", 0, "R", false, 0, "")
	pdf.SetTextColor(220, 120, 30)
	pdf.CellFormat(25, 3, "forecast", "", 0, "R", false, 0, "")
	pdf.SetTextColor(0, 0, 0)
}

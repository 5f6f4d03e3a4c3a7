// Package render writes an invoice as JSON, CSV or PDF. All three show the same numbers: the
// stored invoice's, formatted in the currency's major units (amounts are never recomputed here).
package render

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/go-pdf/fpdf"

	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Media types of the renders.
const (
	TypeJSON = "application/json"
	TypeCSV  = "text/csv; charset=utf-8"
	TypePDF  = "application/pdf"
)

// JSON writes the invoice document.
func JSON(w io.Writer, inv *invoice.Invoice) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(inv); err != nil {
		return fmt.Errorf("render %s as JSON: %w", inv.ID, err)
	}
	return nil
}

// CSVHeader is the first row of the CSV render.
var CSVHeader = []string{"invoice", "tenant", "period", "line", "kind", "billed_period", "description", "plan",
	"meter", "from", "to", "quantity", "included", "billable", "unit_price", "tiers", "amount", "currency"}

// CSV writes one row per line, then subtotal, credit applied, amount due, paid and remaining
// rows (kind column) so that a spreadsheet can check the sums.
func CSV(w io.Writer, inv *invoice.Invoice) error {
	cw := csv.NewWriter(w)
	cur := inv.Currency
	row := func(line, kind, billed, desc, plan, meter, from, to, qty, incl, billable, unit, tiers string, amt money.Amount) {
		_ = cw.Write([]string{inv.ID, inv.Tenant, inv.Period.String(), line, kind, billed, desc, plan, meter, from, to,
			qty, incl, billable, unit, tiers, amt.Format(cur), cur.Code})
	}
	_ = cw.Write(CSVHeader)
	for i, l := range inv.Lines {
		unit := ""
		if l.UnitPrice != nil {
			unit = l.UnitPrice.Format(cur)
		}
		row(strconv.Itoa(i+1), l.Kind, l.Period.String(), l.Description, l.Plan, l.Meter, l.From.Format(time.RFC3339),
			l.To.Format(time.RFC3339), strconv.FormatInt(l.Quantity, 10), strconv.FormatInt(l.Included, 10),
			strconv.FormatInt(l.Billable, 10), unit, tierText(l, cur), l.Amount)
	}
	for _, t := range totals(inv) {
		row("", t.kind, "", t.label, "", "", "", "", "", "", "", "", "", t.amount)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("render %s as CSV: %w", inv.ID, err)
	}
	return nil
}

type total struct {
	kind, label string
	amount      money.Amount
}

func totals(inv *invoice.Invoice) []total {
	out := []total{{"subtotal", "Subtotal", inv.Subtotal}}
	for _, t := range inv.Taxes { // one row per tax, with its legend (exempt, reverse charge)
		label := fmt.Sprintf("%s %s%% (%s)", t.Name, t.Rate, t.Jurisdiction)
		switch {
		case t.Legend != "":
			label += ": " + t.Legend
		case t.Inclusive:
			label += ", included"
		}
		out = append(out, total{"tax", label, t.Amount})
	}
	if len(inv.Taxes) > 0 {
		out = append(out, total{"total", "Total", inv.Gross()})
	}
	if inv.GrantsApplied != 0 { // a row only for invoices that drew on credit grants
		out = append(out, total{"grants_applied", "Credit grants applied", -inv.GrantsApplied})
	}
	return append(out, []total{
		{"credit_applied", "Prepaid credit applied", -inv.CreditApplied},
		{"amount_due", "Amount due", inv.AmountDue},
		{"amount_paid", "Paid", -inv.AmountPaid},
		{"amount_credited", "Credit notes", -inv.AmountCredited},
		{"amount_remaining", "Remaining to pay", inv.AmountRemaining},
	}...)
}

func tierText(l rating.Line, cur money.Currency) string {
	var parts []string
	for _, t := range l.Tiers {
		upTo := "inf"
		if t.UpTo >= 0 {
			upTo = strconv.FormatInt(t.UpTo, 10)
		}
		s := fmt.Sprintf("tier %d (%d-%s): %d x %s", t.Tier, t.From, upTo, t.Quantity, t.UnitPrice.Format(cur))
		if t.FlatFee != 0 {
			s += " + " + t.FlatFee.Format(cur)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// PDF writes the invoice as PDFWith does, naming meters by the built-in meters' display names.
func PDF(w io.Writer, inv *invoice.Invoice) error { return PDFWith(w, inv, Options{}) }

// PDFWith writes a one-document A4 invoice for the customer: seller, buyer, number and period,
// the lines (meters by their display names, quantities with their units and thousands
// separators, tier breakdowns), totals and status. A plan suggestion is printed only when it is
// an upgrade: the invoice never advertises a cheaper plan to a paying customer. Core fonts only,
// so the output needs no font files.
func PDFWith(w io.Writer, inv *invoice.Invoice, o Options) error {
	names := o.Meters
	if names == nil {
		names = MeterNames(meter.Defaults())
	}
	cur := inv.Currency
	pdf := fpdf.New("P", "mm", "A4", "")
	tr := pdf.UnicodeTranslatorFromDescriptor("") // UTF-8 → cp1252 for the core fonts
	title := "Invoice " + inv.ID
	if inv.Number == "" {
		title = "DRAFT invoice " + inv.ID
	}
	pdf.SetTitle(title, true)
	pdf.SetAuthor(inv.Seller.Name, true)
	pdf.SetCreationDate(inv.CreatedAt)
	pdf.SetModificationDate(inv.CreatedAt)
	pdf.SetMargins(15, 15, 15)
	pdf.AddPage()

	pdf.SetFont("Helvetica", "B", 16)
	pdf.CellFormat(0, 9, tr(title), "", 1, "L", false, 0, "")
	pdf.SetFont("Helvetica", "", 9)
	meta := []string{
		"Status: " + string(inv.Status),
		"Period: " + inv.Period.String() + " (" + inv.PeriodStart.Format("2006-01-02") + " to " + inv.PeriodEnd.Add(-time.Second).Format("2006-01-02") + ")",
	}
	if inv.FinalizedAt != nil {
		meta = append(meta, "Issued: "+inv.FinalizedAt.Format("2006-01-02"))
	}
	if inv.DueAt != nil {
		meta = append(meta, "Due: "+inv.DueAt.Format("2006-01-02"))
	}
	for _, sg := range inv.Segments {
		meta = append(meta, "Plan: "+sg.Plan+", "+dayRange(sg.From, sg.To))
	}
	for _, m := range meta {
		pdf.CellFormat(0, 5, tr(m), "", 1, "L", false, 0, "")
	}
	pdf.Ln(3)

	// Seller and buyer side by side.
	y := pdf.GetY()
	party := func(x float64, heading string, name string, lines ...string) {
		pdf.SetXY(x, y)
		pdf.SetFont("Helvetica", "B", 10)
		pdf.CellFormat(85, 5, tr(heading), "", 2, "L", false, 0, "")
		pdf.SetFont("Helvetica", "", 9)
		pdf.CellFormat(85, 5, tr(name), "", 2, "L", false, 0, "")
		for _, l := range lines {
			if l != "" {
				pdf.CellFormat(85, 5, tr(l), "", 2, "L", false, 0, "")
			}
		}
	}
	sellerLines := append(append([]string{}, inv.Seller.Address...), taxID(inv.Seller.TaxID), inv.Seller.Email)
	buyerLines := append(append([]string{}, inv.Buyer.Address...), taxID(inv.Buyer.TaxID), inv.Buyer.Email, "Tenant: "+inv.Tenant)
	party(15, "From", inv.Seller.Name, sellerLines...)
	yAfterSeller := pdf.GetY()
	party(110, "Bill to", inv.Buyer.Name, buyerLines...)
	pdf.SetXY(15, max(yAfterSeller, pdf.GetY())+4)

	// Lines.
	cols := []struct {
		w     float64
		head  string
		align string
	}{{80, "Description", "L"}, {18, "Period", "L"}, {47, "Quantity", "R"}, {35, "Amount (" + cur.Code + ")", "R"}}
	pdf.SetFont("Helvetica", "B", 9)
	pdf.SetFillColor(230, 230, 230)
	for _, c := range cols {
		pdf.CellFormat(c.w, 6, tr(c.head), "B", 0, c.align, true, 0, "")
	}
	pdf.Ln(-1)
	pdf.SetFont("Helvetica", "", 8.5)
	for _, l := range inv.Lines {
		desc := l.Description
		unit := ""
		if l.Meter != "" {
			display, u := names(l.Meter)
			unit = u
			if desc == l.Meter { // no description in the price catalogue: the meter's display name
				desc = display
			}
		}
		if l.Proration != "" {
			desc += " (prorated " + l.Proration + ")"
		}
		pdf.CellFormat(cols[0].w, 5, tr(fit(pdf, desc, cols[0].w)), "", 0, "L", false, 0, "")
		pdf.CellFormat(cols[1].w, 5, l.Period.String(), "", 0, "L", false, 0, "")
		pdf.CellFormat(cols[2].w, 5, tr(quantity(l.Quantity, unit)), "", 0, "R", false, 0, "")
		pdf.CellFormat(cols[3].w, 5, grouped(l.Amount.Format(cur)), "", 1, "R", false, 0, "")
		detail := ""
		counts := fmt.Sprintf("%s billable (%s included)", quantity(l.Billable, unit), Thousands(l.Included))
		switch {
		case l.UnitPrice != nil:
			detail = counts + " x " + l.UnitPrice.Format(cur) + " " + cur.Code
		case len(l.Tiers) > 0:
			detail = counts + ": " + tierWords(l, cur)
		case l.Kind == rating.KindUsage && l.Included > 0:
			detail = counts
		}
		if detail != "" {
			pdf.SetFont("Helvetica", "I", 7.5)
			pdf.SetX(19)
			pdf.MultiCell(cols[0].w+cols[1].w+cols[2].w-4, 4, tr(detail), "", "L", false)
			pdf.SetFont("Helvetica", "", 8.5)
		}
	}
	pdf.Ln(2)
	pdf.SetFont("Helvetica", "", 9)
	for i, t := range totals(inv) {
		style := ""
		if t.kind == "amount_due" || t.kind == "amount_remaining" {
			style = "B"
		}
		pdf.SetFont("Helvetica", style, 9)
		border := ""
		if i == 0 {
			border = "T"
		}
		pdf.CellFormat(cols[0].w+cols[1].w+cols[2].w, 6, tr(t.label), border, 0, "R", false, 0, "")
		pdf.CellFormat(cols[3].w, 6, grouped(t.amount.Format(cur))+" "+cur.Code, border, 1, "R", false, 0, "")
	}
	if s := inv.Suggestion; s != nil && s.Upgrade {
		pdf.Ln(4)
		pdf.SetFont("Helvetica", "I", 8.5)
		pdf.MultiCell(0, 4.5, tr(fmt.Sprintf("Your usage in %s would have cost %s %s on the %s plan instead of %s %s on %s.",
			s.Period, grouped(s.Cost.Format(cur)), cur.Code, s.Plan, grouped(s.CurrentCost.Format(cur)), cur.Code, s.CurrentPlan)), "", "L", false)
	}
	if err := pdf.Output(w); err != nil {
		return fmt.Errorf("render %s as PDF: %w", inv.ID, err)
	}
	return nil
}

func taxID(id string) string {
	if id == "" {
		return ""
	}
	return "Tax ID: " + id
}

// fit shortens s with an ellipsis so it fits width w in the current font.
func fit(pdf *fpdf.Fpdf, s string, w float64) string {
	if pdf.GetStringWidth(s) <= w-1 {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && pdf.GetStringWidth(string(r)+"...") > w-1 {
		r = r[:len(r)-1]
	}
	return string(r) + "..."
}

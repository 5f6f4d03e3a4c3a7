package render

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/usagemeter/usagemeter/billing/money"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Options of the customer-facing render.
type Options struct {
	// Meters gives a meter's display name and unit (MeterNames); nil: the built-in meters'.
	Meters func(name string) (display, unit string)
}

// MeterNames names meters for customers: the first clause of a meter's description ("AI tokens,
// input and output." → "AI tokens") and its unit; a meter without a description by its name
// in words (api_calls → "Api calls").
func MeterNames(defs []meter.Def) func(string) (string, string) {
	byName := map[string]meter.Def{}
	for _, d := range defs {
		byName[d.Name] = d
	}
	return func(name string) (string, string) {
		d, ok := byName[name]
		display := strings.TrimSpace(strings.FieldsFunc(d.Description+".", func(r rune) bool { return r == ',' || r == ':' || r == '.' || r == ';' })[0])
		if !ok || display == "" {
			display = strings.ReplaceAll(name, "_", " ")
			r := []rune(display)
			r[0] = unicode.ToUpper(r[0])
			display = string(r)
		}
		return display, d.Unit
	}
}

// Thousands writes n with comma thousands separators: 1091192768 → "1,091,192,768".
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
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

// grouped adds thousands separators to the integer part of a formatted amount ("1484.00").
func grouped(amount string) string {
	intPart, frac, hasFrac := strings.Cut(amount, ".")
	n, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil {
		return amount
	}
	out := Thousands(n)
	if n == 0 && strings.HasPrefix(intPart, "-") {
		out = "-0"
	}
	if hasFrac {
		out += "." + frac
	}
	return out
}

// quantity is a count with its unit: "1,091,192,768 bytes".
func quantity(n int64, unit string) string {
	if unit == "" {
		return Thousands(n)
	}
	return Thousands(n) + " " + unit
}

// tierWords is tierText for people: "tier 1 (1 to 50,000,000): 50,000,000 x 0.000015 USD; ...".
func tierWords(l rating.Line, cur money.Currency) string {
	var parts []string
	for _, t := range l.Tiers {
		span := Thousands(t.From) + " and above"
		if t.UpTo >= 0 {
			span = Thousands(t.From) + " to " + Thousands(t.UpTo)
		}
		s := fmt.Sprintf("tier %d (%s): %s x %s", t.Tier, span, Thousands(t.Quantity), t.UnitPrice.Format(cur))
		if t.FlatFee != 0 {
			s += " + " + grouped(t.FlatFee.Format(cur))
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// dayRange is [from, to) as inclusive dates: "2026-10-01 to 2026-10-31".
func dayRange(from, to time.Time) string {
	return from.Format(time.DateOnly) + " to " + to.Add(-time.Nanosecond).Format(time.DateOnly)
}

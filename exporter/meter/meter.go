// Package meter declares what is metered: which events feed a meter, how their values aggregate,
// which dimensions are kept, and which Prometheus metric (if any) exposes the meter's totals.
package meter

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/usagemeter/usagemeter/exporter/event"
)

// Aggregation says how the values of a meter's events combine.
type Aggregation string

// The aggregations of the contract.
const (
	Sum         Aggregation = "sum"
	Count       Aggregation = "count"
	Max         Aggregation = "max"
	Latest      Aggregation = "latest"
	UniqueCount Aggregation = "unique_count"
)

// Kind says whether a meter is used per period (flow: tokens per month) or is a level (stock:
// documents held, bytes stored). Quotas and /v1/usage treat the two differently.
type Kind string

// Meter kinds.
const (
	Flow  Kind = "flow"
	Stock Kind = "stock"
)

// Binding feeds one event type into a meter. One event can feed a meter through several bindings
// (ai.tokens feeds ai_tokens twice: input and output tokens, told apart by a constant dimension).
type Binding struct {
	Type string `yaml:"type"`
	// Value names the data field holding the quantity (sum, max, latest) or the identity
	// (unique_count). Empty for count.
	Value string `yaml:"value,omitempty"`
	// Sign is +1 (default) or -1: document.deleted subtracts from the documents held.
	Sign int `yaml:"sign,omitempty"`
	// Set adds constant dimensions, e.g. {direction: input}.
	Set map[string]string `yaml:"set,omitempty"`
}

// Metric describes the Prometheus metric built from a meter's totals.
type Metric struct {
	Name string `yaml:"name"`
	// Type is counter or gauge.
	Type string `yaml:"type"`
	Help string `yaml:"help,omitempty"`
	// Labels are meter dimensions kept as labels (tenant is always added first). Dimensions not
	// listed are summed over, which keeps per-user detail out of Prometheus.
	Labels []string `yaml:"labels,omitempty"`
	// Windows, for unique_count meters, are the trailing windows exposed as the window label.
	Windows []string `yaml:"windows,omitempty"`
}

// Def is a meter definition.
type Def struct {
	Name        string      `yaml:"name"`
	Description string      `yaml:"description,omitempty"`
	Unit        string      `yaml:"unit,omitempty"`
	Kind        Kind        `yaml:"kind"`
	Aggregation Aggregation `yaml:"aggregation"`
	Events      []Binding   `yaml:"events"`
	Dimensions  []string    `yaml:"dimensions,omitempty"`
	Metric      *Metric     `yaml:"metric,omitempty"`
}

// MaxDimensions bounds the dimensions a meter keeps: with names of at most 63 bytes and values of
// at most event.MaxLabelBytes, every ledger key of a meter stays within a few KiB (the write path
// relies on keys shorter than 64 KiB).
const MaxDimensions = 32

var (
	nameRE   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	metricRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	windowRE = regexp.MustCompile(`^[1-9][0-9]*[hd]$`)
)

// FieldError is a validation failure of one field of a definition. Field is relative to the
// meter (e.g. "events[1].value"); the config loader adds the meter's position in the file.
type FieldError struct {
	Field, Msg string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate checks a definition on its own.
func (d *Def) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if !nameRE.MatchString(d.Name) {
		return bad("name", "%q must match %s", d.Name, nameRE)
	}
	switch d.Kind {
	case Flow, Stock:
	default:
		return bad("kind", "%q must be flow or stock", d.Kind)
	}
	switch d.Aggregation {
	case Sum, Count, Max, Latest, UniqueCount:
	default:
		return bad("aggregation", "%q must be one of sum, count, max, latest, unique_count", d.Aggregation)
	}
	if len(d.Events) == 0 {
		return bad("events", "a meter needs at least one event binding")
	}
	if len(d.Dimensions) > MaxDimensions {
		return bad("dimensions", "%d dimensions; at most %d are kept per meter", len(d.Dimensions), MaxDimensions)
	}
	for i, dim := range d.Dimensions {
		if !nameRE.MatchString(dim) || dim == "tenant" {
			return bad(fmt.Sprintf("dimensions[%d]", i), "%q is not a valid dimension (lower case, not tenant)", dim)
		}
		if slices.Index(d.Dimensions, dim) != i {
			return bad(fmt.Sprintf("dimensions[%d]", i), "%q is listed twice", dim)
		}
	}
	for i, b := range d.Events {
		f := fmt.Sprintf("events[%d]", i)
		if b.Type == "" {
			return bad(f+".type", "missing")
		}
		if d.Aggregation == Count && b.Value != "" {
			return bad(f+".value", "count meters take no value field")
		}
		if d.Aggregation != Count && b.Value == "" {
			return bad(f+".value", "%s meters need a value field", d.Aggregation)
		}
		if b.Sign != 0 && b.Sign != 1 && b.Sign != -1 {
			return bad(f+".sign", "must be 1 or -1")
		}
		if b.Sign == -1 && d.Aggregation != Sum && d.Aggregation != Count {
			return bad(f+".sign", "only sum and count meters can subtract")
		}
		for k, v := range b.Set {
			if !slices.Contains(d.Dimensions, k) {
				return bad(f+".set."+k, "sets %q, which is not one of the meter's dimensions", k)
			}
			if msg := event.CheckLabel(v); msg != "" {
				return bad(f+".set."+k, "%q %s", v, msg)
			}
		}
	}
	if m := d.Metric; m != nil {
		if !metricRE.MatchString(m.Name) {
			return bad("metric.name", "%q is not a valid metric name", m.Name)
		}
		if m.Type != "counter" && m.Type != "gauge" {
			return bad("metric.type", "%q must be counter or gauge", m.Type)
		}
		if m.Type == "counter" && (d.Kind == Stock || d.Aggregation == Latest || d.Aggregation == Max) {
			return bad("metric.type", "a %s %s meter cannot be a counter: it can go down", d.Kind, d.Aggregation)
		}
		for i, l := range m.Labels {
			if !slices.Contains(d.Dimensions, l) {
				return bad(fmt.Sprintf("metric.labels[%d]", i), "%q is not one of the meter's dimensions", l)
			}
		}
		if d.Aggregation == UniqueCount {
			if len(m.Windows) == 0 {
				return bad("metric.windows", "unique_count metrics need trailing windows, e.g. [1d, 7d, 30d]")
			}
			if len(m.Labels) > 0 {
				return bad("metric.labels", "unique_count metrics are per tenant and window only")
			}
		}
		for i, w := range m.Windows {
			if !windowRE.MatchString(w) {
				return bad(fmt.Sprintf("metric.windows[%d]", i), "%q must look like 1d or 12h", w)
			}
		}
	}
	return nil
}

// Uses reports whether any binding of d consumes events of type t.
func (d *Def) Uses(t string) bool {
	for _, b := range d.Events {
		if b.Type == t {
			return true
		}
	}
	return false
}

// ValidName reports whether s is a valid meter, dimension or plan name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// CustomEventTypes returns the event types the meters consume beyond the contract's: the
// decoder accepts them with any string and non-negative integer data fields.
func CustomEventTypes(defs []Def) map[string]bool {
	out := map[string]bool{}
	for _, d := range defs {
		for _, b := range d.Events {
			if _, ok := event.Schemas[b.Type]; !ok {
				out[b.Type] = true
			}
		}
	}
	return out
}

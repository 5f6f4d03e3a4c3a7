package simulate

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/valyala/fastjson"

	"github.com/usagemeter/usagemeter/exporter/meter"
)

// Totals is an independent reference aggregation of acknowledged events: per tenant and meter,
// the all-time value (flow: sum or count; stock: level; latest: latest reading per series,
// summed; unique_count: distinct identities). It shares only the meter definitions with the
// exporter, not its code, so tests can hold the ledger to it.
type Totals struct {
	defs   []meter.Def
	values map[string]map[string]int64 // tenant → meter → value
	latest map[string]latestReading    // tenant\0meter\0series → reading
	unique map[string]map[string]struct{}
	seen   map[string]struct{}
	parser fastjson.Parser
}

type latestReading struct {
	at    time.Time
	value int64
}

// NewTotals aggregates with the given meter definitions.
func NewTotals(defs []meter.Def) *Totals {
	return &Totals{defs: defs, values: map[string]map[string]int64{}, latest: map[string]latestReading{},
		unique: map[string]map[string]struct{}{}, seen: map[string]struct{}{}}
}

// Add folds one acknowledged event (JSON) in; an event whose source and id were added before is
// ignored, as the ledger ignores it.
func (t *Totals) Add(raw []byte) error {
	v, err := t.parser.ParseBytes(raw)
	if err != nil {
		return err
	}
	key := string(v.GetStringBytes("source")) + "\x00" + string(v.GetStringBytes("id"))
	if _, dup := t.seen[key]; dup {
		return nil
	}
	t.seen[key] = struct{}{}
	typ := string(v.GetStringBytes("type"))
	at, err := time.Parse(time.RFC3339Nano, string(v.GetStringBytes("time")))
	if err != nil {
		return fmt.Errorf("event time: %w", err)
	}
	data := v.Get("data")
	tenant := string(data.GetStringBytes("tenant"))
	if t.values[tenant] == nil {
		t.values[tenant] = map[string]int64{}
	}
	for _, d := range t.defs {
		for _, b := range d.Events {
			if b.Type != typ {
				continue
			}
			sign := int64(1)
			if b.Sign == -1 {
				sign = -1
			}
			switch d.Aggregation {
			case meter.Count:
				t.values[tenant][d.Name] += sign
			case meter.Sum:
				if x := data.Get(b.Value); x != nil {
					t.values[tenant][d.Name] += sign * x.GetInt64()
				}
			case meter.UniqueCount:
				if x := data.Get(b.Value); x != nil {
					k := tenant + "\x00" + d.Name
					if t.unique[k] == nil {
						t.unique[k] = map[string]struct{}{}
					}
					t.unique[k][string(x.GetStringBytes())] = struct{}{}
					t.values[tenant][d.Name] = int64(len(t.unique[k]))
				}
			case meter.Latest, meter.Max:
				series := tenant + "\x00" + d.Name
				for _, dim := range d.Dimensions {
					series += "\x00" + string(data.GetStringBytes(dim))
				}
				val := data.GetInt64(b.Value)
				old, ok := t.latest[series]
				replace := !ok || (d.Aggregation == meter.Latest && !at.Before(old.at)) || (d.Aggregation == meter.Max && val > old.value)
				if replace {
					t.values[tenant][d.Name] += val - old.value
					t.latest[series] = latestReading{at: at, value: val}
				}
			}
		}
	}
	return nil
}

// Value is a tenant's all-time value of a meter.
func (t *Totals) Value(tenant, meterName string) int64 { return t.values[tenant][meterName] }

// Tenants lists the tenants seen.
func (t *Totals) Tenants() []string {
	out := make([]string, 0, len(t.values))
	for k := range t.values {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Events is the number of distinct events added.
func (t *Totals) Events() int { return len(t.seen) }

// MarshalJSON prints {"tenant": {"meter": value}}.
func (t *Totals) MarshalJSON() ([]byte, error) { return json.Marshal(t.values) }

package api

import "github.com/usagemeter/usagemeter/exporter/meter"

// Meter is a meter definition as GET /v1/meters answers it: the names of the config file
// (snake_case), not Go's. meter.Def itself stays free of JSON tags: its JSON form is the
// ledger's meter signature, and changing it would rebuild every store.
type Meter struct {
	Name        string       `json:"name"`
	Description string       `json:"description,omitempty"`
	Unit        string       `json:"unit,omitempty"`
	Kind        string       `json:"kind"`
	Aggregation string       `json:"aggregation"`
	Events      []MeterEvent `json:"events"`
	Dimensions  []string     `json:"dimensions,omitempty"`
	Metric      *MeterMetric `json:"metric,omitempty"`
}

// MeterEvent is a meter's binding to an event type.
type MeterEvent struct {
	Type  string            `json:"type"`
	Value string            `json:"value,omitempty"`
	Sign  int               `json:"sign,omitempty"`
	Set   map[string]string `json:"set,omitempty"`
}

// MeterMetric is the Prometheus metric built from a meter.
type MeterMetric struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Help    string   `json:"help,omitempty"`
	Labels  []string `json:"labels,omitempty"`
	Windows []string `json:"windows,omitempty"`
}

func meterOf(d meter.Def) Meter {
	m := Meter{Name: d.Name, Description: d.Description, Unit: d.Unit, Kind: string(d.Kind),
		Aggregation: string(d.Aggregation), Events: make([]MeterEvent, len(d.Events)), Dimensions: d.Dimensions}
	for i, b := range d.Events {
		m.Events[i] = MeterEvent(b)
	}
	if d.Metric != nil {
		mm := MeterMetric(*d.Metric)
		m.Metric = &mm
	}
	return m
}

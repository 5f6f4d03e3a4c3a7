// Package event decodes and validates usage events: CloudEvents 1.0 in JSON, as one event, a
// JSON array or NDJSON. It is on the hot path of every ingested event: flat events are decoded in
// one pass over their bytes (fast.go), anything else with fastjson (no reflection), which also
// explains every error.
package event

import (
	"time"
)

// Field is a string attribute of an event's data (user, doc_type, model, ...).
type Field struct{ Name, Value string }

// Quantity is a non-negative integer of an event's data (bytes, input_tokens, ...).
type Quantity struct {
	Name  string
	Value int64
}

// Event is a decoded, validated usage event.
type Event struct {
	ID, Source, Type string
	Time             time.Time
	Tenant           string
	Fields           []Field
	Quantities       []Quantity
	// Raw is the event's stored form (stored.go: compact binary, or the JSON as received when it
	// has attributes beyond the contract's), kept in the ledger for audit and recomputation.
	Raw []byte
}

// Field returns the data field called name.
func (e *Event) Field(name string) (string, bool) {
	if name == "tenant" {
		return e.Tenant, true
	}
	for _, f := range e.Fields {
		if f.Name == name {
			return f.Value, true
		}
	}
	return "", false
}

// Quantity returns the quantity called name.
func (e *Event) Quantity(name string) (int64, bool) {
	for _, q := range e.Quantities {
		if q.Name == name {
			return q.Value, true
		}
	}
	return 0, false
}

// Schema lists the data fields of an event type.
type Schema struct {
	Fields, OptionalFields         []string
	Quantities, OptionalQuantities []string
}

// Schemas are the event types of the contract. tenant is required on every type and is not listed.
var Schemas = map[string]Schema{
	"document.created": {Fields: []string{"user", "document_id", "doc_type"}, Quantities: []string{"bytes"}, OptionalFields: []string{"content_hash"}},
	"document.deleted": {Fields: []string{"user", "document_id", "doc_type"}, Quantities: []string{"bytes"}, OptionalFields: []string{"content_hash"}},
	"storage.measured": {Fields: []string{"storage_class"}, Quantities: []string{"bytes"}},
	"ai.tokens":        {Fields: []string{"user", "feature", "model"}, Quantities: []string{"input_tokens", "output_tokens"}},
	"ingest.completed": {Fields: []string{"source"}, Quantities: []string{"bytes", "records"}, OptionalFields: []string{"user", "content_hash"}, OptionalQuantities: []string{"duration_ms"}},
	"user.login":       {Fields: []string{"user"}, OptionalQuantities: []string{"session_seconds"}},
	"feature.used":     {Fields: []string{"user", "feature"}},
}

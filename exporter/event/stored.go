package event

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valyala/fastjson"
)

// The stored form. The ledger keeps every accepted event for audit and recomputation. An event
// made only of the attributes the contract defines (CloudEvents' specversion, id, source, type,
// time and datacontenttype, and the data fields of its type) is kept in a compact binary form
// that holds all of them exactly: about 30 % of its JSON (67 vs 226 bytes per event of the
// simulator's mix), and the raw event is most of what the write path copies, logs and compacts.
// An event with anything else (an extension attribute, an unknown data
// field, a null) is kept as the JSON it arrived as. DecodeStored reads both, and StoredJSON turns
// either back into JSON for people.
//
// Binary form, version 1:
//
//	0x01
//	type        name
//	id, source, tenant  uvarint length + bytes each
//	flags       byte: 1 = the event had a time attribute, 2 = it had datacontenttype
//	fields      uvarint count, then name + uvarint length + bytes each
//	quantities  uvarint count, then name + uvarint value each
//
// A name is a byte: its position in storedNames (or storedTypes), or 0 followed by uvarint length
// + bytes for a name outside the table (custom event types and their fields). The event time is
// not in the form: the ledger keys events by it.
const storedV1 = 0x01

// storedTypes and storedNames number the contract's type and data field names in the binary form.
// Append only: stored events refer to names by position.
var (
	storedTypes = []string{"", "document.created", "document.deleted", "storage.measured", "ai.tokens",
		"ingest.completed", "user.login", "feature.used"}
	storedNames = []string{"", "user", "document_id", "doc_type", "content_hash", "bytes",
		"storage_class", "feature", "model", "input_tokens", "output_tokens", "source", "records",
		"duration_ms", "session_seconds"}
	storedTypeIdx = indexOf(storedTypes)
	storedNameIdx = indexOf(storedNames)
)

func indexOf(names []string) map[string]byte {
	m := make(map[string]byte, len(names))
	for i, n := range names[1:] {
		m[n] = byte(i + 1)
	}
	return m
}

const (
	storedHadTime        = 1
	storedHadContentType = 2
)

// appendStored appends the binary stored form of ev to b.
func appendStored(b []byte, ev *Event, flags byte) []byte {
	b = append(b, storedV1)
	b = appendName(b, ev.Type, storedTypeIdx)
	b = appendString(b, ev.ID)
	b = appendString(b, ev.Source)
	b = appendString(b, ev.Tenant)
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(ev.Fields)))
	for _, f := range ev.Fields {
		b = appendName(b, f.Name, storedNameIdx)
		b = appendString(b, f.Value)
	}
	b = binary.AppendUvarint(b, uint64(len(ev.Quantities)))
	for _, q := range ev.Quantities {
		b = appendName(b, q.Name, storedNameIdx)
		b = binary.AppendUvarint(b, uint64(q.Value))
	}
	return b
}

// storedSize bounds the length of ev's binary form.
func storedSize(ev *Event) int {
	n := 1 + 1 + len(ev.Type) + 3*binary.MaxVarintLen16 + len(ev.ID) + len(ev.Source) + len(ev.Tenant) + 1 + 2*binary.MaxVarintLen16
	for _, f := range ev.Fields {
		n += 1 + binary.MaxVarintLen16 + len(f.Name) + binary.MaxVarintLen32 + len(f.Value)
	}
	for _, q := range ev.Quantities {
		n += 1 + binary.MaxVarintLen16 + len(q.Name) + binary.MaxVarintLen64
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendName(b []byte, name string, idx map[string]byte) []byte {
	if i, ok := idx[name]; ok {
		return append(b, i)
	}
	return appendString(append(b, 0), name)
}

var errStoredShort = errors.New("stored event is truncated")

// storedReader reads the binary form; the first error sticks.
type storedReader struct {
	b   []byte
	err error
}

func (r *storedReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errStoredShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *storedReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errStoredShort
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

func (r *storedReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errStoredShort
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *storedReader) name(table []string) string {
	i := r.byte()
	if r.err != nil {
		return ""
	}
	if i == 0 {
		return string(r.bytes())
	}
	if int(i) >= len(table) {
		r.err = fmt.Errorf("stored event names entry %d, beyond the %d known", i, len(table)-1)
		return ""
	}
	return table[i]
}

// decodeStoredBinary decodes the binary form. It returns the flags too.
func decodeStoredBinary(raw []byte, t time.Time) (Event, byte, error) {
	r := storedReader{b: raw[1:]}
	ev := Event{Time: t}
	ev.Type = r.name(storedTypes)
	ev.ID = string(r.bytes())
	ev.Source = string(r.bytes())
	ev.Tenant = string(r.bytes())
	flags := r.byte()
	if n := r.uvarint(); r.err == nil && n > 0 {
		if n > uint64(len(r.b)) {
			return Event{}, 0, errStoredShort
		}
		ev.Fields = make([]Field, n)
		for i := range ev.Fields {
			ev.Fields[i].Name = r.name(storedNames)
			ev.Fields[i].Value = string(r.bytes())
		}
	}
	if n := r.uvarint(); r.err == nil && n > 0 {
		if n > uint64(len(r.b)) {
			return Event{}, 0, errStoredShort
		}
		ev.Quantities = make([]Quantity, n)
		for i := range ev.Quantities {
			ev.Quantities[i].Name = r.name(storedNames)
			v := r.uvarint()
			if v > 1<<63-1 {
				r.err = fmt.Errorf("stored quantity %s is out of range", ev.Quantities[i].Name)
			}
			ev.Quantities[i].Value = int64(v)
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("stored event has %d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return Event{}, 0, fmt.Errorf("decoding stored event: %w", r.err)
	}
	return ev, flags, nil
}

// StoredJSON returns a stored event as JSON, for people: the JSON it arrived as, or for the
// binary form the same attributes in the contract's order (t is the time it is stored under).
func StoredJSON(raw []byte, t time.Time) ([]byte, error) {
	if len(raw) == 0 || raw[0] != storedV1 {
		return raw, nil
	}
	ev, flags, err := decodeStoredBinary(raw, t)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 2*len(raw)+64)
	b = append(b, `{"specversion":"1.0","id":`...)
	b = appendJSONString(b, ev.ID)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, ev.Source)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, ev.Type)
	if flags&storedHadContentType != 0 {
		b = append(b, `,"datacontenttype":"application/json"`...)
	}
	if flags&storedHadTime != 0 {
		b = append(b, `,"time":"`...)
		b = t.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	b = append(b, `,"data":{"tenant":`...)
	b = appendJSONString(b, ev.Tenant)
	for _, f := range ev.Fields {
		b = append(b, ',')
		b = appendJSONString(b, f.Name)
		b = append(b, ':')
		b = appendJSONString(b, f.Value)
	}
	for _, q := range ev.Quantities {
		b = append(b, ',')
		b = appendJSONString(b, q.Name)
		b = append(b, ':')
		b = strconv.AppendInt(b, q.Value, 10)
	}
	return append(b, "}}"...), nil
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

// StoredIdentity returns the source and id of a stored event (either form), which its dedupe key
// is made of, without decoding the rest.
func StoredIdentity(raw []byte) (source, id string, err error) {
	if len(raw) > 0 && raw[0] == storedV1 {
		r := storedReader{b: raw[1:]}
		r.name(storedTypes)
		id = string(r.bytes())
		source = string(r.bytes())
		if r.err != nil {
			return "", "", fmt.Errorf("decoding stored event: %w", r.err)
		}
		return source, id, nil
	}
	var p fastjson.Parser
	v, err := p.ParseBytes(raw)
	if err != nil {
		return "", "", fmt.Errorf("stored event is not JSON: %w", err)
	}
	return string(v.GetStringBytes("source")), string(v.GetStringBytes("id")), nil
}

// StoredType returns the type of an event in the binary stored form without decoding it; ok is
// false for the JSON form (or a damaged event), which must be decoded to know.
func StoredType(raw []byte) (typ string, ok bool) {
	if len(raw) < 2 || raw[0] != storedV1 {
		return "", false
	}
	if i := int(raw[1]); i != 0 && i < len(storedTypes) {
		return storedTypes[i], true
	}
	r := storedReader{b: raw[1:]}
	typ = r.name(storedTypes)
	return typ, r.err == nil
}

package event

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/usagemeter/usagemeter/exporter/api/problem"
)

// Rejection reasons, also the reason label of usage_exporter_events_rejected_total.
const (
	ReasonMalformed   = "malformed"
	ReasonInvalid     = "invalid"
	ReasonTooOld      = "too_old"
	ReasonTooNew      = "too_new"
	ReasonBatchTooBig = "batch_too_large"
	ReasonMediaType   = "unsupported_media_type"
)

// Limits of what the decoder accepts.
const (
	// LateWindow is how old an event may be: the contract's 35 days.
	LateWindow = 35 * 24 * time.Hour
	// FutureSkew is how far ahead of the receiver's clock an event may be.
	FutureSkew = 5 * time.Minute
	maxIDLen   = 256
	maxStrLen  = MaxLabelBytes
	// MaxLabelBytes bounds a dimension value (CheckLabel).
	MaxLabelBytes = 256
)

// ErrUnsupportedMediaType is returned for a content type the decoder does not take.
var ErrUnsupportedMediaType = errors.New("unsupported media type")

// Error reports why a request's events were refused. Either Detail describes a request-level
// failure (malformed JSON, too many events) or Errors lists every bad event.
type Error struct {
	Reason string
	Detail string
	Errors []problem.FieldError
	// Reasons counts the bad events per reason, for metrics.
	Reasons map[string]int
}

func (e *Error) Error() string {
	if len(e.Errors) > 0 {
		f := e.Errors[0]
		return fmt.Sprintf("%d invalid event field(s); first: event %d, %s: %s", len(e.Errors), f.Index, f.Field, f.Detail)
	}
	return e.Detail
}

// Decoder decodes request bodies into events.
type Decoder struct {
	// MaxEvents bounds the events of one request.
	MaxEvents int
	// Custom lists event types outside the contract that configured meters consume: they are
	// accepted with any string and non-negative integer data fields.
	Custom map[string]bool
	// Now is the receiver's clock; time.Now when nil.
	Now func() time.Time

	pool fastjson.ParserPool
}

// Decode decodes body according to its content type. All events are valid, or none is returned.
func (d *Decoder) Decode(contentType string, body []byte) ([]Event, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if contentType == "" {
		mt, err = "application/json", nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrUnsupportedMediaType, contentType, err)
	}
	now := time.Now()
	if d.Now != nil {
		now = d.Now()
	}
	var values []*fastjson.Value
	switch mt {
	case "application/x-ndjson", "application/jsonl", "application/json-seq":
		return d.decodeLines(body, now)
	case "application/json", "application/cloudevents+json", "application/cloudevents-batch+json":
		if mt != "application/cloudevents+json" {
			if evs, ok := d.fastArray(body, now); ok {
				return evs, nil
			}
		}
		if mt != "application/cloudevents-batch+json" {
			if evs, ok := d.fastObject(body, now); ok {
				return evs, nil
			}
		}
		p := d.pool.Get()
		defer d.pool.Put(p)
		v, err := p.ParseBytes(body)
		if err != nil {
			return nil, &Error{Reason: ReasonMalformed, Detail: "the body is not valid JSON: " + err.Error()}
		}
		switch v.Type() {
		case fastjson.TypeArray:
			if mt == "application/cloudevents+json" {
				return nil, &Error{Reason: ReasonMalformed, Detail: "application/cloudevents+json takes one event; send a batch as application/cloudevents-batch+json"}
			}
			values, _ = v.Array()
		case fastjson.TypeObject:
			if mt == "application/cloudevents-batch+json" {
				return nil, &Error{Reason: ReasonMalformed, Detail: "application/cloudevents-batch+json takes a JSON array of events"}
			}
			values = []*fastjson.Value{v}
		default:
			return nil, &Error{Reason: ReasonMalformed, Detail: "the body must be a JSON object (one event) or an array of events"}
		}
	default:
		return nil, fmt.Errorf("%w: %q (use application/cloudevents+json, application/cloudevents-batch+json, application/json or application/x-ndjson)", ErrUnsupportedMediaType, mt)
	}
	if err := d.checkCount(len(values)); err != nil {
		return nil, err
	}
	events := make([]Event, len(values))
	var verr Error
	var sb storedBuf
	for i, v := range values {
		d.decodeOne(v, i, now, &events[i], &verr, nil, &sb)
	}
	if len(verr.Errors) > 0 {
		return nil, verr.finish()
	}
	return events, nil
}

func (d *Decoder) checkCount(n int) error {
	if n == 0 {
		return &Error{Reason: ReasonMalformed, Detail: "the body holds no event"}
	}
	if d.MaxEvents > 0 && n > d.MaxEvents {
		return &Error{Reason: ReasonBatchTooBig, Detail: fmt.Sprintf("%d events in one request; at most %d are accepted (split the batch)", n, d.MaxEvents)}
	}
	return nil
}

func (d *Decoder) decodeLines(body []byte, now time.Time) ([]Event, error) {
	var lines [][]byte
	for line := range bytes.Lines(body) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			lines = append(lines, line)
		}
	}
	if err := d.checkCount(len(lines)); err != nil {
		return nil, err
	}
	events := make([]Event, len(lines))
	var verr Error
	var bufs decodeBufs
	var p *fastjson.Parser
	for i, line := range lines {
		if d.fastLine(line, now, &events[i], &bufs) {
			continue
		}
		events[i] = Event{}
		if p == nil {
			p = d.pool.Get()
			defer d.pool.Put(p)
		}
		v, err := p.ParseBytes(line)
		if err != nil {
			verr.add(i, "", ReasonMalformed, "line is not valid JSON: "+err.Error())
			continue
		}
		// The line is the event as received: kept as it is rather than encoded again. The
		// body is the request's own buffer, so the event may point into it.
		d.decodeOne(v, i, now, &events[i], &verr, line, &bufs.stored)
	}
	if len(verr.Errors) > 0 {
		return nil, verr.finish()
	}
	return events, nil
}

func (e *Error) add(index int, field, reason, detail string) {
	e.Errors = append(e.Errors, problem.FieldError{Index: index, Field: field, Detail: detail})
	if e.Reasons == nil {
		e.Reasons = map[string]int{}
	}
	// One reason per event: the first problem found.
	if n := len(e.Errors); n == 1 || e.Errors[n-2].Index != index {
		e.Reasons[reason]++
	}
}

func (e *Error) finish() *Error {
	e.Reason = ReasonInvalid
	for r := range e.Reasons {
		if r != ReasonInvalid {
			e.Reason = r
		}
	}
	if len(e.Reasons) > 1 {
		e.Reason = ReasonInvalid
	}
	e.Detail = fmt.Sprintf("%d field(s) of the events are invalid; nothing was stored", len(e.Errors))
	return e
}

// typeNames maps each contract event type to itself: decoded events share these strings.
var typeNames = func() map[string]string {
	m := make(map[string]string, len(Schemas))
	for t := range Schemas {
		m[t] = t
	}
	return m
}()

// storedBuf holds the stored forms of one request's events: one allocation per 64 KiB of them.
type storedBuf struct{ b []byte }

func (sb *storedBuf) add(ev *Event, flags byte) []byte {
	if n := storedSize(ev); cap(sb.b)-len(sb.b) < n {
		sb.b = make([]byte, 0, max(64<<10, n))
	}
	start := len(sb.b)
	sb.b = appendStored(sb.b, ev, flags)
	return sb.b[start:len(sb.b):len(sb.b)]
}

// decodeOne decodes and validates one event and sets its stored form (see stored.go): binary
// when sb is not nil and the event holds only the contract's attributes; else raw, the event's
// JSON text as received, when not nil; else the parsed value encoded again.
func (d *Decoder) decodeOne(v *fastjson.Value, i int, now time.Time, ev *Event, verr *Error, raw []byte, sb *storedBuf) {
	o, err := v.Object()
	if err != nil {
		verr.add(i, "", ReasonMalformed, "an event must be a JSON object")
		return
	}
	before := len(verr.Errors)
	// bytesOf returns a string attribute's bytes, valid until the parser is reused: most
	// attributes are only compared or parsed, and need no string of their own.
	bytesOf := func(name string, required bool) []byte {
		x := o.Get(name)
		if x == nil {
			if required {
				verr.add(i, name, ReasonInvalid, "required")
			}
			return nil
		}
		s, err := x.StringBytes()
		if err != nil {
			verr.add(i, name, ReasonInvalid, "must be a string")
			return nil
		}
		return s
	}
	str := func(name string, required bool) string { return string(bytesOf(name, required)) }
	if sv := bytesOf("specversion", true); len(sv) > 0 && string(sv) != "1.0" {
		verr.add(i, "specversion", ReasonInvalid, fmt.Sprintf("%q is not supported; use \"1.0\"", sv))
	}
	ev.ID = str("id", true)
	if o.Get("id") != nil && (ev.ID == "" || len(ev.ID) > maxIDLen || !utf8.ValidString(ev.ID)) {
		verr.add(i, "id", ReasonInvalid, fmt.Sprintf("must be a non-empty string of at most %d bytes", maxIDLen))
	}
	ev.Source = str("source", true)
	if o.Get("source") != nil && (ev.Source == "" || len(ev.Source) > maxIDLen || !utf8.ValidString(ev.Source)) {
		verr.add(i, "source", ReasonInvalid, fmt.Sprintf("must be a non-empty string of at most %d bytes", maxIDLen))
	}
	typ := bytesOf("type", true)
	schema, known := Schemas[string(typ)]
	custom := d.Custom[string(typ)]
	if name, ok := typeNames[string(typ)]; ok {
		ev.Type = name // the contract's own string: no allocation per event
	} else {
		ev.Type = string(typ)
	}
	if ev.Type != "" && !known && !custom {
		verr.add(i, "type", ReasonInvalid, fmt.Sprintf("unknown event type %q", ev.Type))
	}
	if ct := bytesOf("datacontenttype", false); len(ct) > 0 && string(ct) != "application/json" {
		verr.add(i, "datacontenttype", ReasonInvalid, "only application/json data is supported")
	}
	ev.Time = now
	if tb := bytesOf("time", false); len(tb) > 0 {
		ts := unsafe.String(&tb[0], len(tb)) // parsed at once, kept only in an error message below
		t, err := time.Parse(time.RFC3339Nano, ts)
		switch {
		case err != nil:
			verr.add(i, "time", ReasonInvalid, "must be an RFC 3339 timestamp")
		case t.Before(now.Add(-LateWindow)):
			verr.add(i, "time", ReasonTooOld, fmt.Sprintf("%s is older than the %s late window", ts, "35-day"))
		case t.After(now.Add(FutureSkew)):
			verr.add(i, "time", ReasonTooNew, fmt.Sprintf("%s is more than 5 minutes ahead of the receiver's clock", ts))
		default:
			ev.Time = t.UTC()
		}
	} else if o.Get("time") != nil {
		verr.add(i, "time", ReasonInvalid, "must be an RFC 3339 timestamp")
	}
	data := o.Get("data")
	var dataKeys int
	if data == nil {
		verr.add(i, "data", ReasonInvalid, "required")
	} else if data.Type() != fastjson.TypeObject {
		verr.add(i, "data", ReasonInvalid, "must be a JSON object")
	} else {
		dataKeys = d.decodeData(data, i, ev, schema, known, custom, verr)
	}
	if len(verr.Errors) != before {
		return
	}
	// The binary form holds exactly the attributes read above: specversion, id, source, type and
	// data always, time and datacontenttype when present, and every data key (tenant, fields,
	// quantities). Any other key, or a null, keeps the event as JSON.
	var flags byte
	keys := 5
	if o.Get("time") != nil {
		flags |= storedHadTime
		keys++
	}
	if o.Get("datacontenttype") != nil {
		flags |= storedHadContentType
		keys++
	}
	switch {
	case sb != nil && o.Len() == keys && dataKeys == 1+len(ev.Fields)+len(ev.Quantities):
		ev.Raw = sb.add(ev, flags)
	case raw != nil:
		ev.Raw = raw
	default:
		ev.Raw = v.MarshalTo(make([]byte, 0, 256))
	}
}

// decodeData decodes the data object and returns how many keys it has.
func (d *Decoder) decodeData(data *fastjson.Value, i int, ev *Event, schema Schema, known, custom bool, verr *Error) int {
	o, _ := data.Object()
	tenant := o.Get("tenant")
	if tenant == nil {
		verr.add(i, "data.tenant", ReasonInvalid, "required")
	} else if s, err := tenant.StringBytes(); err != nil || !ValidID(string(s)) {
		verr.add(i, "data.tenant", ReasonInvalid, "must match ^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
	} else {
		ev.Tenant = string(s)
	}
	if !known && !custom {
		return o.Len()
	}
	if custom && !known {
		o.Visit(func(k []byte, v *fastjson.Value) {
			name := string(k)
			if name == "tenant" {
				return
			}
			switch v.Type() {
			case fastjson.TypeString:
				d.addField(i, ev, name, v, verr)
			case fastjson.TypeNumber:
				d.addQuantity(i, ev, name, v, verr)
			default:
				verr.add(i, "data."+name, ReasonInvalid, "must be a string or a non-negative integer")
			}
		})
		return o.Len()
	}
	// Room for every field and quantity of the type at once: appending one by one would grow the
	// slices two or three times per event.
	ev.Fields = make([]Field, 0, len(schema.Fields)+len(schema.OptionalFields))
	if n := len(schema.Quantities) + len(schema.OptionalQuantities); n > 0 {
		ev.Quantities = make([]Quantity, 0, n)
	}
	for _, name := range schema.Fields {
		if v := o.Get(name); v == nil {
			verr.add(i, "data."+name, ReasonInvalid, "required for "+ev.Type)
		} else {
			d.addField(i, ev, name, v, verr)
		}
	}
	for _, name := range schema.OptionalFields {
		if v := o.Get(name); v != nil && v.Type() != fastjson.TypeNull {
			d.addField(i, ev, name, v, verr)
		}
	}
	for _, name := range schema.Quantities {
		if v := o.Get(name); v == nil {
			verr.add(i, "data."+name, ReasonInvalid, "required for "+ev.Type)
		} else {
			d.addQuantity(i, ev, name, v, verr)
		}
	}
	for _, name := range schema.OptionalQuantities {
		if v := o.Get(name); v != nil && v.Type() != fastjson.TypeNull {
			d.addQuantity(i, ev, name, v, verr)
		}
	}
	return o.Len()
}

func (d *Decoder) addField(i int, ev *Event, name string, v *fastjson.Value, verr *Error) {
	b, err := v.StringBytes()
	if err != nil {
		verr.add(i, "data."+name, ReasonInvalid, "must be a string")
		return
	}
	s := string(b)
	if name == "user" {
		if !ValidID(s) {
			verr.add(i, "data.user", ReasonInvalid, "must match ^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
			return
		}
	} else if msg := CheckLabel(s); msg != "" {
		verr.add(i, "data."+name, ReasonInvalid, msg)
		return
	}
	ev.Fields = append(ev.Fields, Field{Name: name, Value: s})
}

func (d *Decoder) addQuantity(i int, ev *Event, name string, v *fastjson.Value, verr *Error) {
	const msg = "must be a non-negative integer"
	if v.Type() != fastjson.TypeNumber {
		verr.add(i, "data."+name, ReasonInvalid, msg)
		return
	}
	// The raw text must be plain digits: 1.5, 1e3 and -1 are refused, not rounded.
	var buf [32]byte
	raw := v.MarshalTo(buf[:0])
	for _, c := range raw {
		if c < '0' || c > '9' {
			verr.add(i, "data."+name, ReasonInvalid, msg)
			return
		}
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		verr.add(i, "data."+name, ReasonInvalid, "is larger than 2^63-1")
		return
	}
	ev.Quantities = append(ev.Quantities, Quantity{Name: name, Value: n})
}

// ValidID reports whether s is a valid tenant or user id: ^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == ':' || c == '@' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// CheckLabel validates a dimension value that may become a label value or a key part, and
// returns what is wrong with it ("" if nothing): non-empty, at most MaxLabelBytes of UTF-8, no
// control character, not the reserved __overflow__.
func CheckLabel(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if len(s) > maxStrLen {
		return fmt.Sprintf("is longer than %d bytes", maxStrLen)
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return "must not contain control characters"
	}
	if s == "__overflow__" {
		return "__overflow__ is reserved"
	}
	return ""
}

// DecodeStored decodes an event kept in the ledger (either stored form, see stored.go), with the
// time it was stored under. For JSON it skips the checks that depend on the time of receipt (late
// window, future skew); the binary form was validated when it was received. ev.Raw is a copy of
// raw.
func (d *Decoder) DecodeStored(raw []byte, t time.Time) (Event, error) {
	if len(raw) > 0 && raw[0] == storedV1 {
		ev, _, err := decodeStoredBinary(raw, t)
		if err != nil {
			return Event{}, err
		}
		ev.Raw = bytes.Clone(raw)
		return ev, nil
	}
	p := d.pool.Get()
	defer d.pool.Put(p)
	v, err := p.ParseBytes(raw)
	if err != nil {
		return Event{}, fmt.Errorf("stored event is not JSON: %w", err)
	}
	var ev Event
	var verr Error
	// Validate against a clock at the event's own time, then restore the stored time (the
	// event may have had none and taken its time of receipt).
	d.decodeOne(v, 0, t, &ev, &verr, bytes.Clone(raw), nil)
	if len(verr.Errors) > 0 {
		return Event{}, verr.finish()
	}
	ev.Time = t
	return ev, nil
}

package event

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// The fast path. Nearly every event a platform sends is a flat CloudEvent: string attributes and
// a data object of strings and integers, without escapes. fastAt decodes and validates such an
// event in one pass over its bytes, with no parse tree and no allocation of its own: its strings
// and slices are carved from per-request slabs. It takes an event only when it is valid, uses
// only the contract's attributes and data fields, and has nothing the general path would read
// differently (escapes, nulls, repeated keys, numbers other than plain digits). Everything else,
// every invalid event included, goes to the general path (decodeOne), which reports each error.
// For the events it takes, fastAt gives exactly what decodeOne gives: FuzzFastPath checks it.

// fastName is a data field of a contract type, in the order decodeOne appends it.
type fastName struct {
	name     string
	quantity bool
	required bool
}

// fastType is a contract type prepared for the fast path.
type fastType struct {
	typ     string
	names   []fastName // Fields, OptionalFields, Quantities, OptionalQuantities
	fields  int        // how many of names are fields (the rest are quantities)
	maxKeys int        // the most data keys an event of the type may have: tenant and every name
}

var fastTypes = func() map[string]*fastType {
	m := make(map[string]*fastType, len(Schemas))
	for typ, s := range Schemas {
		ft := &fastType{typ: typ, fields: len(s.Fields) + len(s.OptionalFields)}
		add := func(names []string, quantity, required bool) {
			for _, n := range names {
				ft.names = append(ft.names, fastName{name: n, quantity: quantity, required: required})
			}
		}
		add(s.Fields, false, true)
		add(s.OptionalFields, false, false)
		add(s.Quantities, true, true)
		add(s.OptionalQuantities, true, false)
		ft.maxKeys = 1 + len(ft.names)
		m[typ] = ft
	}
	return m
}()

// The top-level attributes the fast path reads, as bits of fastScan.seen.
const (
	attrSpecversion = iota
	attrID
	attrSource
	attrType
	attrContentType
	attrTime
	attrData
	attrCount
)

func attrOf(key []byte) int {
	switch string(key) { // no allocation: the compiler compares the bytes
	case "specversion":
		return attrSpecversion
	case "id":
		return attrID
	case "source":
		return attrSource
	case "type":
		return attrType
	case "datacontenttype":
		return attrContentType
	case "time":
		return attrTime
	case "data":
		return attrData
	}
	return -1
}

// fastKV is a data key and its value: a string's contents or a number's digits.
type fastKV struct {
	key, val []byte
	num      bool
}

const maxFastData = 16

// fastScan is what one pass over an event found.
type fastScan struct {
	attrs [attrCount][]byte
	seen  uint8
	data  [maxFastData]fastKV
	nData int
}

// decodeBufs are the slabs one request's events are carved from: one allocation per slab rather
// than several per event. The strings point into them, so a string kept beyond the request keeps
// its slab alive; what outlives requests (the mirror's keys, the insight index) clones.
type decodeBufs struct {
	stored storedBuf
	strs   []byte
	fields []Field
	quants []Quantity
}

// one sizes the slabs for a request of one event: the batch-sized slabs would cost more to
// allocate and clear than the event costs to decode.
func (b *decodeBufs) one() *decodeBufs {
	b.stored.b = make([]byte, 0, 256)
	b.strs = make([]byte, 0, 256)
	b.fields = make([]Field, 0, 8)
	b.quants = make([]Quantity, 0, 8)
	return b
}

func (b *decodeBufs) str(s []byte) string {
	if len(s) == 0 {
		return ""
	}
	if cap(b.strs)-len(b.strs) < len(s) {
		b.strs = make([]byte, 0, max(16<<10, len(s)))
	}
	start := len(b.strs)
	b.strs = append(b.strs, s...)
	return unsafe.String(&b.strs[start], len(s))
}

// carve returns an empty slice with room for n elements, taken from the slab (a new slab of at
// least 1,024 when it is full).
func carve[T any](slab *[]T, n int) []T {
	if cap(*slab)-len(*slab) < n {
		*slab = make([]T, 0, max(1024, n))
	}
	start := len(*slab)
	*slab = (*slab)[:start+n]
	return (*slab)[start : start : start+n]
}

// fastLine decodes a whole NDJSON line by the fast path, if it can.
func (d *Decoder) fastLine(line []byte, now time.Time, ev *Event, bufs *decodeBufs) bool {
	end, ok := d.fastAt(line, 0, now, ev, bufs)
	return ok && skipWS(line, end) == len(line)
}

// fastAt decodes the event that starts at b[i] (after any white space) by the fast path. It
// returns the position after the event's closing brace, or ok false if the general path must
// decode it; ev may then be partly set.
func (d *Decoder) fastAt(b []byte, i int, now time.Time, ev *Event, bufs *decodeBufs) (int, bool) {
	var sc fastScan
	end, ok := scanEvent(b, i, &sc)
	if !ok || !d.fastEvent(&sc, now, ev, bufs) {
		return 0, false
	}
	return end, true
}

// fastEvent validates a scanned event and fills ev, or reports false.
func (d *Decoder) fastEvent(sc *fastScan, now time.Time, ev *Event, bufs *decodeBufs) bool {
	const required = 1<<attrSpecversion | 1<<attrID | 1<<attrSource | 1<<attrType | 1<<attrData
	if sc.seen&required != required || string(sc.attrs[attrSpecversion]) != "1.0" {
		return false
	}
	id, src := sc.attrs[attrID], sc.attrs[attrSource]
	if len(id) == 0 || len(id) > maxIDLen || !utf8.Valid(id) || len(src) == 0 || len(src) > maxIDLen || !utf8.Valid(src) {
		return false
	}
	ft := fastTypes[string(sc.attrs[attrType])]
	if ft == nil {
		return false // a custom type, or an unknown one
	}
	var flags byte
	if sc.seen&(1<<attrContentType) != 0 {
		if string(sc.attrs[attrContentType]) != "application/json" {
			return false
		}
		flags |= storedHadContentType
	}
	ev.Time = now
	if sc.seen&(1<<attrTime) != 0 {
		tb := sc.attrs[attrTime]
		if len(tb) == 0 {
			return false
		}
		t, err := time.Parse(time.RFC3339Nano, unsafe.String(&tb[0], len(tb)))
		if err != nil || t.Before(now.Add(-LateWindow)) || t.After(now.Add(FutureSkew)) {
			return false
		}
		ev.Time = t.UTC()
		flags |= storedHadTime
	}

	// The data keys: tenant, and every name of the type at most once; nothing else.
	data := sc.data[:sc.nData]
	if len(data) > ft.maxKeys {
		return false
	}
	var tenant []byte
	tenants := 0
	for k := range data {
		if string(data[k].key) == "tenant" {
			tenant = data[k].val
			tenants++
			if data[k].num {
				return false
			}
		}
	}
	if tenants != 1 || !ValidID(unsafe.String(unsafe.SliceData(tenant), len(tenant))) {
		return false
	}
	var vals [maxFastData]*fastKV // per name of the type, in its order
	matched := 1
	nf, nq := 0, 0
	for n, fn := range ft.names {
		var kv *fastKV
		for k := range data {
			if string(data[k].key) == fn.name {
				kv = &data[k]
				break
			}
		}
		if kv == nil {
			if fn.required {
				return false
			}
			continue
		}
		if kv.num != fn.quantity {
			return false
		}
		if fn.quantity {
			nq++
		} else {
			s := unsafe.String(unsafe.SliceData(kv.val), len(kv.val))
			if fn.name == "user" {
				if !ValidID(s) {
					return false
				}
			} else if CheckLabel(s) != "" {
				return false
			}
			nf++
		}
		vals[n] = kv
		matched++
	}
	if matched != len(data) {
		return false // a repeated or unknown key: the general path keeps such an event as JSON
	}
	var quantities []Quantity
	if len(ft.names) > ft.fields {
		quantities = carve(&bufs.quants, nq)
	}
	fields := carve(&bufs.fields, nf)
	for n, fn := range ft.names {
		kv := vals[n]
		if kv == nil {
			continue
		}
		if fn.quantity {
			v, err := strconv.ParseInt(unsafe.String(unsafe.SliceData(kv.val), len(kv.val)), 10, 64)
			if err != nil {
				return false // beyond 2^63-1
			}
			quantities = append(quantities, Quantity{Name: fn.name, Value: v})
		} else {
			fields = append(fields, Field{Name: fn.name, Value: bufs.str(kv.val)})
		}
	}
	ev.ID = bufs.str(id)
	ev.Source = bufs.str(src)
	ev.Type = ft.typ
	ev.Tenant = bufs.str(tenant)
	ev.Fields = fields
	ev.Quantities = quantities
	ev.Raw = bufs.stored.add(ev, flags)
	return true
}

// scanEvent reads the JSON object at b[i] (after any white space) into sc: string attributes and
// a data object of strings and plain integers, none of them repeated among the attributes. It
// reports false for anything else.
func scanEvent(b []byte, i int, sc *fastScan) (int, bool) {
	return scanObject(b, skipWS(b, i), func(key []byte, j int) (int, bool) {
		a := attrOf(key)
		if a < 0 || sc.seen&(1<<a) != 0 {
			return 0, false
		}
		sc.seen |= 1 << a
		if a == attrData {
			return scanObject(b, j, sc.dataMember(b))
		}
		var ok bool
		sc.attrs[a], j, ok = fastString(b, j)
		return j, ok
	})
}

// dataMember reads a member of the data object: a string or a plain integer.
func (sc *fastScan) dataMember(b []byte) func(key []byte, j int) (int, bool) {
	return func(key []byte, j int) (int, bool) {
		if sc.nData == maxFastData {
			return 0, false
		}
		kv := &sc.data[sc.nData]
		sc.nData++
		kv.key = key
		var ok bool
		if b[j] == '"' {
			kv.val, j, ok = fastString(b, j)
		} else {
			kv.val, j, ok = fastDigits(b, j)
			kv.num = true
		}
		return j, ok
	}
}

// scanObject reads the JSON object at b[i] whose keys are strings without escapes; member reads
// each value, which starts at b[j], and returns the position after it. It returns the position
// after the closing brace.
func scanObject(b []byte, i int, member func(key []byte, j int) (int, bool)) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	i = skipWS(b, i+1)
	for {
		key, j, ok := fastString(b, i)
		if !ok {
			return 0, false
		}
		if j = skipWS(b, j); j >= len(b) || b[j] != ':' {
			return 0, false
		}
		if j = skipWS(b, j+1); j >= len(b) {
			return 0, false
		}
		if j, ok = member(key, j); !ok {
			return 0, false
		}
		if j = skipWS(b, j); j >= len(b) {
			return 0, false
		}
		switch b[j] {
		case ',':
			i = skipWS(b, j+1)
		case '}':
			return j + 1, true
		default:
			return 0, false
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// fastString reads the JSON string at b[i]: its contents and the position after it. A string
// with an escape or a control character is left to the general path.
func fastString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	i++
	end := bytes.IndexByte(b[i:], '"')
	if end < 0 {
		return nil, 0, false
	}
	s := b[i : i+end]
	for _, c := range s {
		if c < 0x20 || c == '\\' {
			return nil, 0, false
		}
	}
	return s, i + end + 1, true
}

// fastDigits reads a JSON number made of digits only (no sign, fraction, exponent or leading
// zero).
func fastDigits(b []byte, i int) ([]byte, int, bool) {
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if n := i - start; n == 0 || (n > 1 && b[start] == '0') {
		return nil, 0, false
	}
	return b[start:i], i, true
}

// fastObject decodes a body of one event by the fast path, if it can.
func (d *Decoder) fastObject(body []byte, now time.Time) ([]Event, bool) {
	var bufs decodeBufs
	events := make([]Event, 1)
	end, ok := d.fastAt(body, 0, now, &events[0], bufs.one())
	if !ok || skipWS(body, end) != len(body) {
		return nil, false
	}
	return events, true
}

// fastArray decodes a JSON array of events by the fast path, if it can take every one.
func (d *Decoder) fastArray(body []byte, now time.Time) ([]Event, bool) {
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '[' {
		return nil, false
	}
	var bufs decodeBufs
	n := len(body)/128 + 1 // about the size of the smallest event
	if d.MaxEvents > 0 {
		n = min(n, d.MaxEvents)
	}
	events := make([]Event, 0, n)
	for i = skipWS(body, i+1); ; {
		if d.MaxEvents > 0 && len(events) == d.MaxEvents {
			return nil, false // the general path explains the limit
		}
		events = append(events, Event{})
		end, ok := d.fastAt(body, i, now, &events[len(events)-1], &bufs)
		if !ok {
			return nil, false
		}
		if i = skipWS(body, end); i >= len(body) {
			return nil, false
		}
		switch body[i] {
		case ',':
			i++
		case ']':
			if skipWS(body, i+1) != len(body) {
				return nil, false
			}
			return events, true
		default:
			return nil, false
		}
	}
}

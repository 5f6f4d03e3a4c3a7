package ledger

import (
	"slices"
	"strconv"
	"time"
	"unsafe"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// cmeter is a meter definition prepared for the write path.
type cmeter struct {
	meter.Def
	tag         byte
	labelIdx    []int // positions of the metric labels within Dimensions
	uniqueField string
	userLabel   bool // the series carry the user as their last label
}

type cbinding struct {
	m    *cmeter
	b    meter.Binding
	sign int64
}

func compile(defs []meter.Def, perUser bool) ([]*cmeter, map[string][]cbinding) {
	ms := make([]*cmeter, len(defs))
	byType := map[string][]cbinding{}
	for i := range defs {
		m := &cmeter{Def: defs[i], tag: meter.Tag(defs[i].Aggregation)}
		if m.Metric != nil {
			for _, l := range m.Metric.Labels {
				m.labelIdx = append(m.labelIdx, slices.Index(m.Dimensions, l))
			}
			if u := slices.Index(m.Dimensions, "user"); perUser && u >= 0 && !slices.Contains(m.Metric.Labels, "user") && m.Aggregation != meter.UniqueCount {
				m.labelIdx = append(m.labelIdx, u)
				m.userLabel = true
			}
		}
		ms[i] = m
		for _, b := range m.Events {
			sign := int64(1)
			if b.Sign == -1 {
				sign = -1
			}
			if m.Aggregation == meter.UniqueCount {
				m.uniqueField = b.Value
			}
			byType[b.Type] = append(byType[b.Type], cbinding{m: m, b: b, sign: sign})
		}
	}
	return ms, byType
}

// op is one change of the ledger caused by an event.
type op struct {
	key   string
	h     keyHash
	state meter.State // merge operand; for unique presence (u/) unused
	kind  opKind
	ser   *Series // opTotal: the mirror's series, resolved by the writer before the commit
}

// opKind tells the writer where an op goes without looking at its key: rollups, presence and
// activity are folded into the pending flush; totals and period totals live in the mirror.
type opKind uint8

const (
	opRollup opKind = iota
	opUnique
	opActive
	opTotal
	opPeriod
)

// prepared is an event turned into ledger changes, computed by the request goroutine so that
// the single writer only dedupes and appends.
type prepared struct {
	hash   [16]byte
	evKey  [18]byte // "e/" + nanos + seq; the writer sets seq when it accepts the event
	raw    []byte
	ops    []op
	tenant string
	typ    string
}

// prepare computes the changes an event makes to every meter it feeds. Its keys and ops are
// carved from the arena's shared chunks rather than allocated one by one: pass one arena for
// many events (a request, a batch of a replay or a rebuild). Without one, the event gets an arena
// of its own, a whole chunk: for one-off use only.
func (s *Store) prepare(ev *event.Event, a *arena) prepared {
	if a == nil {
		a = &arena{}
	}
	p := prepared{hash: dedupeHash(ev.Source, ev.ID), raw: ev.Raw, tenant: ev.Tenant, typ: ev.Type}
	copy(p.evKey[:], pEvent)
	putU64(p.evKey[2:], uint64(ev.Time.UnixNano()))
	bindings := s.byType[ev.Type]
	if len(bindings) == 0 {
		return p
	}
	p.ops = a.opSlice(3 * len(bindings))
	hour := hourOf(ev.Time)
	month := monthOf(ev.Time)
	nanos := ev.Time.UnixNano()
	var dimsBuf [8]string
	dims := dimsBuf[:0]
	for _, cb := range bindings {
		m := cb.m
		var value int64 = 1
		var ident string
		switch m.Aggregation {
		case meter.Count:
		case meter.UniqueCount:
			v, ok := ev.Field(cb.b.Value)
			if !ok {
				if q, okq := ev.Quantity(cb.b.Value); okq {
					v, ok = strconv.FormatInt(q, 10), true
				}
			}
			if !ok {
				continue // an optional identity (ingest.completed's user) that is absent
			}
			ident = v
		default:
			q, ok := ev.Quantity(cb.b.Value)
			if !ok {
				continue // an optional quantity that is absent
			}
			value = q
		}
		value *= cb.sign
		dims = dims[:0]
		for _, d := range m.Dimensions {
			v, ok := cb.b.Set[d]
			if !ok {
				v, _ = ev.Field(d)
			}
			dims = append(dims, v)
		}
		st := meter.State{Agg: m.tag, Value: value, Time: nanos}

		// r/<meter>\0<tenant>\0<hour><dim>\0...
		k := a.begin()
		k = append(k, pRollup...)
		k = appendCell(k, m.Name, ev.Tenant)
		k = appendU32(k, hour)
		for _, d := range dims {
			k = append(k, d...)
			k = append(k, 0)
		}
		if m.Aggregation == meter.UniqueCount {
			// Presence of the identity in the hour (exact distinct counts over any window) and
			// its last activity (trailing-window gauges without a scan): u/ + the cell + identity,
			// and a/<meter>\0<tenant>\0<identity>.
			cellLen := len(k)
			k = append(k, pUnique...)
			k = append(k, k[len(pRollup):cellLen]...)
			k = append(k, ident...)
			p.ops = append(p.ops, newOp(a.end(k, cellLen), meter.State{}, opUnique))
			k = a.begin()
			k = append(k, pActive...)
			k = appendCell(k, m.Name, ev.Tenant)
			k = append(k, ident...)
			p.ops = append(p.ops, newOp(a.end(k, 0), meter.State{Agg: 'M', Value: nanos}, opActive))
			continue
		}
		p.ops = append(p.ops, newOp(a.end(k, 0), st, opRollup))

		// t/<meter>\0<tenant>\0<label>\0...
		k = a.begin()
		k = append(k, pTotal...)
		k = appendCell(k, m.Name, ev.Tenant)
		for _, i := range m.labelIdx {
			k = append(k, dims[i]...)
			k = append(k, 0)
		}
		p.ops = append(p.ops, newOp(a.end(k, 0), st, opTotal))
		if m.Kind == meter.Flow {
			k = appendPeriodKey(a.begin(), month, m.Name, ev.Tenant)
			p.ops = append(p.ops, newOp(a.end(k, 0), st, opPeriod))
		}
	}
	a.used(len(p.ops))
	return p
}

func newOp(key string, st meter.State, kind opKind) op {
	return op{key: key, h: hashKey(key), state: st, kind: kind}
}

// appendCell appends <meter>\0<tenant>\0.
func appendCell(b []byte, meterName, tenant string) []byte {
	b = append(b, meterName...)
	b = append(b, 0)
	b = append(b, tenant...)
	return append(b, 0)
}

// arena hands out the keys and ops of a request's events from shared chunks: preparing an event
// then allocates once per chunk instead of once per key. Keys reference their chunk, so whatever
// keeps a key beyond the pending flush (the mirror) clones it.
type arena struct {
	chunk []byte // keys are appended here; earlier chunks stay alive through their keys
	ops   []op
}

const arenaChunk = 64 << 10

// begin returns the free tail of the chunk to build a key in, by appending.
func (a *arena) begin() []byte { return a.chunk[len(a.chunk):] }

// end turns a key built from begin into a string, dropping its first skip bytes. If the key
// outgrew the chunk, append moved it to a fresh array that becomes the chunk.
func (a *arena) end(k []byte, skip int) string {
	if len(k) == skip {
		return ""
	}
	if tail := a.chunk[len(a.chunk):cap(a.chunk)]; len(tail) > 0 && unsafe.SliceData(k) == unsafe.SliceData(tail) {
		a.chunk = a.chunk[:len(a.chunk)+len(k)]
	} else {
		a.chunk = make([]byte, len(k), max(arenaChunk, 2*len(k)))
		copy(a.chunk, k)
		k = a.chunk
	}
	return unsafe.String(&k[skip], len(k)-skip)
}

// opSlice returns an empty slice with room for n ops; used then records how many were taken.
func (a *arena) opSlice(n int) []op {
	if cap(a.ops)-len(a.ops) < n {
		a.ops = make([]op, 0, max(1024, n))
	}
	return a.ops[len(a.ops) : len(a.ops) : len(a.ops)+n]
}

func (a *arena) used(n int) { a.ops = a.ops[:len(a.ops)+n] }

func periodKey(month uint32, meterName, tenant string) string {
	return string(appendPeriodKey(make([]byte, 0, 2+4+len(meterName)+len(tenant)+1), month, meterName, tenant))
}

// appendPeriodKey appends p/<month><meter>\0<tenant>.
func appendPeriodKey(b []byte, month uint32, meterName, tenant string) []byte {
	b = append(b, pPeriod...)
	b = appendU32(b, month)
	b = append(b, meterName...)
	b = append(b, 0)
	return append(b, tenant...)
}

func putU64(b []byte, v uint64) {
	_ = b[7]
	b[0], b[1], b[2], b[3] = byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32)
	b[4], b[5], b[6], b[7] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

func eventTime(evKey []byte) time.Time {
	var n uint64
	for _, c := range evKey[2:10] {
		n = n<<8 | uint64(c)
	}
	return time.Unix(0, int64(n)).UTC()
}

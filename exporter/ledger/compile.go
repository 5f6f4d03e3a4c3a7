package ledger

import (
	"slices"
	"strconv"
	"time"

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
	state meter.State // merge operand; for unique presence (u/) unused
	set   bool        // a plain Set of an empty value (u/ presence)
}

// prepared is an event turned into ledger changes, computed by the request goroutine so that
// the single writer only dedupes and appends.
type prepared struct {
	hash   [16]byte
	evKey  [18]byte // "e/" + nanos + seq
	raw    []byte
	ops    []op
	tenant string
}

// prepare computes the changes an event makes to every meter it feeds.
func (s *Store) prepare(ev *event.Event, seq uint64) prepared {
	p := prepared{hash: dedupeHash(ev.Source, ev.ID), raw: ev.Raw, tenant: ev.Tenant}
	copy(p.evKey[:], pEvent)
	putU64(p.evKey[2:], uint64(ev.Time.UnixNano()))
	putU64(p.evKey[10:], seq)
	hour := hourOf(ev.Time)
	month := monthOf(ev.Time)
	nanos := ev.Time.UnixNano()
	dims := make([]string, 0, 8)
	for _, cb := range s.byType[ev.Type] {
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

		cell := make([]byte, 0, 64)
		cell = append(cell, cellPrefix(pRollup, m.Name, ev.Tenant)...)
		cell = appendU32(cell, hour)
		for _, d := range dims {
			cell = append(cell, d...)
			cell = append(cell, 0)
		}
		if m.Aggregation == meter.UniqueCount {
			// Presence of the identity in the hour (exact distinct counts over any window) and
			// its last activity (trailing-window gauges without a scan).
			u := append([]byte(pUnique), cell[len(pRollup):]...)
			u = append(u, ident...)
			p.ops = append(p.ops, op{key: string(u), set: true})
			a := string(cellPrefix(pActive, m.Name, ev.Tenant)) + ident
			p.ops = append(p.ops, op{key: a, state: meter.State{Agg: 'M', Value: nanos}})
			continue
		}
		p.ops = append(p.ops, op{key: string(cell), state: st})

		tot := make([]byte, 0, 48)
		tot = append(tot, cellPrefix(pTotal, m.Name, ev.Tenant)...)
		for _, i := range m.labelIdx {
			tot = append(tot, dims[i]...)
			tot = append(tot, 0)
		}
		p.ops = append(p.ops, op{key: string(tot), state: st})
		if m.Kind == meter.Flow {
			p.ops = append(p.ops, op{key: periodKey(month, m.Name, ev.Tenant), state: st})
		}
	}
	return p
}

func periodKey(month uint32, meterName, tenant string) string {
	b := make([]byte, 0, 2+4+len(meterName)+len(tenant)+1)
	b = append(b, pPeriod...)
	b = appendU32(b, month)
	b = append(b, meterName...)
	b = append(b, 0)
	b = append(b, tenant...)
	return string(b)
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

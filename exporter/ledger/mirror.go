package ledger

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/exporter/meter"
)

// The mirror holds, in memory, the ledger data that every scrape and quota check needs: all-time
// totals per metric series, calendar-month totals, and last activity per identity. It is loaded
// from the store at start-up and changed only after a group commit succeeded, from the very
// operands that were committed, so it cannot drift from the database.
type mirror struct {
	series   map[keyHash]*Series         // by t/ key
	byMetric map[string][]*Series        // by metric name, for rendering one family at a time
	byTenant map[string][]*Series        // by meter\0tenant
	admitted map[string]int              // metric → series admitted under the cap
	folded   map[string]int              // metric → series folded into __overflow__
	periods  map[keyHash]*periodTotal    // by p/ key
	active   map[string]map[string]int64 // meter\0tenant → identity → last activity (unix nanos)

	// Totals and period totals changed since the last flush. The flush writes their values from
	// here, so the pending state never holds them (see pending.go). Writer goroutine only.
	dirtySeries  []*Series
	dirtyPeriods []*periodTotal
	// periodsFrom is the oldest month whose period totals were loaded: older ones (beyond the
	// late window, so only reachable by a clock jump) are merged in the store, not held here.
	periodsFrom uint32
}

// periodTotal is a meter's calendar-month total for one tenant (a p/ key).
type periodTotal struct {
	key   string
	state meter.State
	dirty bool
}

// Series is one metric series' all-time total.
type Series struct {
	Meter    *meter.Def
	Tenant   string
	Labels   []string // values of Meter.Metric.Labels
	User     string   // with per-user labels: the user (to be pseudonymised before exposure)
	State    meter.State
	Admitted bool // false: folded into the metric's __overflow__ series

	key   string // the t/ key
	dirty bool   // changed since the last flush; see mirror.dirtySeries
}

// activeHorizon is how far back last-activity entries are kept in memory: the longest trailing
// window (30d) or the current calendar month, whichever is longer.
const activeHorizon = 32 * 24 * time.Hour

func (s *Store) newMirror() mirror {
	return mirror{
		series:   map[keyHash]*Series{},
		byMetric: map[string][]*Series{},
		byTenant: map[string][]*Series{},
		admitted: map[string]int{},
		folded:   map[string]int{},
		periods:  map[keyHash]*periodTotal{},
		active:   map[string]map[string]int64{},
	}
}

func (s *Store) loadMirror(ctx context.Context) error {
	m := s.newMirror()
	admitted := map[string]bool{}
	if err := s.scan(ctx, []byte(pAdmit), func(k, v []byte) error {
		admitted[string(v)] = true
		return nil
	}); err != nil {
		return err
	}
	if err := s.scan(ctx, []byte(pTotal), func(k, v []byte) error {
		st, err := meter.Decode(v)
		if err != nil {
			return fmt.Errorf("total %q: %w", k, err)
		}
		ser := s.parseSeries(string(k))
		if ser == nil {
			return nil // a meter that is no longer configured
		}
		ser.State = st
		ser.Admitted = ser.Meter.Metric == nil || admitted[string(k)]
		ser.key = string(k)
		m.add(hashKey(ser.key), ser)
		return nil
	}); err != nil {
		return err
	}
	oldest := monthOf(time.Now()) - 2
	m.periodsFrom = oldest
	if err := s.scan(ctx, []byte(pPeriod), func(k, v []byte) error {
		if len(k) < 6 || periodMonth(string(k)) < oldest {
			return nil
		}
		st, err := meter.Decode(v)
		if err != nil {
			return fmt.Errorf("period total %q: %w", k, err)
		}
		key := string(k)
		m.periods[hashKey(key)] = &periodTotal{key: key, state: st}
		return nil
	}); err != nil {
		return err
	}
	horizon := time.Now().Add(-activeHorizon).UnixNano()
	if err := s.scan(ctx, []byte(pActive), func(k, v []byte) error {
		st, err := meter.Decode(v)
		if err != nil {
			return fmt.Errorf("activity %q: %w", k, err)
		}
		if st.Value >= horizon {
			m.touch(string(k[len(pActive):]), st.Value)
		}
		return nil
	}); err != nil {
		return err
	}
	s.mu.Lock()
	s.mirror = m
	s.mu.Unlock()
	return nil
}

// add adds a series; ser.key is its t/ key, h the key's hash.
func (m *mirror) add(h keyHash, ser *Series) {
	m.series[h] = ser
	mt := ser.Meter.Name + sep + ser.Tenant
	m.byTenant[mt] = append(m.byTenant[mt], ser)
	if ser.Meter.Metric != nil {
		m.byMetric[ser.Meter.Metric.Name] = append(m.byMetric[ser.Meter.Metric.Name], ser)
		if ser.Admitted {
			m.admitted[ser.Meter.Metric.Name]++
		} else {
			m.folded[ser.Meter.Metric.Name]++
		}
	}
}

// touch records activity; rest is meter\0tenant\0identity.
func (m *mirror) touch(rest string, nanos int64) {
	i := strings.LastIndexByte(rest, 0)
	if i < 0 {
		return
	}
	mt, ident := rest[:i], rest[i+1:]
	users := m.active[mt]
	if users == nil {
		users = map[string]int64{}
		m.active[strings.Clone(mt)] = users // rest may be carved from a request's arena
	}
	if last, ok := users[ident]; !ok {
		users[strings.Clone(ident)] = nanos
	} else if nanos > last {
		users[ident] = nanos
	}
}

// parseSeries decodes a t/ key.
func (s *Store) parseSeries(key string) *Series {
	parts := strings.Split(strings.TrimPrefix(key, pTotal), sep)
	if len(parts) < 2 {
		return nil
	}
	cm := s.byName[parts[0]]
	if cm == nil {
		return nil
	}
	labels := parts[2:]
	if len(labels) > 0 && labels[len(labels)-1] == "" && len(labels) == len(cm.labelIdx)+1 {
		labels = labels[:len(labels)-1]
	}
	ser := &Series{Meter: &cm.Def, Tenant: parts[1], Labels: labels}
	if cm.userLabel && len(labels) > 0 {
		ser.User = labels[len(labels)-1]
		ser.Labels = labels[:len(labels)-1]
	}
	return ser
}

// periodMonth is the month of a p/ key.
func periodMonth(key string) uint32 {
	if len(key) < 6 {
		return 0
	}
	return uint32(key[2])<<24 | uint32(key[3])<<16 | uint32(key[4])<<8 | uint32(key[5])
}

// period returns the period total of a p/ key (h its hash), creating it empty.
func (m *mirror) period(h keyHash, key string, agg byte) *periodTotal {
	pt := m.periods[h]
	if pt == nil {
		key = strings.Clone(key) // it may be carved from a request's arena
		pt = &periodTotal{key: key, state: meter.State{Agg: agg}}
		m.periods[h] = pt
	}
	return pt
}

// PruneActivity drops in-memory activity older than the longest window; call it now and then.
func (s *Store) PruneActivity(now time.Time) {
	horizon := now.Add(-activeHorizon).UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	for mt, users := range s.mirror.active {
		for u, t := range users {
			if t < horizon {
				delete(users, u)
			}
		}
		if len(users) == 0 {
			delete(s.mirror.active, mt)
		}
	}
}

// scan calls fn for every key with the prefix, in order.
func (s *Store) scan(ctx context.Context, prefix []byte, fn func(k, v []byte) error) error {
	return s.scanRange(ctx, prefix, prefixEnd(prefix), fn)
}

// scanKeys calls fn with every key with the prefix, without reading values.
func (s *Store) scanKeys(ctx context.Context, prefix []byte, fn func(k []byte)) error {
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("opening iterator: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		fn(it.Key())
	}
	return it.Error()
}

func (s *Store) scanRange(ctx context.Context, lo, hi []byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("opening iterator: %w", err)
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		if n++; n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("reading %q: %w", it.Key(), err)
		}
		if err := fn(it.Key(), v); err != nil {
			return err
		}
	}
	return it.Error()
}

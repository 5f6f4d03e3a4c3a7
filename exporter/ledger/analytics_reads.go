package ledger

// Read-only queries for the analytics packages (analytics/...): raw events by time range (content
// hashes are not kept in rollups), the durable last activity of every identity (the in-memory
// mirror only keeps 32 days, inactive seats need older activity) and every tenant's month totals
// in one scan. Reads of derived keys flush the pending derived changes first, as Usage does.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// RawEvents calls fn with every stored raw event whose time lies in [from, to), in time order.
// A zero from means the beginning of time; a zero to means the end of time. fn must not keep ev.
func (s *Store) RawEvents(ctx context.Context, from, to time.Time, fn func(ev *event.Event) error) error {
	lo := []byte(pEvent)
	if !from.IsZero() && from.UnixNano() > 0 {
		lo = make([]byte, 10)
		copy(lo, pEvent)
		putU64(lo[2:], uint64(from.UnixNano()))
	}
	hi := prefixEnd([]byte(pEvent))
	if !to.IsZero() {
		hi = make([]byte, 10)
		copy(hi, pEvent)
		n := to.UnixNano()
		if n < 0 {
			n = 0
		}
		putU64(hi[2:], uint64(n))
	}
	dec := &event.Decoder{Custom: customTypes(s.opts.Meters)}
	return s.scanRange(ctx, lo, hi, func(k, v []byte) error {
		if len(k) < 10 {
			return nil
		}
		ev, err := dec.DecodeStored(v, eventTime(k))
		if err != nil {
			return fmt.Errorf("stored event %x: %w", k, err)
		}
		return fn(&ev)
	})
}

// LastSeen returns the last activity of every identity of a unique_count meter (active_users:
// every user) for a tenant, read from the store: all time, not only the mirror's horizon.
func (s *Store) LastSeen(ctx context.Context, meterName, tenant string) (map[string]time.Time, error) {
	cm, ok := s.byName[meterName]
	if !ok || cm.Aggregation != meter.UniqueCount {
		return nil, &QueryError{"meter", fmt.Sprintf("%q is not a unique_count meter", meterName)}
	}
	if err := s.Flush(ctx); err != nil {
		return nil, err
	}
	p := cellPrefix(pActive, cm.Name, tenant)
	out := map[string]time.Time{}
	err := s.scan(ctx, p, func(k, v []byte) error {
		st, err := meter.Decode(v)
		if err != nil {
			return fmt.Errorf("activity %q: %w", k, err)
		}
		out[string(k[len(p):])] = time.Unix(0, st.Value).UTC()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading last activity of %s: %w", tenant, err)
	}
	return out, nil
}

// MonthTotals calls fn with the calendar-month total (UTC) of every flow meter and tenant for
// the month containing month, in one scan of the month totals: a report over every tenant reads
// them without one point lookup per tenant, meter and month.
func (s *Store) MonthTotals(ctx context.Context, month time.Time, fn func(meterName, tenant string, value int64)) error {
	if err := s.Flush(ctx); err != nil {
		return err
	}
	p := appendU32([]byte(pPeriod), monthOf(month))
	return s.scan(ctx, p, func(k, v []byte) error {
		parts := strings.SplitN(string(k[len(p):]), sep, 2)
		if len(parts) != 2 {
			return nil
		}
		st, err := meter.Decode(v)
		if err != nil {
			return fmt.Errorf("month total %q: %w", k, err)
		}
		fn(parts[0], parts[1], st.Value)
		return nil
	})
}

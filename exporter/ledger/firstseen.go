package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/exporter/meter"
)

// FirstSeen returns the identities of a unique_count meter (active_users: users) whose first
// presence in the store lies in [from, to), each with the hour of that first presence: the new
// users of a period. from and to lie on hour boundaries.
//
// It reads the hourly presence keys (u/<meter>\0<tenant>\0<hour><dims>\0<identity>), which sort
// by hour: one forward pass over [from, to) finds the identities present in the period and the
// first hour of each, then one backward pass from from towards the beginning of the tenant's
// history drops those present earlier, and stops as soon as none is left to decide. So a period
// whose users all came back costs a look back to their previous visits; only genuinely new users
// make it read the tenant's whole presence history before from. Both passes read one iterator,
// one consistent view of the store. Presence deleted by retention (archived rollup months) is not
// seen: see ArchivedMonths(ClassRollups).
func (s *Store) FirstSeen(ctx context.Context, meterName, tenant string, from, to time.Time) (map[string]time.Time, error) {
	cm, ok := s.byName[meterName]
	if !ok || cm.Aggregation != meter.UniqueCount {
		return nil, &QueryError{"meter", fmt.Sprintf("%q is not a unique_count meter", meterName)}
	}
	if tenant == "" {
		return nil, &QueryError{"tenant", "required"}
	}
	if !from.Before(to) {
		return nil, &QueryError{"from", "must be before to"}
	}
	if from.Unix()%hourSecs != 0 || from.Nanosecond() != 0 || to.Unix()%hourSecs != 0 || to.Nanosecond() != 0 {
		return nil, &QueryError{"from", "from and to must be on hour boundaries (presence is kept hourly)"}
	}
	if err := s.Flush(ctx); err != nil {
		return nil, err
	}
	prefix := cellPrefix(pUnique, cm.Name, tenant)
	lo := appendU32(append([]byte(nil), prefix...), hourOf(from))
	hi := appendU32(append([]byte(nil), prefix...), hourOf(to))
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: prefix, UpperBound: hi})
	if err != nil {
		return nil, fmt.Errorf("opening iterator: %w", err)
	}
	defer it.Close()

	first := map[string]time.Time{}
	n := 0
	for valid := it.SeekGE(lo); valid; valid = it.Next() {
		if n++; n%4096 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		hour, ident, ok := presenceKey(it.Key(), len(prefix))
		if !ok {
			return nil, fmt.Errorf("presence key %q is malformed", it.Key())
		}
		if _, seen := first[string(ident)]; !seen {
			first[string(ident)] = time.Unix(int64(hour)*hourSecs, 0).UTC()
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("reading presence of %s: %w", tenant, err)
	}
	left := len(first)
	for valid := it.SeekLT(lo); valid && left > 0; valid = it.Prev() {
		if n++; n%4096 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		_, ident, ok := presenceKey(it.Key(), len(prefix))
		if !ok {
			return nil, fmt.Errorf("presence key %q is malformed", it.Key())
		}
		if _, candidate := first[string(ident)]; candidate {
			delete(first, string(ident))
			left--
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("reading presence of %s: %w", tenant, err)
	}
	return first, nil
}

// presenceKey splits a u/ key after its prefix (meter and tenant) into the hour and the
// identity: the part after the last NUL, since each dimension value ends with one.
func presenceKey(k []byte, prefixLen int) (uint32, []byte, bool) {
	rest := k[prefixLen:]
	if len(rest) < 4 {
		return 0, nil, false
	}
	ident := rest[4:]
	if i := bytes.LastIndexByte(ident, 0); i >= 0 {
		ident = ident[i+1:]
	}
	return binary.BigEndian.Uint32(rest[:4]), ident, true
}

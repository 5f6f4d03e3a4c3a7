package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/exporter/event"
)

// Data classes that retention archives and deletes by calendar month.
const (
	ClassRawEvents = "raw_events" // raw events and their dedupe keys
	ClassRollups   = "rollups"    // hourly rollups and unique-count presence
)

const pArchived = pMeta + "archived/"

func archivedKey(class string, month time.Time) []byte {
	return []byte(pArchived + class + "/" + month.UTC().Format("2006-01"))
}

// ArchivedMonths lists the months of a class that were archived and deleted.
func (s *Store) ArchivedMonths(ctx context.Context, class string) ([]time.Time, error) {
	var out []time.Time
	p := []byte(pArchived + class + "/")
	err := s.scan(ctx, p, func(k, _ []byte) error {
		m, err := time.Parse("2006-01", string(k[len(p):]))
		if err == nil {
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

func checkMonth(month time.Time) (time.Time, time.Time, error) {
	month = month.UTC()
	if month.Day() != 1 || month.Hour() != 0 || month.Minute() != 0 || month.Second() != 0 || month.Nanosecond() != 0 {
		return time.Time{}, time.Time{}, fmt.Errorf("%s is not the start of a calendar month", month)
	}
	return month, month.AddDate(0, 1, 0), nil
}

// ExportMonth calls fn with every key and value of a class in a calendar month, in key order.
// Derived usage is flushed first, so nothing is missed.
func (s *Store) ExportMonth(ctx context.Context, class string, month time.Time, fn func(k, v []byte) error) (int, error) {
	from, to, err := checkMonth(month)
	if err != nil {
		return 0, err
	}
	if err := s.Flush(ctx); err != nil {
		return 0, err
	}
	n := 0
	emit := func(k, v []byte) error { n++; return fn(k, v) }
	switch class {
	case ClassRawEvents:
		lo := binary.BigEndian.AppendUint64([]byte(pEvent), uint64(from.UnixNano()))
		hi := binary.BigEndian.AppendUint64([]byte(pEvent), uint64(to.UnixNano()))
		err = s.scanRange(ctx, lo, hi, func(k, v []byte) error {
			if err := emit(k, v); err != nil {
				return err
			}
			// The dedupe key goes with its event: restoring brings both back.
			source, id, err := event.StoredIdentity(v)
			if err != nil {
				return fmt.Errorf("stored event %x: %w", k, err)
			}
			h := dedupeHash(source, id)
			return emit(append([]byte(pDedupe), h[:]...), k)
		})
	case ClassRollups:
		lo, hi := hourOf(from), hourOf(to)
		for _, prefix := range []string{pRollup, pUnique} {
			err = s.scan(ctx, []byte(prefix), func(k, v []byte) error {
				if h, ok := cellHour(k, len(prefix)); ok && h >= lo && h < hi {
					return emit(k, v)
				}
				return nil
			})
			if err != nil {
				break
			}
		}
	default:
		return 0, fmt.Errorf("unknown data class %q", class)
	}
	return n, err
}

// cellHour reads the hour of an r/ or u/ key: prefix, meter, NUL, tenant, NUL, hour.
func cellHour(k []byte, prefixLen int) (uint32, bool) {
	rest := k[prefixLen:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return 0, false
	}
	rest = rest[i+1:]
	j := bytes.IndexByte(rest, 0)
	if j < 0 || len(rest) < j+5 {
		return 0, false
	}
	return binary.BigEndian.Uint32(rest[j+1 : j+5]), true
}

// DeleteArchived deletes the keys an archive of a class and month holds (next yields them, then
// ErrEnd) and marks the month archived. Deleting what the verified archive holds, rather than
// what the store holds now, guarantees that nothing is deleted unarchived.
func (s *Store) DeleteArchived(ctx context.Context, class string, month time.Time, next func() ([]byte, error)) (int, error) {
	if _, _, err := checkMonth(month); err != nil {
		return 0, err
	}
	n := 0
	b := s.db.NewBatch()
	defer func() { b.Close() }()
	for {
		k, err := next()
		if errors.Is(err, ErrEnd) {
			break
		}
		if err != nil {
			return n, err
		}
		if err := b.Delete(k, nil); err != nil {
			return n, err
		}
		if n++; n%10000 == 0 {
			if err := b.Commit(pebble.Sync); err != nil {
				return n, err
			}
			b.Close()
			b = s.db.NewBatch()
		}
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
	}
	if err := b.Set(archivedKey(class, month), nil, nil); err != nil {
		return n, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return n, fmt.Errorf("deleting archived %s of %s: %w", class, month.Format("2006-01"), err)
	}
	return n, nil
}

// Restore writes archived keys back and clears the month's archived mark. Keys must belong to
// the class.
func (s *Store) Restore(ctx context.Context, class string, month time.Time, next func() (k, v []byte, err error)) (int, error) {
	if _, _, err := checkMonth(month); err != nil {
		return 0, err
	}
	var allowed []string
	switch class {
	case ClassRawEvents:
		allowed = []string{pEvent, pDedupe}
	case ClassRollups:
		allowed = []string{pRollup, pUnique}
	default:
		return 0, fmt.Errorf("unknown data class %q", class)
	}
	n := 0
	b := s.db.NewBatch()
	defer func() { b.Close() }()
	for {
		k, v, err := next()
		if errors.Is(err, ErrEnd) {
			break
		}
		if err != nil {
			return n, err
		}
		ok := false
		for _, p := range allowed {
			ok = ok || strings.HasPrefix(string(k), p)
		}
		if !ok {
			return n, fmt.Errorf("archive holds key %q, which is not %s data", k, class)
		}
		if err := b.Set(k, v, nil); err != nil {
			return n, err
		}
		if n++; n%10000 == 0 {
			if err := b.Commit(pebble.Sync); err != nil {
				return n, err
			}
			b.Close()
			b = s.db.NewBatch()
		}
	}
	if err := b.Delete(archivedKey(class, month), nil); err != nil {
		return n, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return n, fmt.Errorf("restoring %s of %s: %w", class, month.Format("2006-01"), err)
	}
	return n, nil
}

// ErrEnd is what a Restore iterator returns when it has no more keys.
var ErrEnd = errors.New("end of archive")

// FirstMonth is the calendar month of the oldest stored raw event or rollup (zero when empty).
func (s *Store) FirstMonth(ctx context.Context) (time.Time, error) {
	if err := s.Flush(ctx); err != nil {
		return time.Time{}, err
	}
	var first time.Time
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(pEvent), UpperBound: prefixEnd([]byte(pEvent))})
	if err != nil {
		return first, err
	}
	if it.First() {
		first = eventTime(it.Key())
	}
	if err := it.Close(); err != nil {
		return first, err
	}
	// Rollups may outlive raw events: the oldest hour of any rollup cell.
	err = s.scanKeys(ctx, []byte(pRollup), func(k []byte) {
		if h, ok := cellHour(k, len(pRollup)); ok {
			if t := time.Unix(int64(h)*hourSecs, 0).UTC(); first.IsZero() || t.Before(first) {
				first = t
			}
		}
	})
	if err != nil || first.IsZero() {
		return first, err
	}
	return monthStart(monthOf(first)), nil
}

// MarkArchived records (or clears) that a month of a class owned by another package (the audit
// trail) is archived, so that ArchivedMonths lists every class alike.
func (s *Store) MarkArchived(class string, month time.Time, archived bool) error {
	if _, _, err := checkMonth(month); err != nil {
		return err
	}
	if archived {
		return s.db.Set(archivedKey(class, month), nil, pebble.Sync)
	}
	return s.db.Delete(archivedKey(class, month), pebble.Sync)
}

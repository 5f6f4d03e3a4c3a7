package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// keyCreated holds when the store was first opened (Unix nanoseconds). Stores made before it was
// recorded get the time of their first open by this build; Began still reaches back to their
// earliest usage.
var keyCreated = []byte(pMeta + "created")

// recordCreated stamps a store's creation time once; later opens keep the first stamp.
func (s *Store) recordCreated() error {
	_, closer, err := s.db.Get(keyCreated)
	if err == nil {
		return closer.Close()
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("reading the store's creation time: %w", err)
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
	if err := s.db.Set(keyCreated, v, pebble.Sync); err != nil {
		return fmt.Errorf("recording the store's creation time: %w", err)
	}
	return nil
}

// Created is when the store was first opened.
func (s *Store) Created() (time.Time, error) {
	ns, err := s.getUint(keyCreated)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, int64(ns)).UTC(), nil
}

// Began is where the store's history begins: its creation, or its earliest event when that is
// earlier (events are accepted up to 35 days late, so a backfill reaches back before the store
// existed). When retention archived the oldest raw events, the earliest month with usage (month
// totals outlive retention) stands for them. Billing refuses periods that end before it, and
// analytics says when a span starts before it: nothing is known about that time.
func (s *Store) Began(ctx context.Context) (time.Time, error) {
	began, err := s.Created()
	if err != nil {
		return time.Time{}, err
	}
	if err := s.Flush(ctx); err != nil {
		return time.Time{}, err
	}
	firstEvent, ok, err := s.firstKey(ctx, []byte(pEvent), 10)
	if err != nil {
		return time.Time{}, err
	}
	var eventMonth time.Time
	if ok {
		t := eventTime(firstEvent)
		eventMonth = monthStart(monthOf(t))
		if t.Before(began) {
			began = t
		}
	}
	firstPeriod, ok, err := s.firstKey(ctx, []byte(pPeriod), 4)
	if err != nil {
		return time.Time{}, err
	}
	if ok {
		m := monthStart(binary.BigEndian.Uint32(firstPeriod[len(pPeriod):]))
		if (eventMonth.IsZero() || m.Before(eventMonth)) && m.Before(began) {
			began = m // that month's raw events were archived
		}
	}
	return began, nil
}

// firstKey is the first key with the prefix, at least minLen bytes past it.
func (s *Store) firstKey(ctx context.Context, prefix []byte, minLen int) ([]byte, bool, error) {
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, false, fmt.Errorf("reading the first %s key: %w", prefix, err)
	}
	var key []byte
	ok := it.First() && len(it.Key()) >= len(prefix)+minLen
	if ok {
		key = append(key, it.Key()...)
	}
	if err := it.Close(); err != nil {
		return nil, false, fmt.Errorf("reading the first %s key: %w", prefix, err)
	}
	return key, ok, nil
}

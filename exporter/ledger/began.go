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

// Began is where the store's history begins: its creation, or the start of the earliest month
// with usage when that is earlier (events are accepted up to 35 days late, so a backfill reaches
// back before the store existed). Month totals survive retention, so archived months count.
// Billing refuses periods that end before it: nothing can be known about them.
func (s *Store) Began(ctx context.Context) (time.Time, error) {
	began, err := s.Created()
	if err != nil {
		return time.Time{}, err
	}
	if err := s.Flush(ctx); err != nil {
		return time.Time{}, err
	}
	prefix := []byte(pPeriod)
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return time.Time{}, fmt.Errorf("reading the earliest month with usage: %w", err)
	}
	if it.First() && len(it.Key()) >= len(prefix)+4 {
		if first := monthStart(binary.BigEndian.Uint32(it.Key()[len(prefix):])); first.Before(began) {
			began = first
		}
	}
	if err := it.Close(); err != nil {
		return time.Time{}, fmt.Errorf("reading the earliest month with usage: %w", err)
	}
	return began, nil
}

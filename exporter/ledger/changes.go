package ledger

// Following what the ledger commits. State derived from raw events outside the ledger (the
// analytics insight index) stays exact without scanning the raw events again if it learns of
// every event committed since it was built: late events may land anywhere in the last 35 days,
// and the raw key space is ordered by event time, so without that a reader would have to scan it
// all to find them.
//
// A Changes attached to a store is told of every group commit by the writer goroutine, right after
// the commit, with what the writer already holds: each accepted event's key, type and tenant, and
// the stored form of the types the reader decodes. Nothing is read back from the store, so
// following costs ingestion an append per event. Group numbers are consecutive: a gap (or an
// overflow between two Takes) tells the reader to rebuild rather than silently miss events.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/usagemeter/usagemeter/exporter/event"
)

// EventKey is a stored raw event's position: its time (unix nanoseconds) and its sequence
// number, big-endian as in its e/ key, so that comparing keys orders events as the store does.
type EventKey [16]byte

// Time is the event's time.
func (k EventKey) Time() time.Time { return time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))).UTC() }

// Compare orders keys as the store orders the events: by time, then by arrival.
func (k EventKey) Compare(o EventKey) int { return bytes.Compare(k[:], o[:]) }

// eventKeyOf reads the position of an e/ key.
func eventKeyOf(k []byte) (EventKey, bool) {
	var ek EventKey
	if len(k) != len(pEvent)+len(ek) {
		return ek, false
	}
	copy(ek[:], k[len(pEvent):])
	return ek, true
}

// rawKey is the e/ key of a position.
func (k EventKey) rawKey() []byte { return append([]byte(pEvent), k[:]...) }

// LastGroup returns the number of the last group commit (0 before the first): the newest
// journal entry, or the checkpoint when every entry was flushed.
func (s *Store) LastGroup(ctx context.Context) (uint64, error) {
	// The newest entry first, then the checkpoint: a flush in between only raises the checkpoint,
	// so the answer is never older than the moment of the first read.
	var last uint64
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(pJournal), UpperBound: prefixEnd([]byte(pJournal))})
	if err != nil {
		return 0, fmt.Errorf("opening the journal: %w", err)
	}
	if it.Last() && len(it.Key()) == len(pJournal)+8 {
		last = binary.BigEndian.Uint64(it.Key()[len(pJournal):])
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("reading the journal: %w", err)
	}
	cp, err := s.getUint(keyCheckpoint)
	if err != nil {
		return 0, err
	}
	return max(last, cp), nil
}

// Change is one event committed to the store.
type Change struct {
	Key    EventKey
	Type   string
	Tenant string
	// Raw is the event's stored form (event.Decoder.DecodeStored, or Store.DecodeChange) for the
	// types named to NewChanges; nil for the others.
	Raw []byte
}

// Changes records the events committed to a store, for a reader that keeps derived state up to
// date (Take). Attach it to the store once open. It records nothing until Start, so a store whose
// reader never starts pays one mutex per group commit.
type Changes struct {
	store atomic.Pointer[Store]
	max   int
	raw   map[string]bool

	mu      sync.Mutex
	on      bool   // recording (Start called, nothing lost since)
	lost    bool   // a group was missed or the buffer overflowed: the reader must rebuild
	next    uint64 // the group expected next
	changes []Change
	taken   int // how many changes the last Take returned: the next buffer's capacity
}

// NewChanges records at most maxEvents events between two Takes; past that it gives up and the
// reader rebuilds. maxEvents <= 0 means 1<<20. The stored form is kept of the events of rawTypes.
func NewChanges(maxEvents int, rawTypes ...string) *Changes {
	if maxEvents <= 0 {
		maxEvents = 1 << 20
	}
	c := &Changes{max: maxEvents, raw: map[string]bool{}}
	for _, t := range rawTypes {
		c.raw[t] = true
	}
	return c
}

// Attach has the store tell c of every group commit from now on.
func (c *Changes) Attach(s *Store) {
	c.store.Store(s)
	s.changes.Store(c)
}

// committed records a committed group's accepted events; the writer goroutine calls it right
// after the commit, with the group in key order.
func (c *Changes) committed(group uint64, acc []*prepared) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !c.on || group < c.next:
		return // not recording, or committed before Start: the reader's scan has it
	case group > c.next || len(c.changes)+len(acc) > c.max:
		c.lose()
		return
	}
	if c.changes == nil {
		// Sized as the last Take: growing from empty would copy the buffer a dozen times.
		c.changes = make([]Change, 0, max(c.taken+c.taken/4, len(acc)))
	}
	// The request's memory is not ours to keep: the stored forms wanted are copied, into one
	// buffer for the group.
	n := 0
	for _, p := range acc {
		if c.raw[p.typ] {
			n += len(p.raw)
		}
	}
	var raws []byte
	if n > 0 {
		raws = make([]byte, 0, n)
	}
	for _, p := range acc {
		ch := Change{Key: EventKey(p.evKey[len(pEvent):]), Type: p.typ, Tenant: p.tenant}
		if c.raw[p.typ] {
			start := len(raws)
			raws = append(raws, p.raw...)
			ch.Raw = raws[start:len(raws):len(raws)]
		}
		c.changes = append(c.changes, ch)
	}
	c.next++
}

// Start begins recording at the next group commit, dropping whatever was recorded. Every event
// committed before Start returns is in the store: a reader scans it after Start, so an event
// committed in between may be both scanned and recorded (readers apply events idempotently).
func (c *Changes) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.on, c.lost, c.changes = false, false, nil
	s := c.store.Load()
	if s == nil {
		return fmt.Errorf("following commits: no store attached")
	}
	last, err := s.LastGroup(ctx)
	if err != nil {
		return fmt.Errorf("following commits: %w", err)
	}
	c.next, c.on = last+1, true
	return nil
}

// Take returns the events committed since Start or the previous Take (in commit order, each
// group's in key order), and whether they are complete. When they are not (recording overflowed
// or missed a group), the reader must Start again and rebuild.
func (c *Changes) Take(ctx context.Context) ([]Change, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.store.Load() == nil || !c.on || c.lost {
		return nil, false, ctx.Err()
	}
	out := c.changes
	c.changes, c.taken = nil, len(out)
	return out, true, nil
}

// DecodeChange decodes a change's stored form (Raw must be set).
func (s *Store) DecodeChange(ch Change) (event.Event, error) {
	ev, err := s.decoder.DecodeStored(ch.Raw, ch.Key.Time())
	if err != nil {
		return event.Event{}, fmt.Errorf("committed event %x: %w", ch.Key[:], err)
	}
	return ev, nil
}

// lose gives up recording until the next Start.
func (c *Changes) lose() { c.on, c.lost, c.changes = false, true, nil }

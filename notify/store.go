package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Key space, all under n/ in the ledger's Pebble store (docs/architecture.md):
//
//	n/r/<tenant>\x00<rule>            the rule's current version (JSON)
//	n/h/<rule>\x00<version BE>        every version of a rule, kept (deliveries point at one)
//	n/f/<rule>\x00<period>            fired: the event id; the once-per-rule-and-period key
//	n/e/<event>                       the outbox event (JSON)
//	n/d/<delivery>                    the delivery's state (JSON)
//	n/q/<due unix-nanos BE><delivery> pending deliveries, by when they are due
//	n/a/<delivery>\x00<attempt BE>    the delivery log: one entry per attempt
//	n/k/<event>                       the event's acknowledgement (who, when)
const (
	pRule     = "n/r/"
	pVersion  = "n/h/"
	pFired    = "n/f/"
	pEvent    = "n/e/"
	pDelivery = "n/d/"
	pQueue    = "n/q/"
	pAttempt  = "n/a/"
	pAck      = "n/k/"
	sep       = "\x00"
)

// Store keeps rules, the outbox and the delivery log in the ledger's Pebble database. Writes are
// synced: a rule change or a fired event acknowledged is on disk.
type Store struct {
	db *pebble.DB
	// mu serialises read-modify-write of rules and deliveries (one process owns the store).
	mu sync.Mutex
	// rulesGen counts rule changes: the evaluator re-reads the rules only when it moved.
	rulesGen atomic.Uint64
}

// RulesGeneration changes whenever a rule is stored or deleted.
func (s *Store) RulesGeneration() uint64 { return s.rulesGen.Load() }

// NewStore uses db (the ledger's).
func NewStore(db *pebble.DB) *Store { return &Store{db: db} }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func ruleKey(tenant, id string) []byte { return []byte(pRule + tenant + sep + id) }
func versionKey(id string, v int64) []byte {
	return append([]byte(pVersion+id+sep), u64(uint64(v))...)
}
func firedKey(rule, period string) []byte { return []byte(pFired + rule + sep + period) }
func eventKey(id string) []byte           { return []byte(pEvent + id) }
func deliveryKey(id string) []byte        { return []byte(pDelivery + id) }
func queueKey(due time.Time, id string) []byte {
	return append(append([]byte(pQueue), u64(uint64(due.UnixNano()))...), id...)
}
func attemptKey(id string, n int) []byte {
	return append([]byte(pAttempt+id+sep), u64(uint64(n))...)
}

func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func (s *Store) getJSON(key []byte, into any) error {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("reading %q: %w", key, err)
	}
	defer closer.Close()
	if err := json.Unmarshal(v, into); err != nil {
		return fmt.Errorf("decoding %q: %w", key, err)
	}
	return nil
}

func setJSON(b *pebble.Batch, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %q: %w", key, err)
	}
	return b.Set(key, data, nil)
}

func (s *Store) scan(ctx context.Context, lo, hi []byte, fn func(k, v []byte) (bool, error)) error {
	it, err := s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("scanning: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			it.Close()
			return err
		}
		more, err := fn(it.Key(), it.Value())
		if err != nil || !more {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("scanning: %w", err)
	}
	return nil
}

func newID(prefix string) (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating an id: %w", err)
	}
	return prefix + hex.EncodeToString(b), nil
}

// PutRule stores a new rule (r.ID empty) or a new version of an existing one of the same
// tenant. Webhook channels get a fresh secret, except a channel kept at the same index with the
// same URL, which keeps its secret. It returns the stored rule, with the secrets.
func (s *Store) PutRule(r Rule, now time.Time) (Rule, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var prev Rule
	if r.ID == "" {
		id, err := newID("rule_")
		if err != nil {
			return Rule{}, err
		}
		r.ID, r.Created = id, now.UTC()
	} else {
		if err := s.getJSON(ruleKey(r.Tenant, r.ID), &prev); err != nil {
			return Rule{}, err
		}
		r.Version, r.Created = prev.Version, prev.Created
	}
	r = r.clone()
	var secretErr error
	r.eachChannel(func(tier, i int, c *Channel) {
		c.Secret = ""
		if c.Type != ChannelWebhook || secretErr != nil {
			return
		}
		if p, ok := prev.channelAt(tier, i); ok && p.Type == ChannelWebhook && p.URL == c.URL {
			c.Secret = p.Secret
			return
		}
		c.Secret, secretErr = NewSecret()
	})
	if secretErr != nil {
		return Rule{}, secretErr
	}
	r.Version++
	r.UpdatedAt = now.UTC()
	b := s.db.NewBatch()
	defer b.Close()
	if err := setJSON(b, ruleKey(r.Tenant, r.ID), r); err != nil {
		return Rule{}, err
	}
	if err := setJSON(b, versionKey(r.ID, r.Version), r); err != nil {
		return Rule{}, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return Rule{}, fmt.Errorf("storing rule %s: %w", r.ID, err)
	}
	s.rulesGen.Add(1)
	return r, nil
}

// DeleteRule removes a rule from evaluation; its versions, events and deliveries stay (a
// tombstone version records the deletion).
func (s *Store) DeleteRule(tenant, id, by string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r Rule
	if err := s.getJSON(ruleKey(tenant, id), &r); err != nil {
		return err
	}
	r.Version++
	r.Deleted, r.UpdatedAt, r.UpdatedBy = true, now.UTC(), by
	b := s.db.NewBatch()
	defer b.Close()
	if err := setJSON(b, versionKey(r.ID, r.Version), r); err != nil {
		return err
	}
	if err := b.Delete(ruleKey(tenant, id), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("deleting rule %s: %w", id, err)
	}
	s.rulesGen.Add(1)
	return nil
}

// Rule returns a tenant's rule.
func (s *Store) Rule(tenant, id string) (Rule, error) {
	var r Rule
	return r, s.getJSON(ruleKey(tenant, id), &r)
}

// RuleVersion returns one version of a rule.
func (s *Store) RuleVersion(id string, v int64) (Rule, error) {
	var r Rule
	return r, s.getJSON(versionKey(id, v), &r)
}

// Versions returns every version of a tenant's rule, oldest first.
func (s *Store) Versions(ctx context.Context, tenant, id string) ([]Rule, error) {
	var out []Rule
	p := []byte(pVersion + id + sep)
	err := s.scan(ctx, p, prefixEnd(p), func(_, v []byte) (bool, error) {
		var r Rule
		if err := json.Unmarshal(v, &r); err != nil {
			return false, fmt.Errorf("decoding a rule version: %w", err)
		}
		if r.Tenant == tenant {
			out = append(out, r)
		}
		return true, nil
	})
	if err == nil && len(out) == 0 {
		err = ErrNotFound
	}
	return out, err
}

// Rules returns the rules of a tenant, or of every tenant when tenant is "".
func (s *Store) Rules(ctx context.Context, tenant string) ([]Rule, error) {
	p := []byte(pRule)
	if tenant != "" {
		p = []byte(pRule + tenant + sep)
	}
	var out []Rule
	err := s.scan(ctx, p, prefixEnd(p), func(_, v []byte) (bool, error) {
		var r Rule
		if err := json.Unmarshal(v, &r); err != nil {
			return false, fmt.Errorf("decoding a rule: %w", err)
		}
		out = append(out, r)
		return true, nil
	})
	return out, err
}

// eventID is the event of a rule in a period: the same on every evaluation, so that writing it
// twice (a crash between the ledger's commit and the outbox write, then re-evaluation at start)
// writes the same keys.
func eventID(rule, period string) string {
	h := sha256.Sum256([]byte(rule + sep + period))
	return "evt_" + hex.EncodeToString(h[:12])
}

// HasFired reports whether a rule already fired for a key (period, invoice, scheduled time).
func (s *Store) HasFired(rule, period string) (bool, error) {
	_, closer, err := s.db.Get(firedKey(rule, period))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the fired marker of %s: %w", rule, err)
	}
	closer.Close()
	return true, nil
}

// Fire writes an event and one pending delivery per channel of its rule version, in one synced
// batch, unless the rule already fired in the period. It reports whether it wrote.
func (s *Store) Fire(r Rule, ev Event, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fk := firedKey(r.ID, ev.Period)
	if _, closer, err := s.db.Get(fk); err == nil {
		closer.Close()
		return false, nil
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return false, fmt.Errorf("reading %q: %w", fk, err)
	}
	ev.ID = eventID(r.ID, ev.Period)
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(fk, []byte(ev.ID), nil); err != nil {
		return false, err
	}
	if err := setJSON(b, eventKey(ev.ID), ev); err != nil {
		return false, err
	}
	for i, tg := range r.Targets() {
		due := now.UTC().Add(tg.After)
		d := Delivery{ID: fmt.Sprintf("%s.%d", ev.ID, i), EventID: ev.ID, RuleID: r.ID, Tenant: r.Tenant, Channel: i, Tier: tg.Tier,
			Type: tg.Channel.Type, State: StatePending, Created: now.UTC(), Since: due, NextAt: due}
		if err := setJSON(b, deliveryKey(d.ID), d); err != nil {
			return false, err
		}
		if err := b.Set(queueKey(d.NextAt, d.ID), nil, nil); err != nil {
			return false, err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return false, fmt.Errorf("writing event %s to the outbox: %w", ev.ID, err)
	}
	return true, nil
}

// Event returns an outbox event.
func (s *Store) Event(id string) (Event, error) {
	var ev Event
	return ev, s.getJSON(eventKey(id), &ev)
}

// Delivery returns a delivery.
func (s *Store) Delivery(id string) (Delivery, error) {
	var d Delivery
	return d, s.getJSON(deliveryKey(id), &d)
}

// Due returns up to n deliveries due at now, earliest first.
func (s *Store) Due(ctx context.Context, now time.Time, n int) ([]string, time.Time, error) {
	var ids []string
	var next time.Time
	err := s.scan(ctx, []byte(pQueue), prefixEnd([]byte(pQueue)), func(k, _ []byte) (bool, error) {
		if len(k) < len(pQueue)+8 {
			return true, nil
		}
		due := time.Unix(0, int64(binary.BigEndian.Uint64(k[len(pQueue):])))
		if due.After(now) || len(ids) >= n {
			next = due
			return false, nil
		}
		ids = append(ids, string(k[len(pQueue)+8:]))
		return true, nil
	})
	return ids, next, err
}

// Pending counts the deliveries not yet delivered nor dead.
func (s *Store) Pending(ctx context.Context) (int, error) {
	n := 0
	err := s.scan(ctx, []byte(pQueue), prefixEnd([]byte(pQueue)), func(_, _ []byte) (bool, error) { n++; return true, nil })
	return n, err
}

// Record logs an attempt and stores the delivery's new state in one synced batch, moving it in
// the queue (or out of it once delivered or dead). A delivery replayed while the attempt was in
// flight keeps its replayed state: only the attempt is logged.
func (s *Store) Record(prev, next Delivery, a Attempt) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	var cur Delivery
	if err := s.getJSON(deliveryKey(prev.ID), &cur); err != nil {
		return err
	}
	if cur.Replays != prev.Replays {
		if err := setJSON(b, attemptKey(next.ID, a.N), a); err != nil {
			return err
		}
		return b.Commit(pebble.Sync)
	}
	if err := b.Delete(queueKey(prev.NextAt, prev.ID), nil); err != nil {
		return err
	}
	if err := setJSON(b, attemptKey(next.ID, a.N), a); err != nil {
		return err
	}
	if err := setJSON(b, deliveryKey(next.ID), next); err != nil {
		return err
	}
	if next.State == StatePending {
		if err := b.Set(queueKey(next.NextAt, next.ID), nil, nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("recording delivery %s: %w", next.ID, err)
	}
	return nil
}

// Replay puts a delivery of a tenant back in the queue, due now, whatever its state. Its
// idempotency key does not change: a receiver that already has it may drop it.
func (s *Store) Replay(tenant, id string, now time.Time) (Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d Delivery
	if err := s.getJSON(deliveryKey(id), &d); err != nil {
		return d, err
	}
	if tenant != "" && d.Tenant != tenant {
		return Delivery{}, ErrNotFound
	}
	b := s.db.NewBatch()
	defer b.Close()
	if d.State == StatePending {
		if err := b.Delete(queueKey(d.NextAt, d.ID), nil); err != nil {
			return d, err
		}
	}
	d.State, d.NextAt, d.Since, d.LastError = StatePending, now.UTC(), now.UTC(), ""
	d.Replays++
	if err := setJSON(b, deliveryKey(d.ID), d); err != nil {
		return d, err
	}
	if err := b.Set(queueKey(d.NextAt, d.ID), nil, nil); err != nil {
		return d, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return d, fmt.Errorf("replaying delivery %s: %w", id, err)
	}
	return d, nil
}

// Deliveries lists deliveries of a tenant ("" for all), optionally of one state: the newest
// (by creation) first, at most limit (<= 0: all).
func (s *Store) Deliveries(ctx context.Context, tenant, state string, limit int) ([]Delivery, error) {
	var out []Delivery
	err := s.scan(ctx, []byte(pDelivery), prefixEnd([]byte(pDelivery)), func(_, v []byte) (bool, error) {
		var d Delivery
		if err := json.Unmarshal(v, &d); err != nil {
			return false, fmt.Errorf("decoding a delivery: %w", err)
		}
		if (tenant == "" || d.Tenant == tenant) && (state == "" || d.State == state) {
			out = append(out, d)
		}
		return true, nil
	})
	slices.SortStableFunc(out, func(a, b Delivery) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, err
}

// Attempts returns a delivery's log.
func (s *Store) Attempts(ctx context.Context, id string) ([]Attempt, error) {
	var out []Attempt
	p := []byte(pAttempt + id + sep)
	err := s.scan(ctx, p, prefixEnd(p), func(_, v []byte) (bool, error) {
		var a Attempt
		if err := json.Unmarshal(v, &a); err != nil {
			return false, fmt.Errorf("decoding an attempt: %w", err)
		}
		out = append(out, a)
		return true, nil
	})
	return out, err
}

// Ack is an event's acknowledgement: it stops the escalation tiers not yet due.
type Ack struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// Acknowledge records that someone took charge of a tenant's event. A second acknowledgement
// keeps the first and returns it.
func (s *Store) Acknowledge(tenant, eventID, by string, now time.Time) (Ack, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ev Event
	if err := s.getJSON(eventKey(eventID), &ev); err != nil {
		return Ack{}, err
	}
	if ev.Tenant != tenant {
		return Ack{}, ErrNotFound
	}
	var a Ack
	switch err := s.getJSON([]byte(pAck+eventID), &a); {
	case err == nil:
		return a, nil
	case !errors.Is(err, ErrNotFound):
		return Ack{}, err
	}
	a = Ack{By: by, At: now.UTC()}
	b := s.db.NewBatch()
	defer b.Close()
	if err := setJSON(b, []byte(pAck+eventID), a); err != nil {
		return Ack{}, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return Ack{}, fmt.Errorf("acknowledging %s: %w", eventID, err)
	}
	return a, nil
}

// Acknowledged returns an event's acknowledgement, if any.
func (s *Store) Acknowledged(eventID string) (Ack, bool, error) {
	var a Ack
	switch err := s.getJSON([]byte(pAck+eventID), &a); {
	case err == nil:
		return a, true, nil
	case errors.Is(err, ErrNotFound):
		return Ack{}, false, nil
	default:
		return Ack{}, false, err
	}
}

// Cancel takes a pending delivery out of the queue without sending it.
func (s *Store) Cancel(prev Delivery, reason string) (Delivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cur Delivery
	if err := s.getJSON(deliveryKey(prev.ID), &cur); err != nil {
		return cur, err
	}
	if cur.State != StatePending || cur.Replays != prev.Replays {
		return cur, nil // replayed or finished meanwhile
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(queueKey(cur.NextAt, cur.ID), nil); err != nil {
		return cur, err
	}
	cur.State, cur.LastError = StateCancelled, reason
	if err := setJSON(b, deliveryKey(cur.ID), cur); err != nil {
		return cur, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return cur, fmt.Errorf("cancelling delivery %s: %w", cur.ID, err)
	}
	return cur, nil
}

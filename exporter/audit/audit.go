// Package audit keeps the audit trail: an append-only, hash-chained log of who did what to
// which tenant and what the policy decided, stored under the x/ prefix of the ledger's Pebble
// database. Each entry's hash covers the previous entry's hash, so Verify finds any changed,
// deleted, inserted or reordered entry and names the first one.
package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Key space (docs/architecture.md: x/ belongs to this package).
var (
	entryPrefix = []byte("x/e/") // x/e/<seq BE>: hash(32) || entry JSON
	entryEnd    = []byte("x/e0") // first key after every entry key
	headKey     = []byte("x/head")
)

// Entry is one audited request.
type Entry struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Subject string    `json:"subject"`
	Kind    string    `json:"kind"` // principal kind: api_key, token, jwt, anonymous, none
	Action  string    `json:"action"`
	Method  string    `json:"method"`
	Path    string    `json:"path"`
	Tenant  string    `json:"tenant"`
	// Query is the request's query string (capped, credential-like parameters removed): what
	// was asked, e.g. group_by=user. Empty in entries written before it was recorded.
	Query string `json:"query,omitempty"`
	// Checked lists, comma-separated, the further actions the handler was allowed (e.g.
	// usage.read_users for a per-user read), so a per-user read is told apart from an aggregate
	// one. A string, not a slice, so that entries stay comparable.
	Checked string `json:"checked,omitempty"`
	Allow   bool   `json:"allow"`
	Reason  string `json:"reason"`
	Status  int    `json:"status"` // HTTP status answered
	Prev    string `json:"prev"`   // hash of the previous entry, hex; zeros for the first
	// Hash is this entry's hash, hex. It is stored beside the entry, not inside what it hashes.
	Hash string `json:"hash,omitempty"`
}

// Options configure a Log.
type Options struct {
	// Key, when set, makes the chain an HMAC chain: without the key nobody can recompute it,
	// so even someone able to write the database cannot rewrite history unnoticed. Without a
	// key the chain still catches any edit that does not recompute every later hash.
	Key    []byte
	Logger *slog.Logger
	// MaxBatch bounds how many appends share one commit.
	MaxBatch int
	// MaxFieldBytes bounds each text field of an entry (Bound); DefaultMaxFieldBytes when 0.
	MaxFieldBytes int
}

// Log appends to and reads the audit trail. Appends from any number of goroutines are grouped
// by a single writer into one batch and one fsync.
type Log struct {
	db     *pebble.DB
	key    []byte
	logger *slog.Logger
	max    int
	field  int

	reqs chan appendReq
	stop chan struct{}
	done chan struct{}

	// Owned by the writer goroutine after Open.
	seq  uint64
	prev [32]byte
}

type appendReq struct {
	e     Entry
	reply chan appendResult
}

type appendResult struct {
	e   Entry
	err error
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit log closed")

// Open starts the log on db (the ledger's database; this package writes with Set only).
func Open(db *pebble.DB, opts Options) (*Log, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1024
	}
	if opts.MaxFieldBytes <= 0 {
		opts.MaxFieldBytes = DefaultMaxFieldBytes
	}
	l := &Log{
		db: db, key: opts.Key, logger: opts.Logger, max: opts.MaxBatch, field: opts.MaxFieldBytes,
		reqs: make(chan appendReq, opts.MaxBatch), stop: make(chan struct{}), done: make(chan struct{}),
	}
	h, err := readHead(db)
	if err != nil {
		return nil, err
	}
	last, err := lastSeq(db)
	if err != nil {
		return nil, err
	}
	// Never overwrite an entry: continue after the highest sequence number stored. Keep the
	// head's hash as the link even when it disagrees with the entries, so the break stays
	// visible to Verify instead of being papered over by a fresh, consistent-looking link.
	l.seq, l.prev = max(h.Seq, last), h.Hash
	if last != h.Seq {
		l.logger.Error("audit chain head disagrees with the stored entries; run usagectl audit verify", "head", h.Seq, "last_entry", last)
	}
	go l.writer()
	return l, nil
}

// Close stops the writer after the appends already queued are committed.
func (l *Log) Close() error {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
	return nil
}

// Append records e durably and returns it with its Seq, Time (when unset), Prev and Hash.
// Text fields longer than Options.MaxFieldBytes are cut and marked (Bound).
// It returns once the entry is synced to disk.
func (l *Log) Append(ctx context.Context, e Entry) (Entry, error) {
	e.bound(l.field)
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	r := appendReq{e: e, reply: make(chan appendResult, 1)}
	select {
	case l.reqs <- r:
	case <-l.stop:
		return Entry{}, ErrClosed
	case <-ctx.Done():
		return Entry{}, fmt.Errorf("audit append: %w", ctx.Err())
	}
	// Once queued the entry will be written whatever the caller does; waiting for the
	// result still honours the caller's deadline.
	select {
	case res := <-r.reply:
		return res.e, res.err
	case <-l.done:
		// The writer drains the queue before it stops, but a send can slip in after the drain.
		select {
		case res := <-r.reply:
			return res.e, res.err
		default:
			return Entry{}, ErrClosed
		}
	case <-ctx.Done():
		return Entry{}, fmt.Errorf("audit append: %w", ctx.Err())
	}
}

func (l *Log) writer() {
	defer close(l.done)
	pending := make([]appendReq, 0, l.max)
	for {
		pending = pending[:0]
		select {
		case r := <-l.reqs:
			pending = append(pending, r)
		case <-l.stop:
			// Drain what was queued before Close.
			for {
				select {
				case r := <-l.reqs:
					pending = append(pending, r)
					continue
				default:
				}
				break
			}
			if len(pending) > 0 {
				l.commit(pending)
			}
			return
		}
		// Group commit: take everything already waiting, up to MaxBatch.
	gather:
		for len(pending) < l.max {
			select {
			case r := <-l.reqs:
				pending = append(pending, r)
			default:
				break gather
			}
		}
		l.commit(pending)
	}
}

// commit writes a group of entries in one synced batch. On failure the chain state is left as
// it was, so the next group continues from the last durable entry.
func (l *Log) commit(reqs []appendReq) {
	b := l.db.NewBatch()
	defer b.Close()
	seq, prev := l.seq, l.prev
	out := make([]Entry, len(reqs))
	for i, r := range reqs {
		e := r.e
		seq++
		e.Seq, e.Prev, e.Hash = seq, hex.EncodeToString(prev[:]), ""
		body, err := json.Marshal(e)
		if err != nil { // cannot happen: Entry has only plain fields
			l.fail(reqs, fmt.Errorf("audit encode: %w", err))
			return
		}
		sum := l.sum(body)
		if err := b.Set(entryKey(seq), append(sum[:], body...), nil); err != nil {
			l.fail(reqs, fmt.Errorf("audit batch: %w", err))
			return
		}
		e.Hash = hex.EncodeToString(sum[:])
		out[i], prev = e, sum
	}
	if err := b.Set(headKey, encodeHead(head{Seq: seq, Hash: prev}), nil); err != nil {
		l.fail(reqs, fmt.Errorf("audit batch: %w", err))
		return
	}
	if err := b.Commit(pebble.Sync); err != nil {
		l.fail(reqs, fmt.Errorf("audit commit: %w", err))
		return
	}
	l.seq, l.prev = seq, prev
	for i, r := range reqs {
		r.reply <- appendResult{e: out[i]}
	}
}

func (l *Log) fail(reqs []appendReq, err error) {
	l.logger.Error("audit entries not written", "count", len(reqs), "err", err)
	for _, r := range reqs {
		r.reply <- appendResult{err: err}
	}
}

func (l *Log) sum(body []byte) [32]byte { return chainSum(l.key, body) }

func chainSum(key, body []byte) [32]byte {
	var h hash.Hash
	if key != nil {
		h = hmac.New(sha256.New, key)
	} else {
		h = sha256.New()
	}
	h.Write(body)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func entryKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), entryPrefix...), seq)
}

// head is the last entry's sequence number and hash, written with every group: it pins the
// end of the chain, so deleting the newest entries is detected too.
type head struct {
	Seq  uint64
	Hash [32]byte
}

func encodeHead(h head) []byte {
	return append(binary.BigEndian.AppendUint64(nil, h.Seq), h.Hash[:]...)
}

func readHead(r pebble.Reader) (head, error) {
	v, closer, err := r.Get(headKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return head{}, nil
	}
	if err != nil {
		return head{}, fmt.Errorf("read audit head: %w", err)
	}
	defer closer.Close()
	if len(v) != 8+32 {
		return head{}, fmt.Errorf("audit head: %d bytes, want 40", len(v))
	}
	var h head
	h.Seq = binary.BigEndian.Uint64(v)
	copy(h.Hash[:], v[8:])
	return h, nil
}

// lastSeq is the highest entry sequence number stored, 0 when none.
func lastSeq(db *pebble.DB) (uint64, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: entryPrefix, UpperBound: entryEnd})
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	k := it.Key()
	if len(k) != len(entryPrefix)+8 {
		return 0, fmt.Errorf("audit: foreign key %q in the audit key space", k)
	}
	return binary.BigEndian.Uint64(k[len(entryPrefix):]), nil
}

// List returns up to limit entries with Seq > afterSeq, oldest first; page on with the last
// Seq returned.
func (l *Log) List(ctx context.Context, afterSeq uint64, limit int) ([]Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	it, err := l.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: entryKey(afterSeq + 1), UpperBound: entryEnd})
	if err != nil {
		return nil, fmt.Errorf("audit list: %w", err)
	}
	defer it.Close()
	var out []Entry
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("audit list: %w", err)
		}
		e, _, err := decode(it.Key(), it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("audit list: %w", err)
	}
	return out, nil
}

// decode reads a stored entry; sum is the hash stored with it.
func decode(k, v []byte) (Entry, [32]byte, error) {
	var e Entry
	var sum [32]byte
	if len(k) != len(entryPrefix)+8 || len(v) < 32 {
		return e, sum, fmt.Errorf("audit entry %x: malformed", k)
	}
	copy(sum[:], v)
	if err := json.Unmarshal(v[32:], &e); err != nil {
		return e, sum, fmt.Errorf("audit entry %d: %w", binary.BigEndian.Uint64(k[len(entryPrefix):]), err)
	}
	e.Hash = hex.EncodeToString(sum[:])
	return e, sum, nil
}

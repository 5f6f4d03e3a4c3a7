// Package ledger is usagemeter's exact, durable, idempotent store of usage, embedded in the
// exporter (Pebble, pure Go). It keeps every raw event, deduplicates on (source, id), keeps
// hourly rollups for any-period queries, all-time totals per metric series, and calendar-month
// totals for quotas and invoices. All of it is written in one atomic, fsynced batch per group of
// concurrent requests: a request is acknowledged only after that batch is durable.
package ledger

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/meter"
)

// ErrClosed is returned for commits after Close.
var ErrClosed = errors.New("ledger is closed")

// Options configure a Store.
type Options struct {
	Path   string
	Meters []meter.Def
	// SeriesLimit caps the series of each metric (see docs/architecture.md).
	SeriesLimit int
	// PerUserLabels keeps a user label on the metric series of meters that keep users.
	PerUserLabels bool
	// CacheBytes is the block cache (default 256 MiB).
	CacheBytes int64
	// FlushInterval is how often derived usage is flushed from memory (default 5s). Longer folds
	// more changes into each key before writing it (0.72 keys per event at 2 s and 100k events/s
	// of the simulator's mix, 0.36 at 5 s) but holds more in memory and replays more after a crash.
	FlushInterval time.Duration
	// MaxGroupEvents bounds the events committed in one group (one fsync).
	MaxGroupEvents int
	Logger         *slog.Logger
	// OnCommit, when set, is told the duration and size of every group commit.
	OnCommit func(d time.Duration, events int)
}

// Result is the outcome of committing one request.
type Result struct {
	Accepted, Duplicates int
}

type commitReq struct {
	events []prepared
	done   chan commitDone
}

type commitDone struct {
	res Result
	err error
}

// Store is the ledger.
type Store struct {
	db     *pebble.DB
	opts   Options
	log    *slog.Logger
	meters []*cmeter
	byName map[string]*cmeter
	byType map[string][]cbinding

	reqs    chan *commitReq
	stop    chan struct{}
	stopped chan struct{}
	closing atomic.Bool
	seq     atomic.Uint64
	closeMu sync.RWMutex // held for reading by Commit, for writing by Close

	mu     sync.RWMutex // guards the mirror below
	mirror mirror

	seen        *seenFilter // owned by the writer goroutine
	pending     pendingState
	groupSeq    uint64 // the last journal entry written; owned by the writer goroutine
	gbuf        groupBuffers
	flushReqs   chan chan chan error
	turns       chan writerTurn // work that must run alone, in the writer goroutine (exclusive)
	running     bool            // the writer has started; set by Open, read-only after
	flushes     chan *flushJob  // to the flusher goroutine (pending.go)
	flusherDone chan struct{}
	decoder     *event.Decoder          // decodes stored events; shared: its parsers come from a pool
	changes     atomic.Pointer[Changes] // told of every group commit (changes.go)
	crashed     bool                    // tests: stop as a crash would, without the final flush
}

// Open opens (creating if needed) the ledger under opts.Path, runs schema migrations, loads the
// in-memory mirror of totals, and starts the writer.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SeriesLimit <= 0 {
		opts.SeriesLimit = 10000
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = 256 << 20
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 5 * time.Second
	}
	if opts.MaxGroupEvents <= 0 {
		opts.MaxGroupEvents = 32768
	}
	if len(opts.Meters) == 0 {
		opts.Meters = meter.Defaults()
	}
	// Every dedupe lookup reads the index and filter blocks of the tables it may hit: keep
	// them in memory, or each lookup is a pread (Pebble's default cache is 8 MiB).
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref()
	po := &pebble.Options{
		Cache:        cache,
		Merger:       merger,
		MemTableSize: 64 << 20,
		// Fewer, larger compactions: the write path is dominated by compaction of fresh data.
		L0CompactionThreshold: 8,
		LBaseMaxBytes:         512 << 20,
		Logger:                quietLogger{opts.Logger},
	}
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	po.Levels[0].FilterType = pebble.TableFilter
	po.EnsureDefaults()
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		po.Levels[i].FilterType = pebble.TableFilter
	}
	if err := refuseUnfinishedRestore(opts.Path); err != nil {
		return nil, err
	}
	db, err := pebble.Open(opts.Path, po)
	if err != nil {
		return nil, fmt.Errorf("opening ledger at %s: %w", opts.Path, err)
	}
	// Only now, holding the store's lock: another process may be taking a backup of it.
	if stale, err := removeStaleCheckpoints(opts.Path); err != nil {
		db.Close()
		return nil, err
	} else if len(stale) > 0 {
		opts.Logger.Warn("removed the checkpoints of backups that did not finish (the process stopped during a backup)", "checkpoints", stale)
	}
	s := &Store{
		db:          db,
		opts:        opts,
		log:         opts.Logger,
		reqs:        make(chan *commitReq, 256),
		flushReqs:   make(chan chan chan error),
		turns:       make(chan writerTurn),
		flushes:     make(chan *flushJob),
		flusherDone: make(chan struct{}),
		pending:     newPending(),
		gbuf:        groupBuffers{inGroup: map[[16]byte]struct{}{}, newSer: map[keyHash]*Series{}, admitted: map[string]int{}},
		stop:        make(chan struct{}),
		stopped:     make(chan struct{}),
	}
	s.meters, s.byType = compile(opts.Meters, opts.PerUserLabels)
	s.decoder = &event.Decoder{Custom: meter.CustomEventTypes(opts.Meters)}
	s.byName = map[string]*cmeter{}
	for _, m := range s.meters {
		s.byName[m.Name] = m
	}
	// Sequence numbers only need to be unique per event time; starting from the clock keeps
	// them unique across restarts without reading anything back.
	s.seq.Store(uint64(time.Now().UnixNano()))
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.loadMirror(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.replayJournal(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.loadSeen(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("loading the dedupe filter: %w", err)
	}
	s.running = true
	go s.flusher()
	go s.writer()
	return s, nil
}

// writerTurn is work to run in the writer goroutine with nothing beside it.
type writerTurn struct {
	fn   func() error
	done chan error
}

// exclusive runs fn with nothing else changing the store's derived state: no commit and no flush
// beside it. Once the writer runs, fn runs in the writer goroutine after every pending change is
// flushed; commits queue meanwhile.
func (s *Store) exclusive(ctx context.Context, fn func() error) error {
	if !s.running {
		return fn()
	}
	turn := writerTurn{fn: fn, done: make(chan error, 1)}
	select {
	case s.turns <- turn:
	case <-s.stopped:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-turn.done // fn watches ctx itself
}

// DB gives other packages of the exporter (audit, billing) the same database, under their own
// key prefixes. They must not use the merge operator.
func (s *Store) DB() *pebble.DB { return s.db }

// Meters returns the meter definitions in force.
func (s *Store) Meters() []meter.Def { return s.opts.Meters }

// Close stops the writer after the commits in flight, then closes the database.
func (s *Store) Close() error {
	if s.closing.Swap(true) {
		return nil
	}
	s.closeMu.Lock() // waits for every Commit that already entered
	close(s.stop)
	<-s.stopped
	s.closeMu.Unlock()
	return s.db.Close()
}

// Commit durably stores a request's events, all or nothing, and reports how many were new and
// how many were duplicates of events stored before (or earlier in the same request).
func (s *Store) Commit(ctx context.Context, events []event.Event) (Result, error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closing.Load() {
		return Result{}, ErrClosed
	}
	req := &commitReq{events: make([]prepared, len(events)), done: make(chan commitDone, 1)}
	base := s.seq.Add(uint64(len(events))) - uint64(len(events))
	a := &arena{}
	for i := range events {
		req.events[i] = s.prepare(&events[i], base+uint64(i), a)
	}
	select {
	case s.reqs <- req:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	// Once queued the request is committed or failed as a whole; waiting ignores ctx so that a
	// client that went away cannot make us report a stored event as lost.
	d := <-req.done
	return d.res, d.err
}

func (s *Store) writer() {
	defer close(s.stopped)
	tick := time.NewTicker(s.opts.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case first := <-s.reqs:
			group := []*commitReq{first}
			n := len(first.events)
		drain:
			for n < s.opts.MaxGroupEvents {
				select {
				case r := <-s.reqs:
					group = append(group, r)
					n += len(r.events)
				default:
					break drain
				}
			}
			s.commitGroup(group)
			if s.pending.size() > maxPendingKeys {
				s.startFlush(false)
			}
		case reply := <-s.flushReqs:
			reply <- s.startFlush(false)
		case turn := <-s.turns:
			// The flusher writes in order: once this flush is written, so is every earlier one,
			// and nothing is left for it to write while fn runs.
			if err := <-s.startFlush(false); err != nil {
				turn.done <- fmt.Errorf("flushing derived usage first: %w", err)
				continue
			}
			turn.done <- turn.fn()
		case <-tick.C:
			s.startFlush(false)
		case <-s.stop:
			// Commit what was queued before Close took the lock, then flush everything.
			for {
				select {
				case r := <-s.reqs:
					s.commitGroup([]*commitReq{r})
					continue
				default:
				}
				break
			}
			if !s.crashed {
				s.logFlush(<-s.startFlush(true))
			}
			close(s.flushes)
			<-s.flusherDone
			return
		}
	}
}

// maxPendingKeys bounds the memory of derived changes waiting for a flush.
const maxPendingKeys = 1 << 20

func (s *Store) logFlush(err error) {
	if err != nil {
		s.log.Error("flushing derived usage failed; the journal keeps the events, retrying", "err", err)
	}
}

func dedupeHash(source, id string) [16]byte {
	// SHA-256 of source, NUL, id, in one call on a stack buffer (hash.Hash would allocate).
	var buf [256]byte
	b := append(buf[:0], source...)
	b = append(b, 0)
	b = append(b, id...)
	sum := sha256.Sum256(b)
	return [16]byte(sum[:16])
}

// SizeBytes is the on-disk size of the store.
func (s *Store) SizeBytes() int64 {
	m := s.db.Metrics()
	return int64(m.DiskSpaceUsage())
}

type quietLogger struct{ l *slog.Logger }

func (q quietLogger) Infof(format string, args ...any) {
	q.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}
func (q quietLogger) Errorf(format string, args ...any) {
	q.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (q quietLogger) Fatalf(format string, args ...any) {
	q.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}

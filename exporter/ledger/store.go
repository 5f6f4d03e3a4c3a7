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
	"strings"
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
	// MinFreeBytes is the free space on the store's filesystem below which writes are refused
	// with ErrInsufficientStorage (space.go); 0 keeps no reserve but still refuses a write that
	// would not fit, and a negative value turns the check off (tests of Pebble's own ENOSPC).
	MinFreeBytes int64
	// SpaceCheckInterval is how often the free space is read while no write arrives (default 1s).
	SpaceCheckInterval time.Duration

	salvage *SalvageReport // set by Salvage: record a loss of acknowledged groups, not refuse
}

// Result is the outcome of committing one request.
type Result struct {
	Accepted, Duplicates int
}

type commitReq struct {
	events []prepared
	done   chan commitDone
	mark   *Mark // recorded in the same batch as the events (applied.go); nil for local commits
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
	closeMu sync.RWMutex // held for reading by Commit, for writing by Close

	mu     sync.RWMutex // guards the mirror below
	mirror mirror

	seen        *seenFilter // owned by the writer goroutine
	pending     pendingState
	groupSeq    uint64 // the last journal entry written; owned by the writer goroutine
	eventSeq    uint64 // the sequence number of the next accepted event; writer goroutine
	gbuf        groupBuffers
	flushReqs   chan chan chan error
	turns       chan writerTurn // work that must run alone, in the writer goroutine (exclusive)
	running     bool            // the writer has started; set by Open, read-only after
	flushes     chan *flushJob  // to the flusher goroutine (pending.go)
	flusherDone chan struct{}
	decoder     *event.Decoder          // decodes stored events; shared: its parsers come from a pool
	changes     atomic.Pointer[Changes] // told of every group commit (changes.go)
	crashed     bool                    // tests: stop as a crash would, without the final flush
	beforeQueue func()                  // tests: Commit calls it between preparing and queuing
	space       *spaceGuard
	lock        *storeLock
	corruptions *atomic.Int64   // damage Pebble found (damage.go)
	watermark   *watermark      // the last group acknowledged (acked.go); writer goroutine
	ackedEvents uint64          // events ever accepted, as m/acked holds it; writer goroutine
	failedLogs  map[string]bool // logs whose marked commit failed (applied.go); writer only
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
	if opts.SpaceCheckInterval <= 0 {
		opts.SpaceCheckInterval = time.Second
	}
	// Every dedupe lookup reads the index and filter blocks of the tables it may hit: keep
	// them in memory, or each lookup is a pread (Pebble's default cache is 8 MiB).
	corruptions := new(atomic.Int64)
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref()
	po := &pebble.Options{
		Cache:        cache,
		Merger:       merger,
		MemTableSize: 64 << 20,
		// Fewer, larger compactions: the write path is dominated by compaction of fresh data.
		L0CompactionThreshold: 8,
		LBaseMaxBytes:         512 << 20,
		Logger:                newQuietLogger(opts.Logger),
		// Damage Pebble finds is reported, not a crash (damage.go). The format stays Pebble's
		// default: FormatWALSyncChunks would let the log replay itself tell damage from a torn
		// tail, but it brings columnar tables, 6% more CPU per ingested event (make
		// bench-ingest-vs), and cannot be undone; the watermark (acked.go) catches a log that
		// lost acknowledged groups instead.
		EventListener: damageListener(opts.Logger, corruptions),
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
	lock, err := lockStore(opts.Path)
	if err != nil {
		return nil, err
	}
	po.Lock = lock.pebble
	db, err := openPebble(opts.Path, po)
	if err != nil {
		lock.release()
		return nil, err
	}
	lock.recordHolder(opts.Logger)
	// Only now, holding the store's lock: another process may be taking a backup of it.
	if stale, err := removeStaleCheckpoints(opts.Path); err != nil {
		db.Close()
		lock.release()
		return nil, err
	} else if len(stale) > 0 {
		opts.Logger.Warn("removed the checkpoints of backups that did not finish (the process stopped during a backup)", "checkpoints", stale)
	}
	s := &Store{
		db:          db,
		lock:        lock,
		corruptions: corruptions,
		space:       newSpaceGuard(opts.Path, opts.MinFreeBytes, opts.Logger),
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
	// Sequence numbers only need to be unique per event time, and to follow the commits
	// (commitGroup); starting from the clock keeps them so across restarts without reading
	// anything back: a store accepts far fewer than one event per nanosecond.
	s.eventSeq = uint64(time.Now().UnixNano())
	if err := s.load(ctx); err != nil {
		s.closeDB()
		return nil, damaged(opts.Path, err)
	}
	s.running = true
	go s.flusher()
	go s.writer()
	go s.space.watch(opts.SpaceCheckInterval, s.stop)
	return s, nil
}

// load brings the store up to date at start-up: migrations, the mirror, the journal's replay,
// the dedupe filter. Pebble panics on some damage; that is an error here, not a crash.
func (s *Store) load(ctx context.Context) (err error) {
	defer recoverInto(&err, "loading the ledger")
	if _, err := s.space.refresh(); err != nil {
		s.log.Warn("cannot read the free disk space of the store; the reserve is not enforced", "path", s.opts.Path, "err", err)
	}
	wm, acked, err := openWatermark(s.opts.Path)
	if err != nil {
		return err
	}
	s.watermark = wm
	if acked.known {
		if err := s.checkAcknowledged(ctx, acked); err != nil {
			return err
		}
	}
	if s.opts.salvage != nil {
		s.opts.salvage.acked = acked
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	if err := s.loadAcked(); err != nil {
		return err
	}
	if err := s.loadMirror(ctx); err != nil {
		return err
	}
	if err := s.replayJournal(ctx); err != nil {
		return err
	}
	if err := s.loadSeen(ctx); err != nil {
		return fmt.Errorf("loading the dedupe filter: %w", err)
	}
	// From here on the watermark follows the store (a rebuild at open renumbers the groups).
	return s.watermark.set(s.groupSeq, s.ackedEvents, true)
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

// Close stops the writer after the commits in flight, flushes the memtables, then closes the
// database. After a clean close every acknowledged event is in the tables: the write-ahead log
// holds nothing that only it holds, so damage to it can lose nothing.
func (s *Store) Close() error {
	if s.closing.Swap(true) {
		return nil
	}
	s.closeMu.Lock() // waits for every Commit that already entered
	close(s.stop)
	<-s.stopped
	s.closeMu.Unlock()
	var flushErr error
	if s.space.failed() == nil && !s.crashed {
		flushErr = errors.Join(s.flushMemtables(), s.watermark.set(s.groupSeq, s.ackedEvents, true))
	}
	return errors.Join(flushErr, s.closeDB())
}

// flushMemtables writes the memtables to tables, so that the WAL holds nothing of value.
func (s *Store) flushMemtables() (err error) {
	defer recoverInto(&err, "flushing the memtables")
	if err := s.db.Flush(); err != nil {
		return fmt.Errorf("flushing the memtables at close (the write-ahead log still holds them): %w", err)
	}
	return nil
}

// closeDB closes Pebble and releases the store's lock. After a failed write Pebble may panic
// while closing its log: that is reported, not a crash.
func (s *Store) closeDB() (err error) {
	defer s.lock.release()
	defer s.watermark.close()
	defer recoverInto(&err, "closing the store")
	return s.db.Close()
}

// Space reports the free space of the store's filesystem and whether writes are accepted.
func (s *Store) Space() SpaceStatus { return s.space.status() }

// Commit durably stores a request's events, all or nothing, and reports how many were new and
// how many were duplicates of events stored before (or earlier in the same request).
func (s *Store) Commit(ctx context.Context, events []event.Event) (Result, error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closing.Load() {
		return Result{}, ErrClosed
	}
	req := &commitReq{events: make([]prepared, len(events)), done: make(chan commitDone, 1)}
	a := &arena{}
	for i := range events {
		req.events[i] = s.prepare(&events[i], a)
	}
	if s.beforeQueue != nil {
		s.beforeQueue()
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
	if err != nil && !errors.Is(err, ErrWriteFailed) {
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

// quietLogger is Pebble's logger: its info lines at debug level, and its errors throttled. A
// background job failing over and over (a flush or compaction on a full disk) repeats the same
// line many times a second; it is logged once, then once per errorLogEvery with the count of
// the lines left out.
type quietLogger struct {
	l  *slog.Logger
	mu sync.Mutex
	// last is when each message format was last logged, and how many were left out since.
	last map[string]*throttled
}

type throttled struct {
	at      time.Time
	skipped int
}

const errorLogEvery = time.Minute

func newQuietLogger(l *slog.Logger) *quietLogger {
	return &quietLogger{l: l, last: map[string]*throttled{}}
}

func (q *quietLogger) Infof(format string, args ...any) {
	q.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (q *quietLogger) Errorf(format string, args ...any) {
	q.mu.Lock()
	t := q.last[format]
	if t == nil {
		if len(q.last) > 1000 { // formats are constants in Pebble's code; bound it anyway
			clear(q.last)
		}
		t = &throttled{}
		q.last[format] = t
	}
	if time.Since(t.at) < errorLogEvery {
		t.skipped++
		q.mu.Unlock()
		return
	}
	skipped := t.skipped
	t.at, t.skipped = time.Now(), 0
	q.mu.Unlock()
	q.l.Error(fmt.Sprintf(format, args...), "component", "pebble", "similar_lines_skipped", skipped)
}

// Fatalf must not return (Pebble's contract). It panics with a pebbleFatal, which the store's
// own calls into Pebble recover into an error (recoverInto); one in Pebble's background jobs
// still ends the process, after this line says why.
func (q *quietLogger) Fatalf(format string, args ...any) {
	msg, _, _ := strings.Cut(fmt.Sprintf(format, args...), "\n") // not the stack traces of %+v
	f := &pebbleFatal{msg: msg}
	for _, a := range args {
		if err, ok := a.(error); ok && f.err == nil {
			f.err = err // so that callers can tell ENOSPC from the rest
		}
	}
	q.l.Error("pebble stopped on a fatal error", "component", "pebble", "err", f.msg)
	panic(f)
}

type pebbleFatal struct {
	msg string
	err error
}

func (f *pebbleFatal) Error() string { return f.msg }
func (f *pebbleFatal) Unwrap() error { return f.err }

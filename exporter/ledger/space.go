package ledger

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Disk space. Pebble cannot recover in place from a failed write-ahead log write: the log
// writer keeps the error, every later synced commit fails with it, and rotating the log (the
// next memtable flush) panics. So the store must not let Pebble run out of space. Before every
// group commit it reads the free space of its filesystem (one statfs, about a microsecond) and
// refuses the group while less than MinFreeBytes would be left: the reserve covers Pebble's own
// work (memtable flushes, compactions, the MANIFEST), which must never fail for lack of space.
// Refused writes are answered at once and store nothing; reads go on; writes resume by
// themselves once space is freed.
//
// If a write fails anyway (the disk filled faster than the checks, or an I/O error), the store
// stops writing for good: every later commit is refused with ErrWriteFailed, reads go on, and the
// operator restarts the exporter once the cause is fixed. Nothing acknowledged is lost: a group
// is acknowledged only after its fsync succeeded, and Pebble replays the log at the next start.

// ErrInsufficientStorage refuses a write that would leave less free space than the reserve.
var ErrInsufficientStorage = errors.New("insufficient storage")

// ErrWriteFailed refuses every write after the store failed to write (see Space).
var ErrWriteFailed = errors.New("the store failed to write and refuses writes until the exporter is restarted")

// DefaultMinFreeBytes is the free space kept in reserve for Pebble when Options.MinFreeBytes is
// zero: four memtables, room for a flush and a compaction of fresh data.
const DefaultMinFreeBytes = 256 << 20

// SpaceStatus is the store's view of its filesystem.
type SpaceStatus struct {
	// FreeBytes is the space available to the exporter on the store's filesystem, and SizeBytes
	// the filesystem's size; both are -1 when unknown.
	FreeBytes, SizeBytes int64
	// MinFreeBytes is the reserve below which writes are refused.
	MinFreeBytes int64
	// Writable is false while writes are refused; Reason then says why.
	Writable bool
	Reason   string
}

// Refusal reasons of SpaceStatus.Reason.
const (
	ReasonLowSpace    = "insufficient_storage"
	ReasonWriteFailed = "write_failed"
)

// spaceGuard watches the free space of the store's filesystem and holds the store's write
// failure, if any.
type spaceGuard struct {
	path    string
	min     int64
	log     *slog.Logger
	statfs  func(path string) (free, size int64, err error)
	free    atomic.Int64
	size    atomic.Int64
	need    atomic.Int64 // the size of the last group checked
	low     atomic.Bool
	failure atomic.Pointer[error]

	mu       sync.Mutex // guards the log throttle below
	lastLog  time.Time
	refusals int // groups refused since the last log line
}

// spaceLogEvery is how often a persisting refusal is logged again: one line, not one per request.
const spaceLogEvery = time.Minute

func newSpaceGuard(path string, min int64, log *slog.Logger) *spaceGuard {
	g := &spaceGuard{path: path, min: min, log: log, statfs: statfs}
	g.free.Store(-1)
	g.size.Store(-1)
	return g
}

// check reads the free space now, updates the status, and returns an error when a write of about
// need bytes must be refused.
func (g *spaceGuard) check(need int64) error {
	if p := g.failure.Load(); p != nil {
		g.refused(ReasonWriteFailed, *p)
		return fmt.Errorf("%w (%v)", ErrWriteFailed, *p)
	}
	if g.min < 0 {
		return nil // no check (tests that make Pebble itself run out of space)
	}
	g.need.Store(need)
	free, err := g.refresh()
	if err != nil {
		return nil // unknown free space: let the write try; a real failure is caught below
	}
	if free-need >= g.min {
		return nil
	}
	err = fmt.Errorf("%w: the filesystem of %s has %s free and the store keeps %s in reserve (--storage.min-free-bytes); free some space and retry",
		ErrInsufficientStorage, g.path, formatBytes(free), formatBytes(g.min))
	g.refused(ReasonLowSpace, err)
	return err
}

// refresh reads the free space and logs a change between low and enough.
func (g *spaceGuard) refresh() (int64, error) {
	free, size, err := g.statfs(g.path)
	if err != nil {
		return 0, err
	}
	g.free.Store(free)
	g.size.Store(size)
	low := g.min >= 0 && free-g.need.Load() < g.min
	if g.low.Swap(low) && !low {
		g.mu.Lock()
		n := g.refusals
		g.refusals, g.lastLog = 0, time.Time{}
		g.mu.Unlock()
		g.log.Info("disk space is available again: the store accepts writes", "path", g.path, "free_bytes", free, "min_free_bytes", g.min, "refused_groups", n)
	}
	return free, nil
}

// refused logs a refusal: the first at once, then at most one line per spaceLogEvery.
func (g *spaceGuard) refused(reason string, err error) {
	g.mu.Lock()
	g.refusals++
	if time.Since(g.lastLog) < spaceLogEvery {
		g.mu.Unlock()
		return
	}
	n := g.refusals
	g.refusals, g.lastLog = 0, time.Now()
	g.mu.Unlock()
	g.log.Error("the store refuses writes", "reason", reason, "err", err, "refused_groups", n, "next_log_in", spaceLogEvery)
}

// fail records a failed write: the store refuses every write from now on.
func (g *spaceGuard) fail(err error) {
	if g.failure.CompareAndSwap(nil, &err) {
		g.log.Error("the store failed to write: it refuses writes until the exporter is restarted; reads go on. Free disk space or fix the I/O error, then restart", "path", g.path, "err", err)
	}
}

func (g *spaceGuard) failed() error {
	if p := g.failure.Load(); p != nil {
		return *p
	}
	return nil
}

func (g *spaceGuard) status() SpaceStatus {
	st := SpaceStatus{FreeBytes: g.free.Load(), SizeBytes: g.size.Load(), MinFreeBytes: g.min, Writable: true}
	switch {
	case g.failed() != nil:
		st.Writable, st.Reason = false, ReasonWriteFailed
	case g.low.Load():
		st.Writable, st.Reason = false, ReasonLowSpace
	}
	return st
}

// watch refreshes the free space every interval until stop closes, so that readiness and the
// metrics follow the disk while no writes arrive.
func (g *spaceGuard) watch(interval time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if _, err := g.refresh(); err != nil {
				g.log.Debug("reading free disk space", "path", g.path, "err", err)
			}
		case <-stop:
			return
		}
	}
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

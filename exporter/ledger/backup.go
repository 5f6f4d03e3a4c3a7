package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Online backups. A backup is a Pebble checkpoint of the whole database (the ledger, and the
// audit trail and billing under their own prefixes): hard links to the immutable tables, copies
// of the manifest, options and WAL, consistent as of one instant. It is taken in the writer's
// turn (exclusive), after every pending derived change is flushed, so the checkpoint's derived
// state covers every group committed before it: nothing is left to replay, and the journal
// replay at open would cover anything left anyway (a checkpoint taken without the flush).

// checkpointsDir holds the checkpoints of backups in flight, inside the store's own directory so
// that the tables can be hard-linked (same file system) and a stale one is found and removed at
// the next open (an exporter killed during a backup). Pebble ignores directories it does not
// know.
const checkpointsDir = "auxiliary"

const checkpointPrefix = "backup-"

// SnapshotInfo describes the state a checkpoint holds.
type SnapshotInfo struct {
	SchemaVersion uint64 `json:"schema_version"`
	// LastGroup is the last group commit the snapshot holds; Checkpoint is the last one its
	// derived usage includes (equal after Checkpoint, which flushes first).
	LastGroup  uint64 `json:"last_group"`
	Checkpoint uint64 `json:"journal_checkpoint"`
	// Events is the number of raw events stored (archived months excluded).
	Events int64 `json:"events"`
}

// Checkpoint writes a consistent snapshot of the store into a new directory under the store's
// own and returns its path and what it holds. The caller removes the directory when done
// (RemoveCheckpoint). Commits wait for the checkpoint itself (hard links and a few small
// copies), not for the caller's use of it.
func (s *Store) Checkpoint(ctx context.Context) (string, SnapshotInfo, error) {
	parent := filepath.Join(s.opts.Path, checkpointsDir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", SnapshotInfo{}, fmt.Errorf("creating %s: %w", parent, err)
	}
	dir := filepath.Join(parent, fmt.Sprintf("%s%d", checkpointPrefix, time.Now().UnixNano()))
	var paused time.Duration
	asked := time.Now()
	err := s.exclusive(ctx, func() error {
		start := time.Now()
		defer func() { paused = time.Since(start) }()
		// The flush that exclusive ran first is not synced: WithFlushedWAL makes it part of
		// the checkpoint.
		return s.db.Checkpoint(dir, pebble.WithFlushedWAL())
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", SnapshotInfo{}, fmt.Errorf("checkpointing the store: %w", err)
	}
	s.log.Info("checkpoint taken for a backup", "dir", dir, "took", time.Since(asked).Round(time.Millisecond),
		"commits_paused", paused.Round(time.Millisecond))
	info, err := Inspect(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", SnapshotInfo{}, err
	}
	return dir, info, nil
}

// RemoveCheckpoint removes a directory Checkpoint made.
func RemoveCheckpoint(dir string) error {
	if !strings.HasPrefix(filepath.Base(dir), checkpointPrefix) {
		return fmt.Errorf("%s is not a backup checkpoint", dir)
	}
	return os.RemoveAll(dir)
}

// removeStaleCheckpoints removes the checkpoints of backups that never finished (the process
// was killed during one): they hold hard links that would keep deleted tables on disk.
func removeStaleCheckpoints(path string) ([]string, error) {
	dirs, err := filepath.Glob(filepath.Join(path, checkpointsDir, checkpointPrefix+"*"))
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			return dirs, fmt.Errorf("removing the stale backup checkpoint %s: %w", d, err)
		}
	}
	return dirs, nil
}

// RestoreStagingPrefix names the directory usagectl restore extracts a backup into, inside the
// store directory, until the backup has checked out and its files are moved into place.
const RestoreStagingPrefix = ".restore-"

// refuseUnfinishedRestore refuses a store directory with a restore's staging directory in it: a
// restore is running, or was interrupted, and the directory is not (yet) the backup's store.
// Opened anyway, Pebble would find no store and start an empty one.
func refuseUnfinishedRestore(path string) error {
	staging, err := filepath.Glob(filepath.Join(path, RestoreStagingPrefix+"*"))
	if err != nil || len(staging) == 0 {
		return err
	}
	return fmt.Errorf("the store at %s holds %s: a restore into it is running or was interrupted; run usagectl restore again (with --force), or remove that directory if you mean to keep the store as it is", path, staging[0])
}

// Inspect opens a store directory read-only (a checkpoint, a restored store; not one an exporter
// has open) and reports what it holds.
func Inspect(ctx context.Context, dir string) (SnapshotInfo, error) {
	if _, err := os.Stat(dir); err != nil {
		return SnapshotInfo{}, fmt.Errorf("inspecting the store: %w", err)
	}
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Merger: merger, Logger: newQuietLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("opening the store at %s read-only: %w", dir, err)
	}
	defer db.Close()
	var info SnapshotInfo
	get := func(key []byte) (uint64, error) {
		v, closer, err := db.Get(key)
		if errors.Is(err, pebble.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("reading %s: %w", key, err)
		}
		defer closer.Close()
		if len(v) != 8 {
			return 0, fmt.Errorf("%s holds %d bytes, want 8", key, len(v))
		}
		return binary.BigEndian.Uint64(v), nil
	}
	if info.SchemaVersion, err = get(keyVersion); err != nil {
		return info, err
	}
	if info.Checkpoint, err = get(keyCheckpoint); err != nil {
		return info, err
	}
	info.LastGroup = info.Checkpoint
	it, err := db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(pJournal), UpperBound: prefixEnd([]byte(pJournal))})
	if err != nil {
		return info, fmt.Errorf("opening the journal: %w", err)
	}
	if it.Last() && len(it.Key()) == len(pJournal)+8 {
		info.LastGroup = max(info.LastGroup, binary.BigEndian.Uint64(it.Key()[len(pJournal):]))
	}
	if err := it.Close(); err != nil {
		return info, fmt.Errorf("reading the journal: %w", err)
	}
	it, err = db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: []byte(pEvent), UpperBound: prefixEnd([]byte(pEvent))})
	if err != nil {
		return info, fmt.Errorf("counting events: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		if info.Events++; info.Events%65536 == 0 && ctx.Err() != nil {
			it.Close()
			return info, ctx.Err()
		}
	}
	if err := it.Close(); err != nil {
		return info, fmt.Errorf("counting events: %w", err)
	}
	return info, nil
}

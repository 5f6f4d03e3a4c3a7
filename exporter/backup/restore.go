package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// RestoreOptions tune Restore.
type RestoreOptions struct {
	Key []byte // the archive key, for encrypted backups
	// Force replaces the contents of a store directory that is not empty.
	Force    bool
	Progress Progress
}

// Restore checks the backup in file and restores it into storagePath, which must be empty or
// absent unless o.Force. The backup is extracted and checked in full (checksums, manifest, and
// the restored store opened read-only: its schema version, last group and event count must be
// the manifest's) before anything already in storagePath is touched.
func Restore(ctx context.Context, file, storagePath string, o RestoreOptions) (Manifest, error) {
	existing, err := storeEntries(storagePath)
	if err != nil {
		return Manifest{}, err
	}
	if len(existing) > 0 && !o.Force {
		return Manifest{}, fmt.Errorf("refusing to restore into %s: it is not empty (%d entries, e.g. %s); restore into an empty directory, or pass --force to replace its contents",
			storagePath, len(existing), existing[0])
	}
	if slices.Contains(existing, "LOCK") {
		// Pebble's own lock: an exporter (or usagectl) holding it has the store open.
		l, err := vfs.Default.Lock(filepath.Join(storagePath, "LOCK"))
		if err != nil {
			return Manifest{}, fmt.Errorf("refusing to restore into %s: a process has the store open (%v): stop the exporter first", storagePath, err)
		}
		l.Close()
	}
	in, err := os.Open(file)
	if err != nil {
		return Manifest{}, fmt.Errorf("opening the backup: %w", err)
	}
	defer in.Close()
	if err := os.MkdirAll(storagePath, 0o700); err != nil {
		return Manifest{}, fmt.Errorf("creating %s: %w", storagePath, err)
	}
	// Staged inside the target: on the same file system (the files are renamed into place, not
	// copied), and the ledger refuses to open the directory until the staging is gone.
	staging := filepath.Join(storagePath, fmt.Sprintf("%s%d", ledger.RestoreStagingPrefix, time.Now().UnixNano()))
	if err := os.Mkdir(staging, 0o700); err != nil {
		return Manifest{}, fmt.Errorf("creating %s: %w", staging, err)
	}
	defer os.RemoveAll(staging)
	m, err := Extract(ctx, in, o.Key, staging, o.Progress)
	if err != nil {
		return m, fmt.Errorf("%s: %w; nothing was restored", file, err)
	}
	got, err := ledger.Inspect(ctx, staging)
	if err != nil {
		return m, fmt.Errorf("%s: %w: the restored store does not open: %v; nothing was restored", file, ErrDamaged, err)
	}
	if got != m.SnapshotInfo {
		return m, fmt.Errorf("%s: %w: the restored store holds %+v, the manifest says %+v; nothing was restored", file, ErrDamaged, got, m.SnapshotInfo)
	}
	// Checked in full: only now replace what was there.
	for _, e := range existing {
		if err := os.RemoveAll(filepath.Join(storagePath, e)); err != nil {
			return m, fmt.Errorf("clearing %s before the restore: %w", storagePath, err)
		}
	}
	// The files move in name order except Pebble's markers and OPTIONS, which move last: until
	// they are in place the directory is not a store.
	names := make([]string, 0, len(m.Files))
	for _, f := range m.Files {
		names = append(names, f.Name)
	}
	sort.SliceStable(names, func(i, j int) bool { return !isPebbleRoot(names[i]) && isPebbleRoot(names[j]) })
	for _, name := range names {
		dst := filepath.Join(storagePath, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return m, fmt.Errorf("restoring %s: %w", name, err)
		}
		if err := os.Rename(filepath.Join(staging, filepath.FromSlash(name)), dst); err != nil {
			return m, fmt.Errorf("restoring %s: %w (the store at %s is incomplete: restore again with --force)", name, err, storagePath)
		}
	}
	if err := syncDir(storagePath); err != nil {
		return m, err
	}
	return m, nil
}

func isPebbleRoot(name string) bool {
	return strings.HasPrefix(name, "marker.") || strings.HasPrefix(name, "OPTIONS-") || name == "CURRENT"
}

// storeEntries lists what a store directory holds (nil when it does not exist).
func storeEntries(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

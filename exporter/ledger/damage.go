package ledger

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Damage. Pebble checks every block of its tables and every record of its write-ahead log
// against a checksum. A damaged table is found when it is read (at the latest by `usagectl
// ledger verify`, which reads everything). Damage inside the write-ahead log is found when Pebble
// replays it at open if valid records follow it; otherwise Pebble takes it for the torn tail a
// crash leaves (the group whose fsync the crash interrupted, never acknowledged) and stops there,
// and the watermark of the last acknowledged group (acked.go) tells whether acknowledged groups
// were lost. Either way the store refuses to open, or the read fails, with a DamagedError; it
// never panics and never goes on silently.

// DamagedError is a store that cannot be read as it is: which store, what is wrong, and what the
// operator can do.
type DamagedError struct {
	Path string
	// Files are the store's files the damage is in, when known.
	Files []string
	Err   error
}

func (e *DamagedError) Error() string {
	where := ""
	if len(e.Files) > 0 {
		where = " (" + strings.Join(e.Files, ", ") + ")"
	}
	// Pebble's corruption errors span lines (details, stack traces): the first says what is wrong.
	what, _, _ := strings.Cut(e.Err.Error(), "\n")
	return fmt.Sprintf("the store at %s is damaged%s: %s. The exporter wrote no event. Restore the store directory from a backup "+
		"(docs/operator-guide.md, \"A damaged store\"); do not delete files from it by hand", e.Path, where, what)
}

func (e *DamagedError) Unwrap() error { return e.Err }

// errPanicked marks a panic of Pebble turned into an error.
var errPanicked = errors.New("pebble panicked")

// recoverInto turns a panic of Pebble (on damaged data, or its Fatalf) into an error in *err.
// Deferred by the store's calls into Pebble that run in its own goroutines.
func recoverInto(err *error, what string) {
	r := recover()
	if r == nil {
		return
	}
	if e, ok := r.(error); ok {
		*err = fmt.Errorf("%s: %w: %w", what, errPanicked, e)
		return
	}
	*err = fmt.Errorf("%s: %w: %v", what, errPanicked, r)
}

// damageListener reports damage Pebble finds in a table to the log, once per file, instead of
// Pebble's default, a Fatalf (a crash with a stack trace): the read that found it fails with a
// corruption error, which the store reports as a DamagedError.
func damageListener(log *slog.Logger, found *atomic.Int64) *pebble.EventListener {
	var mu sync.Mutex
	seen := map[string]bool{}
	return &pebble.EventListener{
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			found.Add(1)
			mu.Lock()
			first := !seen[info.Path]
			seen[info.Path] = true
			mu.Unlock()
			if first {
				detail := ""
				if info.Details != nil {
					detail = info.Details.Error()
				}
				log.Error("the store is damaged: a file failed its checksum; restore the store from a backup", "file", info.Path, "keys", info.Bounds.String(), "err", detail)
			}
		},
	}
}

// CorruptionsFound is how many times Pebble found damage in the store's files since it opened.
func (s *Store) CorruptionsFound() int64 { return s.corruptions.Load() }

// openPebble opens the store's database, telling damage and missing files apart from other
// failures.
func openPebble(path string, po *pebble.Options) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &DamagedError{Path: path, Err: fmt.Errorf("%w: %v", errPanicked, r)}
		}
	}()
	db, err = pebble.Open(path, po)
	if err == nil {
		return db, nil
	}
	if d := damaged(path, err); d != err {
		return nil, d
	}
	return nil, fmt.Errorf("opening ledger at %s: %w", path, err)
}

// damaged wraps err in a DamagedError when it says the store is damaged or incomplete; other
// errors come back as they are.
func damaged(path string, err error) error {
	var de *DamagedError
	if err == nil || errors.As(err, &de) {
		return err
	}
	msg := err.Error()
	switch {
	case pebble.IsCorruptionError(err), errors.Is(err, errPanicked):
	case errors.Is(err, os.ErrNotExist), strings.Contains(msg, "does not exist"), strings.Contains(msg, "no such file"):
		// A table or log the MANIFEST names is missing: the directory is incomplete.
	default:
		return err
	}
	files := namedFiles(path, msg)
	if strings.Contains(msg, "WAL") && len(files) == 0 {
		files = walFiles(path) // Pebble names the log only in the error's details
	}
	return &DamagedError{Path: path, Files: files, Err: err}
}

// namedFiles lists the store's files an error message names (Pebble names them by number:
// 000123, or 000123.sst), so that the operator knows where to look.
func namedFiles(dir, msg string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		num := strings.TrimSuffix(name, filepath.Ext(name))
		if len(num) == 6 && strings.Contains(msg, num) {
			files = append(files, filepath.Join(dir, name))
		}
	}
	// The file may be named but missing: name it anyway.
	for _, f := range strings.FieldsFunc(msg, func(r rune) bool { return r == ' ' || r == '"' || r == ':' || r == '(' || r == ')' || r == ',' }) {
		if strings.HasSuffix(f, ".sst") || strings.HasSuffix(f, ".log") {
			if p := filepath.Join(dir, filepath.Base(f)); !contains(files, p) {
				files = append(files, p)
			}
		}
	}
	sort.Strings(files)
	return files
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

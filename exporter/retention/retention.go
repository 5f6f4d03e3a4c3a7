package retention

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/usagemeter/usagemeter/billing/invoice"
	"github.com/usagemeter/usagemeter/billing/rating"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/event"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// Policy is the retention: section of the config file.
type Policy struct {
	// RawEvents, Rollups, Audit and Invoices are how long each class is kept in the store; 0
	// keeps it forever.
	RawEvents, Rollups, Audit, Invoices time.Duration
	ArchiveDir                          string
	KeyFile, KeyEnv                     string
	Interval                            time.Duration
}

// Enabled reports whether anything is ever archived.
func (p Policy) Enabled() bool {
	return p.RawEvents > 0 || p.Rollups > 0 || p.Audit > 0 || p.Invoices > 0
}

// Data classes owned by other packages.
const (
	ClassAudit    = "audit"
	ClassInvoices = "invoices"
)

// minInvoiceRetention keeps invoices past every late-event adjustment (billing re-rates the two
// closed months before each run) with a wide margin: finance keeps them for years anyway.
const minInvoiceRetention = 400 * 24 * time.Hour

// Invoices is what retention needs of billing (billing.Service has it).
type Invoices interface {
	OldestPeriod(ctx context.Context) (rating.Period, bool, error)
	ExportPeriod(ctx context.Context, p rating.Period, fn func(k, v []byte) error) (int, error)
	DeleteArchived(ctx context.Context, p rating.Period, next func() ([]byte, error)) (int, error)
	RestorePeriod(ctx context.Context, p rating.Period, next func() ([]byte, []byte, error)) (int, error)
}

// minRetention: a month can be archived only once no event can still land in it.
const minRetention = event.LateWindow + 24*time.Hour

// ParseConfig reads the retention section (absent: keep everything forever).
func ParseConfig(n *yaml.Node) (Policy, error) {
	p := Policy{ArchiveDir: "./archive", Interval: time.Hour}
	if n == nil || n.Kind == 0 {
		return p, nil
	}
	var raw struct {
		RawEvents  string `yaml:"raw_events"`
		Rollups    string `yaml:"rollups"`
		Invoices   string `yaml:"invoices"`
		Audit      string `yaml:"audit"`
		ArchiveDir string `yaml:"archive_dir"`
		KeyFile    string `yaml:"key_file"`
		KeyEnv     string `yaml:"key_env"`
		Interval   string `yaml:"interval"`
	}
	if err := n.Decode(&raw); err != nil {
		return p, &config.FieldError{Line: n.Line, Field: "retention", Msg: err.Error()}
	}
	line := func(field string) int {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == field {
				return n.Content[i].Line
			}
		}
		return n.Line
	}
	dur := func(field, v string, floor time.Duration) (time.Duration, error) {
		if v == "" || v == "forever" {
			return 0, nil
		}
		d, err := model.ParseDuration(v)
		if err != nil {
			return 0, &config.FieldError{Line: line(field), Field: "retention." + field, Msg: fmt.Sprintf("%q is not a duration like 400d or forever", v)}
		}
		if time.Duration(d) < floor {
			return 0, &config.FieldError{Line: line(field), Field: "retention." + field, Msg: fmt.Sprintf("must be at least %s: events may still arrive for the 35-day late window", model.Duration(floor))}
		}
		return time.Duration(d), nil
	}
	var err error
	if p.RawEvents, err = dur("raw_events", raw.RawEvents, minRetention); err != nil {
		return p, err
	}
	if p.Rollups, err = dur("rollups", raw.Rollups, minRetention); err != nil {
		return p, err
	}
	if p.Rollups > 0 && p.RawEvents > p.Rollups {
		return p, &config.FieldError{Line: line("rollups"), Field: "retention.rollups", Msg: "rollups cannot be kept for less time than the raw events they are derived from"}
	}
	if p.Audit, err = dur("audit", raw.Audit, minRetention); err != nil {
		return p, err
	}
	if p.Invoices, err = dur("invoices", raw.Invoices, minInvoiceRetention); err != nil {
		return p, err
	}
	if raw.ArchiveDir != "" {
		p.ArchiveDir = raw.ArchiveDir
	}
	p.KeyFile, p.KeyEnv = raw.KeyFile, raw.KeyEnv
	if raw.Interval != "" {
		d, err := model.ParseDuration(raw.Interval)
		if err != nil || d <= 0 {
			return p, &config.FieldError{Line: line("interval"), Field: "retention.interval", Msg: fmt.Sprintf("%q is not a positive duration", raw.Interval)}
		}
		p.Interval = time.Duration(d)
	}
	if p.Enabled() && p.KeyFile == "" && p.KeyEnv == "" {
		return p, &config.FieldError{Line: n.Line, Field: "retention", Msg: "archives are encrypted: set key_file or key_env (32 bytes, 64 hex digits)"}
	}
	return p, nil
}

// ArchiveMonth writes a class's data of a month to an encrypted archive in dir, reads the
// archive back to check it holds every key, and only then deletes the data from the store.
func ArchiveMonth(ctx context.Context, s *ledger.Store, class string, month time.Time, dir string, key []byte) (string, int, error) {
	return archiveThenDelete(dir, key, class, month,
		func(add func(k, v []byte) error) (int, error) { return s.ExportMonth(ctx, class, month, add) },
		func(r *Reader) (int, error) {
			return s.DeleteArchived(ctx, class, month, func() ([]byte, error) {
				k, _, err := r.Next()
				if err == io.EOF {
					return nil, ledger.ErrEnd
				}
				return k, err
			})
		})
}

// archiveThenDelete is the one way data leaves the store: export writes the records to a new
// archive; the archive is closed (fsynced, renamed into place), read back through its
// authentication and counted; only then does del get a reader over it, to delete exactly the
// records it holds.
func archiveThenDelete(dir string, key []byte, class string, month time.Time,
	export func(add func(k, v []byte) error) (int, error), del func(r *Reader) (int, error)) (string, int, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", 0, fmt.Errorf("archive directory: %w", err)
	}
	path := filepath.Join(dir, FileName(class, month))
	if _, err := os.Stat(path); err == nil {
		return "", 0, fmt.Errorf("%s exists already: restore or move it before archiving %s again", path, month.Format("2006-01"))
	}
	w, err := Create(path, key, class, month, 0)
	if err != nil {
		return "", 0, err
	}
	n, err := export(w.Add)
	if err != nil {
		w.Abort()
		return "", 0, err
	}
	if err := w.Close(); err != nil {
		return "", 0, err
	}
	r, err := Open(path, key)
	if err != nil {
		return path, 0, fmt.Errorf("reading back %s: %w", path, err)
	}
	count := 0
	if err := checkAll(r, &count); err != nil || count != n {
		r.Close()
		return path, 0, fmt.Errorf("archive %s holds %d of %d records (%v): nothing deleted", path, count, n, err)
	}
	r.Close()
	if r, err = Open(path, key); err != nil {
		return path, 0, err
	}
	defer r.Close()
	deleted, err := del(r)
	return path, deleted, err
}

func checkAll(r *Reader, count *int) error {
	for {
		_, _, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		*count++
	}
}

// RestoreMonth brings an archived month of a class back into the store.
func RestoreMonth(ctx context.Context, s *ledger.Store, class string, month time.Time, dir string, key []byte) (int, error) {
	path := filepath.Join(dir, FileName(class, month))
	r, err := Open(path, key)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	if r.Header.Class != class || r.Header.Month != month.UTC().Format("2006-01") {
		return 0, fmt.Errorf("%s holds %s of %s, not %s of %s", path, r.Header.Class, r.Header.Month, class, month.Format("2006-01"))
	}
	return s.Restore(ctx, class, month, func() ([]byte, []byte, error) {
		k, v, err := r.Next()
		if err == io.EOF {
			return nil, nil, ledger.ErrEnd
		}
		return k, v, err
	})
}

// ArchiveAuditMonth archives the audit entries up to the end of a month (the oldest kept
// entries), reads the archive back, then deletes them and moves the chain's anchor.
func ArchiveAuditMonth(ctx context.Context, s *ledger.Store, month time.Time, dir string, key, auditKey []byte) (string, int, error) {
	path, n, err := archiveThenDelete(dir, key, ClassAudit, month,
		func(add func(k, v []byte) error) (int, error) {
			return audit.ExportBefore(ctx, s.DB(), month.AddDate(0, 1, 0), add)
		},
		func(r *Reader) (int, error) { return audit.DeleteArchived(ctx, s.DB(), auditKey, records(r)) })
	if err != nil {
		return path, n, err
	}
	return path, n, s.MarkArchived(ClassAudit, month, true)
}

// ArchiveInvoiceMonth archives a settled billing month's documents, reads the archive back, then
// deletes exactly what it holds (billing carries their net into the statements' opening balance).
func ArchiveInvoiceMonth(ctx context.Context, s *ledger.Store, inv Invoices, month time.Time, dir string, key []byte) (string, int, error) {
	p := rating.Period{Year: month.Year(), Month: month.Month()}
	// Refuse an unsettled period before writing anything.
	if _, err := inv.ExportPeriod(ctx, p, func(_, _ []byte) error { return nil }); err != nil {
		return "", 0, err
	}
	path, n, err := archiveThenDelete(dir, key, ClassInvoices, month,
		func(add func(k, v []byte) error) (int, error) { return inv.ExportPeriod(ctx, p, add) },
		func(r *Reader) (int, error) {
			return inv.DeleteArchived(ctx, p, func() ([]byte, error) {
				k, _, err := r.Next()
				if err == io.EOF {
					return nil, invoice.ErrArchiveEnd
				}
				return k, err
			})
		})
	if err != nil {
		return path, n, err
	}
	return path, n, s.MarkArchived(ClassInvoices, month, true)
}

// RestoreInvoiceMonth brings an archived billing month back.
func RestoreInvoiceMonth(ctx context.Context, s *ledger.Store, inv Invoices, month time.Time, dir string, key []byte) (int, error) {
	r, err := Open(filepath.Join(dir, FileName(ClassInvoices, month)), key)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n, err := inv.RestorePeriod(ctx, rating.Period{Year: month.Year(), Month: month.Month()}, func() ([]byte, []byte, error) {
		k, v, err := r.Next()
		if err == io.EOF {
			return nil, nil, invoice.ErrArchiveEnd
		}
		return k, v, err
	})
	if err != nil {
		return n, err
	}
	return n, s.MarkArchived(ClassInvoices, month, false)
}

// RestoreAuditMonth brings an archived month of the audit trail back (newest archive first).
func RestoreAuditMonth(ctx context.Context, s *ledger.Store, month time.Time, dir string, key, auditKey []byte) (int, error) {
	r, err := Open(filepath.Join(dir, FileName(ClassAudit, month)), key)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n, err := audit.Restore(ctx, s.DB(), auditKey, records(r))
	if err != nil {
		return n, err
	}
	return n, s.MarkArchived(ClassAudit, month, false)
}

func records(r *Reader) func() ([]byte, []byte, error) {
	return func() ([]byte, []byte, error) {
		k, v, err := r.Next()
		if err == io.EOF {
			return nil, nil, audit.ErrEnd
		}
		return k, v, err
	}
}

// Job archives and deletes, every Interval, each calendar month that is entirely past its
// class's retention.
type Job struct {
	Store  *ledger.Store
	Policy Policy
	Key    []byte
	// AuditKey is the audit trail's HMAC key (auth.audit_key_file), nil for a plain chain.
	AuditKey []byte
	// Invoices archives billing documents; nil leaves them in the store.
	Invoices Invoices
	Log      *slog.Logger
	Now      func() time.Time
}

// RunOnce archives every month due now and returns how many it archived.
func (j *Job) RunOnce(ctx context.Context) (int, error) {
	now := time.Now
	if j.Now != nil {
		now = j.Now
	}
	done := 0
	var errs []error
	for _, c := range []struct {
		class string
		keep  time.Duration
	}{{ledger.ClassRawEvents, j.Policy.RawEvents}, {ledger.ClassRollups, j.Policy.Rollups}, {ClassAudit, j.Policy.Audit}, {ClassInvoices, j.Policy.Invoices}} {
		if c.keep <= 0 {
			continue
		}
		archived, err := j.Store.ArchivedMonths(ctx, c.class)
		if err != nil {
			return done, err
		}
		have := map[string]bool{}
		for _, m := range archived {
			have[m.Format("2006-01")] = true
		}
		cutoff := now().Add(-c.keep)
		var first time.Time
		if c.class == ClassInvoices {
			if j.Invoices == nil {
				continue
			}
			p, ok, err := j.Invoices.OldestPeriod(ctx)
			if err != nil || !ok {
				if err != nil {
					errs = append(errs, err)
				}
				continue
			}
			first = time.Date(p.Year, p.Month, 1, 0, 0, 0, 0, time.UTC)
		} else if c.class == ClassAudit {
			oldest, ok, err := audit.Oldest(ctx, j.Store.DB())
			if err != nil || !ok {
				if err != nil {
					errs = append(errs, err)
				}
				continue
			}
			first = time.Date(oldest.Year(), oldest.Month(), 1, 0, 0, 0, 0, time.UTC)
		} else if first, err = j.Store.FirstMonth(ctx); err != nil || first.IsZero() {
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		for m := first; !m.AddDate(0, 1, 0).After(cutoff); m = m.AddDate(0, 1, 0) {
			if have[m.Format("2006-01")] {
				continue
			}
			var path string
			var n int
			var err error
			switch c.class {
			case ClassInvoices:
				path, n, err = ArchiveInvoiceMonth(ctx, j.Store, j.Invoices, m, j.Policy.ArchiveDir, j.Key)
				if errors.Is(err, invoice.ErrUnsettled) {
					j.Log.Info("invoices past retention kept: money is still owed", "month", m.Format("2006-01"), "err", err)
					continue // a later month may be settled; this one is tried again next time
				}
			case ClassAudit:
				path, n, err = ArchiveAuditMonth(ctx, j.Store, m, j.Policy.ArchiveDir, j.Key, j.AuditKey)
			default:
				path, n, err = ArchiveMonth(ctx, j.Store, c.class, m, j.Policy.ArchiveDir, j.Key)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", c.class, m.Format("2006-01"), err))
				break // keep months in order: retry next time
			}
			j.Log.Info("archived past retention", "class", c.class, "month", m.Format("2006-01"), "keys", n, "file", path)
			done++
		}
	}
	return done, errors.Join(errs...)
}

// Run runs the job every Interval until ctx ends.
func (j *Job) Run(ctx context.Context) {
	t := time.NewTicker(j.Policy.Interval)
	defer t.Stop()
	for {
		if _, err := j.RunOnce(ctx); err != nil {
			j.Log.Error("retention job", "err", err)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

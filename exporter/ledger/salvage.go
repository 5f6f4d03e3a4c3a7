package ledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Salvage. When the write-ahead log lost acknowledged groups (the exporter refuses the store,
// see acked.go) and no backup is at hand, `usagectl ledger salvage` keeps what is intact and
// reports exactly what was lost: it copies the store aside first, opens it accepting the loss,
// derives every rollup and total again from the raw events that are left, and counts them
// against the watermark. The caller records it in the audit trail. Damaged tables are not
// salvaged: the store refuses to open them, and salvage says so.

// SalvageReport is what a salvage kept and lost.
type SalvageReport struct {
	// Copy is where the store was copied, untouched, before the salvage.
	Copy string
	// LostGroups is the range of acknowledged groups missing (zero when none).
	LostGroups [2]uint64
	// AckedEvents is how many events the watermark says were accepted (0 when unknown), and
	// KeptEvents how many raw events the store holds after the salvage.
	AckedEvents, KeptEvents uint64
	// LostEvents is AckedEvents - KeptEvents when the watermark is known.
	LostEvents uint64
	// Rebuilt is how many raw events rollups and totals were derived from again.
	Rebuilt int

	acked acknowledged
}

func (r *SalvageReport) String() string {
	if r.LostGroups == [2]uint64{} && r.LostEvents == 0 {
		return fmt.Sprintf("nothing acknowledged was missing; %d events kept, rollups and totals derived again from them; the store before salvage is in %s", r.KeptEvents, r.Copy)
	}
	return fmt.Sprintf("LOST %d acknowledged events (groups %d to %d; %d were acknowledged, %d are kept); rollups and totals derived again from the events kept; the store before salvage is in %s. Have producers resend the events of the lost period: events kept are recognised and counted once",
		r.LostEvents, r.LostGroups[0], r.LostGroups[1], r.AckedEvents, r.KeptEvents, r.Copy)
}

// Salvage opens the store at opts.Path keeping what is intact, as described above. It returns
// the store open (for the caller's audit record; the caller closes it) and the report.
func Salvage(ctx context.Context, opts Options) (*Store, *SalvageReport, error) {
	rep := &SalvageReport{Copy: fmt.Sprintf("%s.pre-salvage-%s", filepath.Clean(opts.Path), time.Now().UTC().Format("20060102T150405Z"))}
	lock, err := lockStore(opts.Path) // no exporter may run while the copy is taken
	if err != nil {
		return nil, nil, err
	}
	err = copyTree(opts.Path, rep.Copy)
	lock.release()
	if err != nil {
		return nil, nil, fmt.Errorf("copying the store aside before salvage: %w", err)
	}
	opts.salvage = rep
	s, err := Open(ctx, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("salvage cannot repair this store (restore it from a backup; it is untouched in %s): %w", rep.Copy, err)
	}
	if rep.Rebuilt, err = s.Rebuild(ctx); err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("deriving rollups and totals again: %w", err)
	}
	if rep.KeptEvents, err = s.countRaw(ctx); err != nil {
		s.Close()
		return nil, nil, err
	}
	if rep.acked.known {
		rep.AckedEvents = rep.acked.events
		if rep.AckedEvents > rep.KeptEvents {
			rep.LostEvents = rep.AckedEvents - rep.KeptEvents
		}
	}
	// From now on the store counts from what it holds.
	err = s.exclusive(ctx, func() error {
		s.ackedEvents = rep.KeptEvents
		if err := s.db.Set(keyAcked, binary.BigEndian.AppendUint64(nil, rep.KeptEvents), pebble.Sync); err != nil {
			return err
		}
		return s.watermark.set(s.groupSeq, s.ackedEvents, true)
	})
	if err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("recording the salvaged count: %w", err)
	}
	return s, rep, nil
}

// copyTree copies the regular files of dir (not its lock) into a new directory to.
func copyTree(dir, to string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if d.Name() == "LOCK" || !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Sync(); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

package usagectl

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"

	"github.com/usagemeter/usagemeter/billing"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/auth"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/retention"
)

func init() { registrars = append(registrars, registerArchive) }

func registerArchive(app *kingpin.Application) {
	ar := app.Command("archive", "Archives of data past its retention (offline: stop the exporter first).")
	path := ar.Flag("storage.path", "The exporter's store directory.").Default("./data").String()
	cfgFile := ar.Flag("config.file", "The exporter's config file (retention section: archive_dir, key_file or key_env).").String()
	var auditKey []byte
	var bill *billing.Service
	open := func() (*ledger.Store, retention.Policy, []byte, error) {
		cfg, err := config.Load(*cfgFile)
		if err != nil {
			return nil, retention.Policy{}, nil, err
		}
		ac, err := auth.ParseConfig(&cfg.Auth)
		if err != nil {
			return nil, retention.Policy{}, nil, err
		}
		if ac.AuditKeyFile != "" {
			if auditKey, err = auth.LoadKey(ac.AuditKeyFile); err != nil {
				return nil, retention.Policy{}, nil, err
			}
		}
		p, err := retention.ParseConfig(&cfg.Retention)
		if err != nil {
			return nil, p, nil, err
		}
		key, err := retention.LoadKey(p.KeyFile, p.KeyEnv)
		if err != nil {
			return nil, p, nil, err
		}
		s, err := ledger.Open(context.Background(), ledger.Options{Path: *path, Meters: cfg.Meters, SeriesLimit: cfg.Metrics.SeriesLimit,
			PerUserLabels: cfg.Metrics.PerUserLabels, Logger: promslog.New(&promslog.Config{Writer: os.Stderr})})
		if err != nil {
			return nil, p, nil, fmt.Errorf("%w (is an exporter still running on this store?)", err)
		}
		if bill, err = billing.NewFromConfig(cfg, s.DB(), s, promslog.New(&promslog.Config{Writer: os.Stderr})); err != nil {
			s.Close()
			return nil, p, nil, err
		}
		return s, p, key, nil
	}

	ar.Command("list", "List the archived months and the archive files.").Action(func(*kingpin.ParseContext) error {
		s, p, _, err := open()
		if err != nil {
			return err
		}
		defer s.Close()
		for _, class := range []string{ledger.ClassRawEvents, ledger.ClassRollups, retention.ClassAudit, retention.ClassInvoices} {
			months, err := s.ArchivedMonths(context.Background(), class)
			if err != nil {
				return err
			}
			for _, m := range months {
				f := filepath.Join(p.ArchiveDir, retention.FileName(class, m))
				state := "file present"
				if _, err := os.Stat(f); err != nil {
					state = "FILE MISSING"
				}
				fmt.Printf("%-11s %s  %s (%s)\n", class, m.Format("2006-01"), f, state)
			}
		}
		return nil
	})

	run := ar.Command("run", "Archive and delete every month past its retention now (the exporter does it every retention.interval).")
	run.Action(func(*kingpin.ParseContext) error {
		s, p, key, err := open()
		if err != nil {
			return err
		}
		defer s.Close()
		if !p.Enabled() {
			return fmt.Errorf("no retention is configured in %s", *cfgFile)
		}
		job := &retention.Job{Store: s, Policy: p, Key: key, AuditKey: auditKey, Invoices: bill, Log: promslog.New(&promslog.Config{Writer: os.Stderr})}
		n, err := job.RunOnce(context.Background())
		fmt.Printf("archived %d month(s)\n", n)
		return err
	})

	restore := ar.Command("restore", "Bring an archived month back into the store; its usage answers are then what they were.")
	period := restore.Flag("period", "Month to restore, YYYY-MM.").Required().String()
	class := restore.Flag("class", "raw_events, rollups, audit, invoices or all (audit months restore newest first).").Default("all").Enum("all", ledger.ClassRawEvents, ledger.ClassRollups, retention.ClassAudit, retention.ClassInvoices)
	restore.Action(func(*kingpin.ParseContext) error {
		m, err := time.Parse("2006-01", *period)
		if err != nil {
			return fmt.Errorf("--period %q: want YYYY-MM", *period)
		}
		s, p, key, err := open()
		if err != nil {
			return err
		}
		defer s.Close()
		classes := []string{ledger.ClassRawEvents, ledger.ClassRollups, retention.ClassAudit, retention.ClassInvoices}
		if *class != "all" {
			classes = []string{*class}
		}
		sort.Strings(classes)
		restored := 0
		for _, c := range classes {
			f := filepath.Join(p.ArchiveDir, retention.FileName(c, m))
			if _, err := os.Stat(f); err != nil && *class == "all" {
				continue // that class was not archived for this month
			}
			var n int
			switch c {
			case retention.ClassInvoices:
				n, err = retention.RestoreInvoiceMonth(context.Background(), s, bill, m, p.ArchiveDir, key)
			case retention.ClassAudit:
				n, err = retention.RestoreAuditMonth(context.Background(), s, m, p.ArchiveDir, key, auditKey)
			default:
				n, err = retention.RestoreMonth(context.Background(), s, c, m, p.ArchiveDir, key)
			}
			if err != nil {
				return fmt.Errorf("restoring %s of %s: %w", c, *period, err)
			}
			fmt.Printf("restored %d keys of %s for %s from %s\n", n, c, *period, f)
			restored++
		}
		if restored == 0 {
			return fmt.Errorf("no archive of %s in %s", *period, p.ArchiveDir)
		}
		return nil
	})
}

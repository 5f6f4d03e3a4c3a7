package usagectl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"

	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/auth"
	"github.com/usagemeter/usagemeter/exporter/ledger"
)

// salvageLedger is `usagectl ledger salvage`: the explicit, audited way to open a store that lost
// acknowledged events, keeping what is intact and reporting what was lost.
func salvageLedger(ctx context.Context, path, cfgFile string, accept bool) error {
	if !accept {
		return errors.New("salvage keeps what is intact and gives up what the store lost: restore a backup if you have one; to salvage, run again with --accept-loss")
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		return err
	}
	ac, err := auth.ParseConfig(&cfg.Auth)
	if err != nil {
		return err
	}
	var key []byte
	if ac.AuditKeyFile != "" {
		if key, err = auth.LoadKey(ac.AuditKeyFile); err != nil {
			return err
		}
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no store at %s: %w", path, err)
	}
	s, rep, err := ledger.Salvage(ctx, ledger.Options{Path: path, Meters: cfg.Meters, SeriesLimit: cfg.Metrics.SeriesLimit, PerUserLabels: cfg.Metrics.PerUserLabels})
	if err != nil {
		return err
	}
	defer s.Close()
	who := "unknown"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	log, err := audit.Open(s.DB(), audit.Options{Key: key})
	if err != nil {
		return fmt.Errorf("the store is salvaged (%s), but the audit trail cannot record it: %w", rep, err)
	}
	_, err = log.Append(ctx, audit.Entry{Subject: who, Kind: "none", Action: "ledger.salvage", Method: "CLI", Path: path, Allow: true, Reason: rep.String()})
	log.Close()
	if err != nil {
		return fmt.Errorf("the store is salvaged (%s), but the audit trail cannot record it: %w", rep, err)
	}
	fmt.Printf("ledger salvaged: %s\n", rep)
	return nil
}

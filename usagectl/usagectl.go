// Package usagectl is the admin command line. Each area registers its commands here.
package usagectl

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/version"

	"github.com/usagemeter/usagemeter/analytics/reportcli"
	"github.com/usagemeter/usagemeter/billing/billingcli"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/simulate"
)

// Main runs usagectl; it returns the exit code.
func Main(args []string) int {
	app := kingpin.New("usagectl", "Administers usagemeter: simulate workloads, check the ledger, bill, report.")
	app.Version(version.Print("usagectl"))
	app.HelpFlag.Short('h')
	// Help asked for is the answer, on stdout (usagectl --help | less); errors go to stderr.
	app.UsageWriter(os.Stdout)
	app.ErrorWriter(os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := promslog.New(&promslog.Config{Writer: os.Stderr})

	var run func() error

	sim := app.Command("simulate", "Send a realistic workload to an exporter.")
	simURL := sim.Flag("url", "Exporter base URL.").Default("http://127.0.0.1:9477").Envar("USAGEMETER_URL").String()
	simToken := sim.Flag("token", "API key or bearer token.").Envar("USAGEMETER_TOKEN").String()
	simTenants := sim.Flag("tenants", "Number of tenants (tenant-0001, ...).").Default("200").Int()
	simEvents := sim.Flag("events", "Stop after this many events (0: no limit).").Default("100000").Int()
	simRate := sim.Flag("rate", "Events per second (0: as fast as the exporter takes them).").Default("0").Float64()
	simDuration := sim.Flag("duration", "Stop after this long (0: no limit).").Default("0").Duration()
	simContinuous := sim.Flag("continuous", "Run until interrupted, at --rate (default 200/s), with seasonality.").Bool()
	simBackfill := sim.Flag("backfill", "Spread event times over this past span (at most 35 days) instead of now.").Default("0").Duration()
	simBatch := sim.Flag("batch", "Events per request.").Default("1000").Int()
	simConc := sim.Flag("concurrency", "Concurrent requests.").Default("8").Int()
	simRetry := sim.Flag("retry-ratio", "Share of batches resent with the same event ids.").Default("0.02").Float64()
	simSeed := sim.Flag("seed", "Random seed (the workload is deterministic for a seed).").Default("1").Uint64()
	simBreakers := sim.Flag("quota-breakers", "Comma-separated tenants given heavy AI usage, to cross their quotas.").String()
	simAnomaly := sim.Flag("anomaly", "A tenant whose traffic jumps twentyfold for 10 minutes, 2 minutes after the start and then every hour.").String()
	simTotals := sim.Flag("print-totals", "Print the exact totals of the acknowledged events (JSON: tenant → meter → value).").Bool()
	simConfig := sim.Flag("config.file", "Exporter config, for its meter definitions in --print-totals.").String()
	sim.Action(func(*kingpin.ParseContext) error {
		run = func() error {
			g := simulate.NewGenerator(*simTenants, *simSeed)
			g.QuotaBreakers = map[string]bool{}
			for _, t := range strings.Split(*simBreakers, ",") {
				if t = strings.TrimSpace(t); t != "" {
					g.QuotaBreakers[t] = true
				}
			}
			start := time.Now()
			if *simAnomaly != "" {
				g.Anomaly = *simAnomaly
				g.AnomalyActive = func(at time.Time) bool {
					d := at.Sub(start) - 2*time.Minute
					return d >= 0 && d%time.Hour < 10*time.Minute
				}
			}
			o := simulate.Options{URL: strings.TrimRight(*simURL, "/"), Token: *simToken, Rate: *simRate, Events: *simEvents,
				Duration: *simDuration, Backfill: *simBackfill, Batch: *simBatch, Concurrency: *simConc, RetryRatio: *simRetry, Log: logger}
			if *simContinuous {
				o.Events = 0
				if o.Rate == 0 {
					o.Rate = 200
				}
				o.Seasonal = true
			}
			if o.Backfill > 35*24*time.Hour {
				return fmt.Errorf("--backfill %s is beyond the 35-day late window", o.Backfill)
			}
			var totals *simulate.Totals
			if *simTotals {
				cfg, err := config.Load(*simConfig)
				if err != nil {
					return err
				}
				totals = simulate.NewTotals(cfg.Meters)
			}
			logger.Info("simulating", "url", o.URL, "tenants", *simTenants, "events", o.Events, "rate", o.Rate)
			st, err := simulate.Run(ctx, g, totals, o)
			logger.Info("simulation done", "sent", st.Sent, "accepted", st.Accepted, "duplicates", st.Duplicates,
				"elapsed", st.Elapsed.Round(time.Millisecond), "events_per_second", int(float64(st.Sent)/st.Elapsed.Seconds()))
			if err != nil {
				return err
			}
			if totals != nil {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(totals)
			}
			return nil
		}
		return nil
	})

	led := app.Command("ledger", "Check or rebuild the ledger offline (stop the exporter first).")
	ledPath := led.Flag("storage.path", "The exporter's store directory.").Default("./data").String()
	ledConfig := led.Flag("config.file", "The exporter's config file (for its meters).").String()
	openLedger := func() (*ledger.Store, error) {
		cfg, err := config.Load(*ledConfig)
		if err != nil {
			return nil, err
		}
		return openExisting(ctx, *ledPath, cfg, logger)
	}
	led.Command("verify", "Recompute every rollup and total from the raw events and compare.").Action(func(*kingpin.ParseContext) error {
		run = func() error {
			s, err := openLedger()
			if err != nil {
				return err
			}
			defer s.Close()
			diffs, err := s.Verify(ctx)
			if err != nil {
				return err
			}
			for _, d := range diffs {
				fmt.Println(d)
			}
			if len(diffs) > 0 {
				return fmt.Errorf("%d differences between the rollups and the raw events", len(diffs))
			}
			fmt.Println("ledger OK: every rollup and total matches the raw events")
			return nil
		}
		return nil
	})
	digestJSON := false
	dig := led.Command("digest", "Print a digest of the ledger (totals, rollups, billing, audit head): cluster replicas that applied the same log print the same ledger line.")
	dig.Flag("json", "Print the digest as JSON, with each section's hash.").BoolVar(&digestJSON)
	dig.Action(func(*kingpin.ParseContext) error {
		run = func() error {
			s, err := openLedger()
			if err != nil {
				return err
			}
			defer s.Close()
			d, err := s.Digest(ctx)
			if err != nil {
				return err
			}
			if digestJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(d)
			}
			fmt.Printf("ledger %s\n", d.Ledger)
			for _, sec := range ledger.DigestSections {
				fmt.Printf("%-9s %s keys=%d\n", sec.Name, d.Sections[sec.Name].SHA256, d.Sections[sec.Name].Keys)
			}
			fmt.Printf("audit     %s\n", d.AuditHead)
			fmt.Printf("events    %d\n", d.Events)
			for log, seq := range d.Applied {
				fmt.Printf("applied   %s %d\n", log, seq)
			}
			return nil
		}
		return nil
	})
	led.Command("rebuild", "Derive every rollup and total again from the raw events.").Action(func(*kingpin.ParseContext) error {
		run = func() error {
			s, err := openLedger()
			if err != nil {
				return err
			}
			defer s.Close()
			n, err := s.Rebuild(ctx)
			if err == nil {
				fmt.Printf("rebuilt from %d raw events\n", n)
			}
			return err
		}
		return nil
	})

	salvage := led.Command("salvage", "Open a store whose write-ahead log lost acknowledged events (stop the exporter first): copy it aside, keep what is intact, derive rollups and totals again, report exactly what was lost, and record it in the audit trail. Prefer restoring a backup.")
	acceptLoss := salvage.Flag("accept-loss", "Required: accept that the acknowledged events the store lost stay lost (their producers must resend them).").Bool()
	salvage.Action(func(*kingpin.ParseContext) error {
		run = func() error { return salvageLedger(ctx, *ledPath, *ledConfig, *acceptLoss) }
		return nil
	})

	for _, r := range registrars {
		r(app)
	}
	// Kingpin returns command line errors and the commands' own errors alike; the app's action
	// runs after the command line has parsed and validated, before any command's action, so it
	// tells them apart: exit 2 for a bad command line, 1 for a command that failed.
	running := false
	app.Action(func(*kingpin.ParseContext) error { running = true; return nil })

	if len(args) == 0 {
		app.UsageWriter(os.Stderr)
		app.Usage(nil)
		return 2
	}
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(os.Stderr, "usagectl: %v\n", err)
		if running {
			return 1
		}
		return 2
	}
	if run == nil {
		return 0
	}
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "usagectl: %v\n", err)
		return 1
	}
	return 0
}

// registrars add the commands of other areas (billing, audit, reports).
var registrars = []func(*kingpin.Application){billingcli.Register, reportcli.Register}

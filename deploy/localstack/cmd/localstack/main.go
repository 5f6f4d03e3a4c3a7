// Command localstack runs usagemeter's local stack (`make run`): the usage exporter with a demo
// catalogue, VictoriaMetrics, vmalert, Alertmanager, an alert sink and `usagectl simulate`, all on
// 127.0.0.1, with their state in one directory so that a second run resumes. Ctrl-C stops
// everything in order and exits 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/usagemeter/usagemeter/deploy/localstack"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		root      = flag.String("root", ".", "the repository checkout: bin/, rules/ and deploy/ are found under it")
		stateDir  = flag.String("state", ".stack", "state directory (data, rendered configs, logs); relative to -root")
		catalogue = flag.String("catalogue", "deploy/localstack/catalogue.yml", "the exporter's catalogue; relative to -root")
		scrape    = flag.Duration("scrape-interval", 5*time.Second, "how often VictoriaMetrics scrapes")
		eval      = flag.Duration("eval-interval", 10*time.Second, "how often vmalert evaluates the rules")
		simulate  = flag.Bool("simulate", true, "run usagectl simulate")
		simArgs   = flag.String("simulate-args", "--continuous --rate 50 --tenants 20 --quota-breakers tenant-0003,tenant-0007 --anomaly tenant-0011", "arguments of usagectl simulate after --url")
		verbose   = flag.Bool("v", false, "debug logging")
		clustered = flag.Bool("cluster", false, "the cluster topology (make run-cluster): three NATS JetStream servers and two exporter replicas in place of the single exporter")
	)
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	at := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(*root, p)
	}
	cfg := localstack.Config{
		StateDir:           at(*stateDir),
		BinDir:             at("bin"),
		ToolsDir:           at("bin/tools"),
		RulesDir:           at("rules"),
		AlertmanagerConfig: at("deploy/alertmanager/alertmanager.yml"),
		Catalogue:          at(*catalogue),
		Ports:              localstack.DefaultPorts(),
		ScrapeInterval:     *scrape,
		EvalInterval:       *eval,
		Logger:             logger,
	}
	if *clustered {
		cfg.Cluster = localstack.DefaultCluster()
	}
	if *simulate {
		cfg.Simulate = simulateArgs(*simArgs, time.Now())
	}
	if g := localstack.FindGrafana(exec.LookPath); g != nil {
		g.PluginDir, g.Dashboards = at("plugin/dist"), at("dashboards/json")
		cfg.Grafana = g
		logger.Info("Grafana found: starting it with the plugin, datasources and dashboards", "binary", g.Binary, "home", g.HomePath)
	} else {
		logger.Info("no Grafana found (set GRAFANA_HOME or put grafana on the PATH to include it)")
	}

	// Ctrl-C during start-up cancels it; afterwards it stops the stack.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger.Info("starting the local stack", "state", cfg.StateDir)
	stack, err := localstack.Start(ctx, cfg)
	if err != nil {
		logger.Error("local stack did not start", "err", err)
		return 1
	}
	u := stack.URLs
	if u.Mailpit != "" {
		// tenant-0003 is a quota breaker of the simulator: its admin's e-mail shows in mailpit
		// minutes after the start.
		if created, err := localstack.EnsureDemoNotification(ctx, u.Exporter, "tenant-0003", "admin@tenant-0003.example"); err != nil {
			logger.Warn("could not create the demo notification rule", "err", err)
		} else if created {
			logger.Info("demo notification rule created: tenant-0003 at 80 % of its AI token quota, e-mail to mailpit")
		}
	}
	if cfg.Cluster != nil {
		printCluster(cfg.StateDir, stack)
	} else {
		fmt.Printf(`
usagemeter local stack is up (state in %s, logs in %s)

  usage exporter     %s  (/metrics, /v1/usage, /v1/meters, /v1/tenants/{tenant}/quotas)
  VictoriaMetrics    %s
  VictoriaMetrics UI %s
  vmalert            %s/vmalert/groups
  Alertmanager       %s
  alert sink         %s  (pages and team notifications are printed below)
  mailpit            %s  (tenants' notification e-mails)

Reload the catalogue after editing it: curl -X POST %s/-/reload
Ctrl-C stops everything.

`, cfg.StateDir, stack.Logs, u.Exporter, u.VictoriaMetrics, u.VMUI, u.VMAlert, u.Alertmanager, u.Sink, mailpitURL(u.Mailpit), u.Exporter)
	}

	code := 0
	select {
	case <-ctx.Done():
		logger.Info("stopping the local stack")
	case err := <-stack.Exited():
		logger.Error("a program of the stack stopped; stopping the rest", "err", err)
		code = 1
	}
	stop() // from here a second Ctrl-C kills the supervisor at once
	if err := stack.Stop(); err != nil {
		logger.Error("stopping the local stack", "err", err)
		return 1
	}
	logger.Info("local stack stopped; state kept", "state", cfg.StateDir)
	return code
}

// simulateArgs splits the simulator's arguments and, unless they name a seed, adds one taken
// from the clock. The simulator's event ids are deterministic for a seed and the stack's state
// is kept between runs, so the same seed at every start would send only duplicates (all
// refused as such) after the first run, and the dashboards would stop moving.
func simulateArgs(args string, now time.Time) []string {
	out := strings.Fields(args)
	for _, a := range out {
		if a == "--seed" || strings.HasPrefix(a, "--seed=") {
			return out
		}
	}
	return append(out, "--seed", strconv.FormatInt(now.Unix(), 10))
}

// printCluster prints one line per component with its URL; scripts look for the lines
// "exporter replica N URL" and "nats server N URL".
func printCluster(state string, stack *localstack.Stack) {
	u := stack.URLs
	fmt.Printf("\nusagemeter cluster is up (state in %s, logs in %s)\n\n", state, stack.Logs)
	for i, url := range u.NATS {
		fmt.Printf("nats server %d %s\n", i+1, url)
	}
	for i, url := range u.Replicas {
		fmt.Printf("exporter replica %d %s\n", i+1, url)
	}
	fmt.Printf("victoriametrics %s\n", u.VictoriaMetrics)
	fmt.Printf("victoriametrics ui %s\n", u.VMUI)
	fmt.Printf("vmalert %s/vmalert/groups\n", u.VMAlert)
	fmt.Printf("alertmanager %s\n", u.Alertmanager)
	fmt.Printf("alert sink %s\n", u.Sink)
	if u.Mailpit != "" {
		fmt.Printf("mailpit %s\n", u.Mailpit)
	}
	if u.Grafana != "" {
		fmt.Printf("grafana %s\n", u.Grafana)
	}
	fmt.Printf("simulator -> %s\n\nEvery replica takes POST /v1/events and serves reads; Ctrl-C stops everything.\n\n", u.Exporter)
}

func mailpitURL(u string) string {
	if u == "" {
		return "(not installed: make tools)"
	}
	return u
}

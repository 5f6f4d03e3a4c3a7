// Package server wires the usage exporter: flags, configuration and its reload, the ledger, the
// collectors, the HTTP API behind its guard, and a graceful shutdown that loses nothing it
// acknowledged.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/api"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/auth"
	"github.com/usagemeter/usagemeter/exporter/collector"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/quota"
)

// Options are the exporter's flags.
type Options struct {
	Web         *web.FlagConfig
	StoragePath string
	ConfigFile  string
	Insecure    bool
	Shutdown    time.Duration
	Log         *promslog.Config
}

// Main runs the exporter with the given arguments; it returns the process exit code.
func Main(args []string) int {
	app := kingpin.New("usage-exporter", "Meters the usage of a multi-tenant SaaS platform: an exact, durable ledger of usage events and per-tenant Prometheus metrics.")
	opts := Options{Log: &promslog.Config{}}
	opts.Web = kingpinflag.AddFlags(app, ":9477")
	app.Flag("storage.path", "Directory of the embedded store.").Default("./data").StringVar(&opts.StoragePath)
	app.Flag("config.file", "Configuration file: meters, plans, tenants, auth, billing (YAML). Built-in defaults when absent.").StringVar(&opts.ConfigFile)
	app.Flag("web.insecure", "Allow listening beyond loopback without any authentication configured.").BoolVar(&opts.Insecure)
	app.Flag("web.shutdown-timeout", "How long to wait for in-flight requests on shutdown.").Default("30s").DurationVar(&opts.Shutdown)
	flag.AddFlags(app, opts.Log)
	app.Version(version.Print("usage-exporter"))
	app.HelpFlag.Short('h')
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(os.Stderr, "usage-exporter: %v\n", err)
		return 2
	}
	logger := promslog.New(opts.Log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, opts, logger); err != nil {
		logger.Error("usage-exporter failed", "err", err)
		return 1
	}
	return 0
}

// Run serves until ctx is done.
func Run(ctx context.Context, opts Options, logger *slog.Logger) error {
	cfg, err := config.Load(opts.ConfigFile)
	if err != nil {
		return fmt.Errorf("loading configuration: %w", err)
	}
	logger.Info("starting usage-exporter", "version", version.Info(), "config", cfg.File, "storage", opts.StoragePath)
	var current atomic.Pointer[config.Config]
	current.Store(cfg)

	reg := prometheus.NewRegistry()
	var store *ledger.Store
	var ready atomic.Bool
	self := api.NewSelfMetrics(reg, func() float64 {
		if !ready.Load() {
			return 0
		}
		return float64(store.SizeBytes())
	})
	var pseudonymize func(string) string
	if cfg.Metrics.PerUserLabels {
		key, err := os.ReadFile(cfg.Metrics.UserLabelKeyFile)
		if err != nil {
			return fmt.Errorf("reading metrics.user_label_key_file: %w", err)
		}
		if len(key) < 16 {
			return fmt.Errorf("metrics.user_label_key_file %s holds %d bytes; a pseudonymisation key needs at least 16", cfg.Metrics.UserLabelKeyFile, len(key))
		}
		pseudonymize = func(user string) string { return auth.Pseudonymize(key, user) }
	}
	store, err = ledger.Open(ctx, ledger.Options{
		Path: opts.StoragePath, Meters: cfg.Meters, SeriesLimit: cfg.Metrics.SeriesLimit, PerUserLabels: cfg.Metrics.PerUserLabels,
		Logger: logger.With("component", "ledger"), OnCommit: self.ObserveCommit,
	})
	if err != nil {
		return err
	}
	ready.Store(true)
	defer func() {
		ready.Store(false)
		if err := store.Close(); err != nil {
			logger.Error("closing the store", "err", err)
		}
	}()

	quotas := quota.New(store, current.Load, nil)
	usage := collector.NewUsage(store, pseudonymize)
	reg.MustRegister(
		quota.NewCollector(quotas),
		versioncollector.NewCollector("usage_exporter"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	var reloadMu sync.Mutex
	reload := func(context.Context) error {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		next, err := config.Load(opts.ConfigFile)
		if err == nil && !reflect.DeepEqual(next.Meters, current.Load().Meters) {
			err = errors.New("meter definitions changed: restart the exporter to rebuild rollups from the raw events")
		}
		if err != nil {
			self.ReloadSuccess.Set(0)
			logger.Error("configuration reload failed; keeping the previous one", "err", err)
			return err
		}
		current.Store(next)
		self.ReloadSuccess.Set(1)
		self.ReloadTime.SetToCurrentTime()
		logger.Info("configuration reloaded", "file", next.File)
		return nil
	}

	a := &api.API{Store: store, Quotas: quotas, Metrics: self, Log: logger, Config: current.Load, Reload: reload, Ready: ready.Load}
	routes := a.Routes()
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.Method+" "+rt.Pattern, rt.Handler)
	}
	mux.Handle("GET /metrics", collector.Handler(usage, reg, func(err error) { logger.Error("rendering /metrics", "err", err) }))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { landing(w, routes) })

	listeners, err := listen(opts, logger)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				_ = reload(ctx)
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				store.PruneActivity(now)
			case <-ctx.Done():
				return
			}
		}
	}()

	errc := make(chan error, 1)
	go func() { errc <- web.ServeMultiple(listeners, srv, opts.Web, logger) }()
	select {
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving HTTP: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	logger.Info("shutting down: finishing in-flight requests", "timeout", opts.Shutdown)
	sctx, cancel := context.WithTimeout(context.Background(), opts.Shutdown)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("in-flight requests did not finish in time", "err", err)
	}
	return nil
}

// listen opens the listeners. Without any authentication configured the exporter listens on
// loopback only, unless --web.insecure says otherwise.
func listen(opts Options, logger *slog.Logger) ([]net.Listener, error) {
	authConfigured := opts.Web.WebConfigFile != nil && *opts.Web.WebConfigFile != ""
	var out []net.Listener
	for _, addr := range *opts.Web.WebListenAddresses {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("--web.listen-address %q: %w", addr, err)
		}
		if !authConfigured && !opts.Insecure {
			switch {
			case host == "":
				addr = net.JoinHostPort("127.0.0.1", port)
				logger.Warn("no authentication is configured: listening on loopback only (configure auth, or pass --web.insecure)", "address", addr)
			case !isLoopback(host):
				return nil, fmt.Errorf("--web.listen-address %q is not loopback and no authentication is configured: configure auth or pass --web.insecure", addr)
			}
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listening on %s: %w", addr, err)
		}
		logger.Info("listening", "address", l.Addr().String())
		out = append(out, l)
	}
	return out, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func landing(w http.ResponseWriter, routes []route.Route) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, "<html><head><title>usage-exporter</title></head><body><h1>usage-exporter</h1><p>%s</p><ul><li><a href=\"/metrics\">/metrics</a></li>", version.Info())
	for _, r := range routes {
		fmt.Fprintf(w, "<li>%s %s</li>", r.Method, r.Pattern)
	}
	fmt.Fprint(w, "</ul></body></html>")
}

// Package server wires the usage exporter: flags, configuration and its reload, the ledger, the
// collectors, the HTTP API behind its guard (authentication, OPA policies, audit trail), and a
// graceful shutdown that loses nothing it acknowledged.
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
	"golang.org/x/time/rate"

	"github.com/usagemeter/usagemeter/analytics"
	"github.com/usagemeter/usagemeter/analytics/insights"
	"github.com/usagemeter/usagemeter/billing"
	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/exporter/api"
	"github.com/usagemeter/usagemeter/exporter/api/openapi"
	"github.com/usagemeter/usagemeter/exporter/api/route"
	"github.com/usagemeter/usagemeter/exporter/audit"
	"github.com/usagemeter/usagemeter/exporter/auth"
	"github.com/usagemeter/usagemeter/exporter/auth/webserve"
	"github.com/usagemeter/usagemeter/exporter/authz"
	"github.com/usagemeter/usagemeter/exporter/backup"
	"github.com/usagemeter/usagemeter/exporter/cluster"
	"github.com/usagemeter/usagemeter/exporter/collector"
	"github.com/usagemeter/usagemeter/exporter/commit"
	"github.com/usagemeter/usagemeter/exporter/guard"
	"github.com/usagemeter/usagemeter/exporter/ledger"
	"github.com/usagemeter/usagemeter/exporter/limit"
	"github.com/usagemeter/usagemeter/exporter/quota"
	"github.com/usagemeter/usagemeter/exporter/retention"
	"github.com/usagemeter/usagemeter/notify"
)

// Options are the exporter's flags.
type Options struct {
	Web         *web.FlagConfig
	StoragePath string
	// StorageMinFreeBytes is the free space below which writes are refused (507).
	StorageMinFreeBytes int64
	ConfigFile          string
	Insecure            bool
	Log                 *promslog.Config
	// Cluster turns on cluster mode when its NATS URL is set (docs/cluster.md).
	Cluster cluster.Options
}

// Main runs the exporter with the given arguments; it returns the process exit code.
func Main(args []string) int {
	app := kingpin.New("usage-exporter", "Meters the usage of a multi-tenant SaaS platform: an exact, durable ledger of usage events and per-tenant Prometheus metrics.")
	opts := Options{Log: &promslog.Config{}}
	opts.Web = kingpinflag.AddFlags(app, ":9477")
	app.Flag("storage.path", "Directory of the embedded store.").Default("./data").StringVar(&opts.StoragePath)
	minFree := app.Flag("storage.min-free-bytes", "Free space kept on the store's filesystem: writes that would leave less are refused with 507 Insufficient Storage, and resume once space is freed. 0 keeps no reserve (not advised: the store's own flushes need room).").Default("256MiB").Bytes()
	app.Flag("config.file", "Configuration file: meters, plans, tenants, auth, billing (YAML). Built-in defaults when absent.").StringVar(&opts.ConfigFile)
	app.Flag("web.insecure", "Allow listening beyond loopback without any authentication configured.").BoolVar(&opts.Insecure)
	cluster.AddFlags(app, &opts.Cluster)
	flag.AddFlags(app, opts.Log)
	app.Version(version.Print("usage-exporter"))
	app.HelpFlag.Short('h')
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(os.Stderr, "usage-exporter: %v\n", err)
		return 2
	}
	opts.StorageMinFreeBytes = int64(*minFree)
	logger := promslog.New(opts.Log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, opts, logger); err != nil {
		logger.Error("usage-exporter failed", "err", err)
		return 1
	}
	return 0
}

// Server is a built exporter, ready to serve.
type Server struct {
	Handler http.Handler
	// Routes are every route behind the guard (for the route-walk test).
	Routes []route.Route
	Store  *ledger.Store
	// AuthEnabled is false in open mode (no credentials configured).
	AuthEnabled bool
	Reload      func(context.Context) error

	// HTTP are the server's timeouts and limits (the config's http section, read at start).
	HTTP  config.HTTP
	conns *limit.Conns

	closers   []func()
	engine    *authz.Engine
	retention *retention.Job
	insights  *insights.Index
	billing   *billing.Service
	notify    *notifier
}

// Close releases what Build opened, the store last.
func (s *Server) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// loadConfig reads the config file and the auth section it holds.
func loadConfig(path string) (*config.Config, auth.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, auth.Config{}, fmt.Errorf("loading configuration: %w", err)
	}
	ac, err := auth.ParseConfig(&cfg.Auth)
	if err == nil {
		_, err = billing.Catalogue(cfg)
	}
	if err == nil {
		_, err = retention.ParseConfig(&cfg.Retention)
	}
	if err == nil {
		_, err = notify.ParseConfig(&cfg.Notifications)
	}
	if err != nil {
		var fe *config.FieldError
		if errors.As(err, &fe) && fe.File == "" {
			fe.File = path
		}
		return nil, auth.Config{}, fmt.Errorf("loading configuration: %w", err)
	}
	return cfg, ac, nil
}

// Build opens the store and assembles the handler.
func Build(ctx context.Context, opts Options, logger *slog.Logger) (_ *Server, err error) {
	cfg, authCfg, err := loadConfig(opts.ConfigFile)
	if err != nil {
		return nil, err
	}
	logger.Info("starting usage-exporter", "version", version.Info(), "config", cfg.File, "storage", opts.StoragePath)
	// A local, not the named result: `return nil, err` must not hide what is to be closed.
	srv := &Server{AuthEnabled: authCfg.Enabled()}
	defer func() {
		if err != nil {
			srv.Close()
		}
	}()
	var current atomic.Pointer[config.Config]
	current.Store(cfg)

	var pseudonymize func(tenant, user string) string
	if cfg.Metrics.PerUserLabels {
		key, err := auth.LoadKey(cfg.Metrics.UserLabelKeyFile)
		if err != nil {
			return nil, fmt.Errorf("metrics.user_label_key_file: %w", err)
		}
		pseudonymize = func(tenant, user string) string { return auth.Pseudonymize(key, tenant, user) }
	}

	reg := prometheus.NewRegistry()
	var store *ledger.Store
	var ready atomic.Bool
	self := api.NewSelfMetrics(reg, func() float64 {
		if !ready.Load() {
			return 0
		}
		return float64(store.SizeBytes())
	})
	// The insight index follows every group commit (the writer hands it each accepted event)
	// rather than scanning raw events per request.
	changes := ledger.NewChanges(0, insights.RawTypes()...)
	// Notification rules are evaluated after every group commit (a non-blocking poke).
	var afterCommit atomic.Pointer[func()]
	store, err = ledger.Open(ctx, ledger.Options{
		Path: opts.StoragePath, Meters: cfg.Meters, SeriesLimit: cfg.Metrics.SeriesLimit, PerUserLabels: cfg.Metrics.PerUserLabels,
		Logger: logger.With("component", "ledger"),
		OnCommit: func(d time.Duration, events int) {
			self.ObserveCommit(d, events)
			if f := afterCommit.Load(); f != nil {
				(*f)()
			}
		},
		MinFreeBytes: opts.StorageMinFreeBytes,
	})
	if err != nil {
		return nil, err
	}
	changes.Attach(store)
	srv.Store = store
	ready.Store(true)
	srv.closers = append(srv.closers, func() {
		ready.Store(false)
		if err := store.Close(); err != nil {
			logger.Error("closing the store", "err", err)
		}
	})

	authenticator, err := auth.New(ctx, authCfg, auth.Options{Logger: logger.With("component", "auth")})
	if err != nil {
		return nil, fmt.Errorf("authentication: %w", err)
	}
	engine, err := authz.New(ctx, authz.Options{Path: authCfg.PolicyPath, Logger: logger.With("component", "authz")})
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	srv.engine = engine
	var auditKey []byte
	if authCfg.AuditKeyFile != "" {
		if auditKey, err = auth.LoadKey(authCfg.AuditKeyFile); err != nil {
			return nil, fmt.Errorf("auth.audit_key_file: %w", err)
		}
	}
	auditLog, err := audit.Open(store.DB(), audit.Options{Key: auditKey, Logger: logger.With("component", "audit"), MaxFieldBytes: cfg.HTTP.AuditFieldMaxBytes})
	if err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	srv.closers = append(srv.closers, func() { auditLog.Close() })
	srv.HTTP = cfg.HTTP
	limits := limit.NewMetrics(logger.With("component", "limit"))
	srv.conns = limit.NewConns(cfg.HTTP.MaxConnections, limits)
	requests := limit.NewRequests(cfg.HTTP.MaxRequestsInFlight, cfg.HTTP.MaxRequestsInFlightPerCredential, limits)
	if err := limits.Register(reg); err != nil {
		return nil, err
	}
	g, err := guard.New(guard.Options{Auth: authenticator, Authz: engine, Audit: auditLog, Logger: logger.With("component", "guard"),
		Callers: requests, DenialAudit: rate.NewLimiter(rate.Limit(cfg.HTTP.DenialAuditRate), cfg.HTTP.DenialAuditBurst)})
	if err != nil {
		return nil, err
	}

	if policy, _ := retention.ParseConfig(&cfg.Retention); policy.Enabled() {
		key, err := retention.LoadKey(policy.KeyFile, policy.KeyEnv)
		if err != nil {
			return nil, err
		}
		srv.retention = &retention.Job{Store: store, Policy: policy, Key: key, AuditKey: auditKey, Log: logger.With("component", "retention")}
		logger.Info("retention enabled", "raw_events", policy.RawEvents, "rollups", policy.Rollups, "archive_dir", policy.ArchiveDir)
	}
	backups, err := newBackupHandler(cfg, store, logger.With("component", "backup"))
	if err != nil {
		return nil, err
	}
	bill, err := billing.NewFromConfig(cfg, store.DB(), store, logger.With("component", "billing"))
	if err != nil {
		return nil, fmt.Errorf("billing: %w", err)
	}
	if srv.retention != nil {
		srv.retention.Invoices = bill
	}
	// Plan changes made through the billing API take precedence over the config's mapping.
	quotas := quota.New(store, current.Load, bill)
	usage := collector.NewUsage(store, pseudonymize)
	notifications, err := srv.buildNotifications(cfg, store, reg, quotas, bill, &afterCommit, logger.With("component", "notify"))
	if err != nil {
		return nil, err
	}
	reg.MustRegister(
		collector.Storage{Space: store.Space, Corruptions: store.CorruptionsFound},
		quota.NewCappedCollector(quotas, usage.Admission()),
		engine,
		g,
		backups,
		versioncollector.NewCollector("usage_exporter"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	reg.MustRegister(bill.Collectors()...)
	bill.Audit = auditLog
	srv.billing = bill

	var reloadMu sync.Mutex
	srv.Reload = func(ctx context.Context) error {
		reloadMu.Lock()
		defer reloadMu.Unlock()
		next, nextAuth, err := loadConfig(opts.ConfigFile)
		if err == nil && !reflect.DeepEqual(next.Meters, current.Load().Meters) {
			err = errors.New("meter definitions changed: restart the exporter to rebuild rollups from the raw events")
		}
		if err == nil && next.Metrics != current.Load().Metrics {
			err = errors.New("metrics settings changed: restart the exporter to apply them")
		}
		if err == nil && next.HTTP != current.Load().HTTP {
			err = errors.New("http settings (timeouts and limits) changed: restart the exporter to apply them")
		}
		var a *auth.Authenticator
		if err == nil {
			a, err = auth.New(ctx, nextAuth, auth.Options{Logger: logger.With("component", "auth")})
		}
		if err == nil {
			err = bill.Reload(next)
		}
		if err == nil {
			err = g.SetAuthenticator(a)
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

	srv.insights = &insights.Index{Store: store, Changes: changes, Log: logger.With("component", "insights")}
	a := &api.API{Store: store, Quotas: quotas, Metrics: self, Log: logger, Config: current.Load, Reload: srv.Reload, Ready: ready.Load,
		Authorize: func(r *http.Request, action, tenant string) error { return g.Check(r, action, tenant, guard.User(r)) },
		Admit:     engine.Admit, Audit: auditLog, BillingHold: bill.BillingHold,
		// Single node: ingest commits to this store; cluster mode swaps in the log (below).
		Committer: commit.Local{Store: store}}
	an := &analytics.Service{
		Store:  store,
		Config: current.Load,
		Pricing: insights.Pricing{
			Catalogue: bill.Catalogue,
			Stock:     billing.StockFunc(cfg.Meters),
			PlanAt:    bill.PlanAt,
		},
		Insights:  srv.insights,
		Audit:     auditLog,
		Authorize: a.Authorize,
		May:       func(r *http.Request, action, tenant string) bool { return g.Allowed(r, action, tenant) },
		Log:       logger.With("component", "analytics"),
	}
	srv.notify.eval.Summaries = executiveSummaries(store, current.Load, an)
	srv.Routes = append(append(append(append(append(a.Routes(), bill.Routes()...), an.Routes()...), backups.Routes()...), notifications.Routes()...),
		// The API's description is public, as the API's shape is no secret.
		route.Route{Method: http.MethodGet, Pattern: "/v1/openapi.json", Action: route.ActionPublic, Handler: openapi.Handler},
		route.Route{Method: http.MethodGet, Pattern: "/debug/pprof/", Action: route.ActionAdmin, Handler: pprof.Index},
		route.Route{Method: http.MethodGet, Pattern: "/debug/pprof/profile", Action: route.ActionAdmin, Audit: true, Streams: true, Handler: pprof.Profile},
		route.Route{Method: http.MethodGet, Pattern: "/debug/pprof/trace", Action: route.ActionAdmin, Audit: true, Streams: true, Handler: pprof.Trace},
	)
	if opts.Cluster.Enabled() {
		srv.Routes = cluster.RefuseUnreplicated(srv.Routes)
	}
	mux := http.NewServeMux()
	for _, rt := range srv.Routes {
		if rt.Streams {
			rt.Handler = limit.WriteDeadline(cfg.HTTP.ExportWriteTimeout, rt.Handler)
		}
		g.Handle(mux, rt)
	}
	// /metrics is protected like any exporter's: by the web config's TLS and basic auth.
	mux.Handle("GET /metrics", collector.Handler(usage, reg, func(err error) { logger.Error("rendering /metrics", "err", err) }))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { landing(w, srv.Routes) })
	var h http.Handler = problemFallback(mux)
	if opts.Cluster.Enabled() {
		// Cluster mode: ingests reach the ledger through the replicated log, and reads may ask
		// for a log position. Closed before the store (closers run in reverse).
		node, err := cluster.Start(ctx, opts.Cluster, store, logger.With("component", "cluster"))
		if err != nil {
			return nil, fmt.Errorf("cluster mode: %w", err)
		}
		srv.closers = append(srv.closers, node.Close)
		a.Committer = node
		a.Ready = func() bool { return ready.Load() && node.Err() == nil }
		reg.MustRegister(node)
		h = node.Middleware(h)
	}
	// Probes are not counted: a liveness probe refused under load would get the process
	// restarted, which helps nobody.
	srv.Handler = requests.Handler(h, func(r *http.Request) bool { return r.URL.Path == "/-/healthy" || r.URL.Path == "/-/ready" })
	return srv, nil
}

// Run serves until ctx is done.
func Run(ctx context.Context, opts Options, logger *slog.Logger) error {
	srv, err := Build(ctx, opts, logger)
	if err != nil {
		return err
	}
	defer srv.Close()
	if srv.AuthEnabled && (opts.Web.WebConfigFile == nil || *opts.Web.WebConfigFile == "") {
		logger.Warn("authentication is configured but /metrics is open: protect it with --web.config.file (basic_auth_users, TLS)")
	}
	listeners, err := listen(opts, srv.AuthEnabled, logger)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				_ = srv.Reload(ctx)
			case <-ctx.Done():
				return
			}
		}
	}()
	go srv.engine.Watch(ctx)
	go srv.billing.DunningLoop(ctx, time.Hour) // dunning steps are days apart: hourly is on time
	if srv.retention != nil {
		go srv.retention.Run(ctx)
	}
	// Built at start and kept current, so that no insights request waits for a scan. It stops
	// when Run returns, before the store closes.
	followCtx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		srv.insights.Follow(followCtx, 2*time.Second)
	}()
	defer func() {
		stopFollowing()
		<-followed
	}()
	// Notifications stop before the store closes.
	defer srv.notify.run(ctx)()
	go func() {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				srv.Store.PruneActivity(now)
			case <-ctx.Done():
				return
			}
		}
	}()
	for i, l := range listeners {
		listeners[i] = srv.conns.Listener(l)
	}
	hs := srv.httpServer(logger)
	configFile := ""
	if opts.Web.WebConfigFile != nil {
		configFile = *opts.Web.WebConfigFile
	}
	// Serves until ctx is done, then lets in-flight requests finish; the store closes after.
	return webserve.ServeListeners(ctx, listeners, hs, configFile, logger)
}

// httpServer is the HTTP server with the config's timeouts and limits. ReadTimeout covers the
// body: a body sent too slowly fails to read, and the handler answers 408 with nothing stored.
func (s *Server) httpServer(logger *slog.Logger) *http.Server {
	h := s.HTTP
	return &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: h.ReadHeaderTimeout,
		ReadTimeout:       h.ReadTimeout,
		WriteTimeout:      h.WriteTimeout,
		IdleTimeout:       h.IdleTimeout,
		MaxHeaderBytes:    h.MaxHeaderBytes,
		ConnState:         s.conns.ConnState,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// listen opens the listeners. Without any authentication configured the exporter listens on
// loopback only, unless --web.insecure says otherwise.
func listen(opts Options, authEnabled bool, logger *slog.Logger) ([]net.Listener, error) {
	var out []net.Listener
	fail := func(err error) ([]net.Listener, error) {
		for _, l := range out {
			l.Close()
		}
		return nil, err
	}
	for _, addr := range *opts.Web.WebListenAddresses {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fail(fmt.Errorf("--web.listen-address %q: %w", addr, err))
		}
		if !authEnabled && !opts.Insecure {
			switch {
			case host == "":
				addr = net.JoinHostPort("127.0.0.1", port)
				logger.Warn("no authentication is configured: listening on loopback only (configure auth, or pass --web.insecure)", "address", addr)
			case !isLoopback(host):
				return fail(fmt.Errorf("--web.listen-address %q is not loopback and no authentication is configured: configure auth or pass --web.insecure", addr))
			}
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fail(fmt.Errorf("listening on %s: %w", addr, err))
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

// newBackupHandler serves online backups, sealed with the archive key when the config names one
// (retention.key_file or retention.key_env), whether or not retention itself is enabled.
func newBackupHandler(cfg *config.Config, store *ledger.Store, logger *slog.Logger) (*backup.Handler, error) {
	policy, err := retention.ParseConfig(&cfg.Retention)
	if err != nil {
		return nil, err
	}
	var key []byte
	if policy.KeyFile != "" || policy.KeyEnv != "" {
		if key, err = retention.LoadKey(policy.KeyFile, policy.KeyEnv); err != nil {
			return nil, fmt.Errorf("backups: %w", err)
		}
	} else {
		logger.Info("no archive key is configured (retention.key_file or retention.key_env): backups will not be encrypted")
	}
	return backup.NewHandler(store, key, logger), nil
}

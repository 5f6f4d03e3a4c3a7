// Package localstack starts and stops usagemeter's local stack: the usage exporter,
// VictoriaMetrics scraping it, vmalert evaluating rules/ and notifying Alertmanager, Alertmanager,
// an alert sink standing in for the pager, and optionally `usagectl simulate` feeding traffic.
//
// Every program runs on 127.0.0.1 with its state under one directory, so a second start resumes
// where the first stopped. The ports and intervals are parameters, so that end-to-end tests run
// the same stack on free ports with one-second intervals. It builds nothing: the binaries must
// exist (`make build tools`).
package localstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Ports of the stack's servers; 0 picks a free port.
type Ports struct {
	Exporter, VictoriaMetrics, VMAlert, Alertmanager, Sink, Grafana int
	// Mailpit's SMTP server (the catalogue's notifications.smtp.addr) and its web UI and API.
	MailpitSMTP, MailpitUI int
}

// DefaultPorts are the conventional ports of each program (the sink's is the one written in
// deploy/alertmanager/alertmanager.yml).
func DefaultPorts() Ports {
	return Ports{Exporter: 9477, VictoriaMetrics: 8428, VMAlert: 8880, Alertmanager: 9093, Sink: 9099, Grafana: 3000,
		MailpitSMTP: 1025, MailpitUI: 8025}
}

// Config describes a stack.
type Config struct {
	StateDir string // everything the stack keeps: data, rendered configs, logs
	BinDir   string // usage-exporter and usagectl
	ToolsDir string // victoria-metrics, vmalert, alertmanager

	RulesDir           string // vmalert loads RulesDir/*.yml
	AlertmanagerConfig string // deploy/alertmanager/alertmanager.yml
	Catalogue          string // the exporter's --config.file, used in place so edits can be reloaded

	Ports          Ports
	ScrapeInterval time.Duration // VictoriaMetrics scraping the exporter
	EvalInterval   time.Duration // vmalert's -evaluationInterval
	AlertTimings   *AlertTimings // nil keeps the Alertmanager file's timings

	// WebhookURL replaces DefaultSinkBase in the Alertmanager webhooks. Empty: the stack serves
	// its own AlertSink on Ports.Sink.
	WebhookURL string
	// Simulate, when not nil, starts `usagectl simulate --url <exporter> <Simulate...>` last.
	Simulate []string
	// Grafana, when not nil, starts Grafana with the plugin, datasources and dashboards.
	Grafana *Grafana
	// Cluster, when not nil, runs NATS servers and exporter replicas in place of the single
	// exporter (cluster.go).
	Cluster *Cluster

	ReadyTimeout time.Duration // per program; default 60s
	StopTimeout  time.Duration // per program, from SIGTERM to SIGKILL; default 30s
	Logger       *slog.Logger
}

// URLs of a started stack.
type URLs struct {
	Exporter, VictoriaMetrics, VMUI, VMAlert, Alertmanager, Sink, Grafana string
	// Replicas and NATS are the cluster's exporter replicas and NATS servers (Exporter is the
	// first replica).
	Replicas, NATS []string
	// Mailpit is the web UI of the mail catcher the exporter's notification e-mails go to
	// (empty when ToolsDir has no mailpit).
	Mailpit string
}

// Stack is a started stack.
type Stack struct {
	URLs URLs
	Logs string // directory of the programs' logs

	cfg    Config
	procs  []*running // in start order
	sink   *http.Server
	lock   *os.File
	exited chan error
	once   sync.Once
}

// Start brings the stack up and returns once every server answers its readiness check. On error,
// whatever was started is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.ScrapeInterval <= 0 || cfg.EvalInterval <= 0 {
		return nil, errors.New("localstack: scrape and evaluation intervals must be positive")
	}
	s := &Stack{cfg: cfg, exited: make(chan error, 1), Logs: filepath.Join(cfg.StateDir, "logs")}
	for _, d := range []string{s.Logs, s.path("config"), s.path("data"), s.path("victoria-metrics"), s.path("alertmanager")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating state directory: %w", err)
		}
	}
	if s.lock, err = lockDir(cfg.StateDir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()

	p := cfg.Ports
	for _, port := range []*int{&p.Exporter, &p.VictoriaMetrics, &p.VMAlert, &p.Alertmanager, &p.Sink, &p.Grafana, &p.MailpitSMTP, &p.MailpitUI} {
		if *port == 0 {
			if *port, err = freePort(); err != nil {
				return nil, err
			}
		}
	}
	// The ports asked for (those picked free just now need no check): one taken stops the start
	// here, naming its holder, rather than as an early exit of the program that wanted it.
	fixed := map[string]int{"usage-exporter": cfg.Ports.Exporter, "victoria-metrics": cfg.Ports.VictoriaMetrics,
		"vmalert": cfg.Ports.VMAlert, "alertmanager": cfg.Ports.Alertmanager}
	if cfg.WebhookURL == "" {
		fixed["alert sink"] = cfg.Ports.Sink
	}
	if cfg.Grafana != nil {
		fixed["grafana"] = cfg.Ports.Grafana
	}
	mailpit := filepath.Join(cfg.ToolsDir, "mailpit")
	if _, err := os.Stat(mailpit); err != nil {
		mailpit = ""
	} else {
		fixed["mailpit smtp"], fixed["mailpit ui"] = cfg.Ports.MailpitSMTP, cfg.Ports.MailpitUI
	}
	for name, port := range fixed {
		if port == 0 {
			delete(fixed, name)
		}
	}
	if err := checkPorts(fixed); err != nil {
		return nil, fmt.Errorf("localstack: %w", err)
	}
	addr := func(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
	s.URLs = URLs{
		Exporter:        "http://" + addr(p.Exporter),
		VictoriaMetrics: "http://" + addr(p.VictoriaMetrics),
		VMUI:            "http://" + addr(p.VictoriaMetrics) + "/vmui/",
		VMAlert:         "http://" + addr(p.VMAlert),
		Alertmanager:    "http://" + addr(p.Alertmanager),
		Sink:            cfg.WebhookURL,
	}
	if cfg.WebhookURL == "" {
		s.URLs.Sink = "http://" + addr(p.Sink)
		if err := s.startSink(addr(p.Sink)); err != nil {
			return nil, err
		}
	}

	exporters := []Process{{
		Name: "usage-exporter", Path: filepath.Join(cfg.BinDir, "usage-exporter"),
		Args: []string{
			"--web.listen-address=" + addr(p.Exporter),
			"--config.file=" + cfg.Catalogue,
			"--storage.path=" + s.path("data"),
		},
		ReadyURL: s.URLs.Exporter + "/-/ready",
	}}
	var scrape []byte
	if cfg.Cluster != nil {
		if exporters, err = s.clusterProcesses(cfg.Cluster); err != nil {
			return nil, err
		}
		var targets []string
		for _, u := range s.URLs.Replicas {
			targets = append(targets, strings.TrimPrefix(u, "http://"))
		}
		scrape, err = clusterScrapeConfig(cfg.ScrapeInterval, targets, map[string]string{
			"victoria-metrics": addr(p.VictoriaMetrics), "vmalert": addr(p.VMAlert), "alertmanager": addr(p.Alertmanager),
		})
	} else {
		scrape, err = scrapeConfig(cfg.ScrapeInterval, map[string]string{
			"usage-exporter": addr(p.Exporter), "victoria-metrics": addr(p.VictoriaMetrics),
			"vmalert": addr(p.VMAlert), "alertmanager": addr(p.Alertmanager),
		})
	}
	if err != nil {
		return nil, fmt.Errorf("rendering scrape config: %w", err)
	}
	if err := os.WriteFile(s.path("config", "scrape.yml"), scrape, 0o644); err != nil {
		return nil, fmt.Errorf("writing scrape config: %w", err)
	}
	am, err := alertmanagerConfig(cfg.AlertmanagerConfig, s.URLs.Sink, cfg.AlertTimings)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.path("config", "alertmanager.yml"), am, 0o644); err != nil {
		return nil, fmt.Errorf("writing alertmanager config: %w", err)
	}

	// Start order: what is scraped or notified comes up before what scrapes or notifies it.
	vmArgs := []string(nil)
	if cfg.Cluster != nil {
		// The replicas' ledger metrics are scraped under one instance: keep one sample per
		// interval (clusterScrapeConfig).
		vmArgs = append(vmArgs, "-dedup.minScrapeInterval="+cfg.ScrapeInterval.String())
	}
	var procs []Process
	if mailpit != "" {
		// The exporter's notification e-mails land here (catalogue: notifications.smtp).
		s.URLs.Mailpit = "http://" + addr(p.MailpitUI)
		procs = append(procs, Process{
			Name: "mailpit", Path: mailpit,
			Args: []string{"--smtp=" + addr(p.MailpitSMTP), "--listen=" + addr(p.MailpitUI),
				"--database=" + s.path("mailpit.db"), "--disable-version-check", "--smtp-disable-rdns",
				"--smtp-auth-accept-any", "--smtp-auth-allow-insecure"},
			ReadyURL: s.URLs.Mailpit + "/readyz",
		})
	}
	procs = append(append(procs, exporters...), []Process{
		{
			Name: "victoria-metrics", Path: filepath.Join(cfg.ToolsDir, "victoria-metrics"),
			Args: append([]string{
				"-httpListenAddr=" + addr(p.VictoriaMetrics),
				"-storageDataPath=" + s.path("victoria-metrics"),
				"-retentionPeriod=400d", // as long as the exporter's rollups are kept (docs/operator-guide.md)
				"-promscrape.config=" + s.path("config", "scrape.yml"),
				// Queries see samples as soon as they are scraped; the default hides the last 30s.
				"-search.latencyOffset=0s",
			}, vmArgs...),
			ReadyURL: s.URLs.VictoriaMetrics + "/health",
		},
		{
			Name: "alertmanager", Path: filepath.Join(cfg.ToolsDir, "alertmanager"),
			Args: []string{
				"--config.file=" + s.path("config", "alertmanager.yml"),
				"--storage.path=" + s.path("alertmanager"),
				"--web.listen-address=" + addr(p.Alertmanager),
				"--web.external-url=" + s.URLs.Alertmanager,
				// Empty: no gossip cluster, nothing listening beyond the web port.
				"--cluster.listen-address=",
			},
			ReadyURL: s.URLs.Alertmanager + "/-/ready",
		},
		{
			Name: "vmalert", Path: filepath.Join(cfg.ToolsDir, "vmalert"),
			Args: []string{
				"-httpListenAddr=" + addr(p.VMAlert),
				"-rule=" + filepath.Join(cfg.RulesDir, "*.yml"),
				"-datasource.url=" + s.URLs.VictoriaMetrics,
				"-remoteWrite.url=" + s.URLs.VictoriaMetrics,
				"-remoteRead.url=" + s.URLs.VictoriaMetrics,
				"-notifier.url=" + s.URLs.Alertmanager,
				"-evaluationInterval=" + cfg.EvalInterval.String(),
				// Matches -search.latencyOffset=0s above: evaluate at now, not 30s ago.
				"-rule.evalDelay=0s",
				"-remoteWrite.flushInterval=" + min(cfg.EvalInterval, 2*time.Second).String(),
				"-external.url=" + s.URLs.VMAlert,
			},
			ReadyURL: s.URLs.VMAlert + "/health",
		},
	}...)
	if cfg.Grafana != nil {
		s.URLs.Grafana = "http://" + addr(p.Grafana)
		gp, err := s.grafanaProcess(p.Grafana)
		if err != nil {
			return nil, err
		}
		procs = append(procs, gp)
	}
	if cfg.Simulate != nil {
		procs = append(procs, Process{
			Name: "simulate", Path: filepath.Join(cfg.BinDir, "usagectl"),
			Args: append([]string{"simulate", "--url", s.URLs.Exporter}, cfg.Simulate...),
		})
	}
	for _, proc := range procs {
		r, err := start(proc, s.Logs)
		if err != nil {
			return nil, err
		}
		s.procs = append(s.procs, r)
		rctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
		err = r.waitReady(rctx)
		cancel()
		if err != nil {
			return nil, err
		}
		cfg.Logger.Debug("localstack: ready", "program", proc.Name)
		go s.watch(r)
	}
	return s, nil
}

// Exited reports the first program that exits on its own while the stack runs.
func (s *Stack) Exited() <-chan error { return s.exited }

func (s *Stack) watch(r *running) {
	<-r.done
	err := r.exitErr()
	if err == nil {
		err = fmt.Errorf("%s exited (see %s)", r.Name, r.log.Name())
	}
	select {
	case s.exited <- err:
	default:
	}
}

// Stop stops the programs in the reverse order of their start, each with SIGTERM and then, past
// StopTimeout, SIGKILL. It returns every program that did not exit cleanly. Safe to call twice.
func (s *Stack) Stop() error {
	var errs []error
	s.once.Do(func() {
		for i := len(s.procs) - 1; i >= 0; i-- {
			if err := s.procs[i].stop(s.cfg.StopTimeout); err != nil {
				errs = append(errs, err)
			}
		}
		if s.sink != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.sink.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("alert sink: %w", err))
			}
			cancel()
		}
		if s.lock != nil {
			s.lock.Close() // releases the flock
		}
	})
	return errors.Join(errs...)
}

func (s *Stack) startSink(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("alert sink: %w", err)
	}
	s.sink = &http.Server{Handler: AlertSink{Logger: s.cfg.Logger}, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.sink.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("alert sink stopped", "err", err)
		}
	}()
	return nil
}

func (s *Stack) path(elem ...string) string {
	return filepath.Join(append([]string{s.cfg.StateDir}, elem...)...)
}

// lockDir takes an exclusive lock on the state directory: two stacks on the same data would
// corrupt each other's stores.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking state directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("state directory %s is in use by another local stack: %w", dir, err)
	}
	return f, nil
}

// freePort asks the kernel for a free loopback port. It is released before use, so another
// program could take it in between; on a test machine that window is small enough.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

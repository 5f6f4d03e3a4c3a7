package localstack

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Cluster makes Start run the cluster topology (`make run-cluster`, docs/cluster.md): NATS
// JetStream servers holding the ledger's replicated log, and exporter replicas applying it, in
// place of the single exporter. VictoriaMetrics scrapes every replica.
type Cluster struct {
	NATSNodes int // default 3
	Replicas  int // default 2
	// NATSPort and ExporterPort are the first client port of each kind, the next ones follow
	// (4222, 4223, ...; 9477, 9478, ...); 0 picks free ports.
	NATSPort, ExporterPort int
}

// DefaultCluster is `make run-cluster`'s topology on the conventional ports.
func DefaultCluster() *Cluster {
	return &Cluster{NATSNodes: 3, Replicas: 2, NATSPort: 4222, ExporterPort: 9477}
}

// clusterPorts are a cluster's ports: per NATS server its client, route and monitoring ports.
type clusterPorts struct {
	natsClient, natsRoute, natsMonitor, replicas []int
}

func (c *Cluster) ports() (clusterPorts, error) {
	if c.NATSNodes <= 0 {
		c.NATSNodes = 3
	}
	if c.Replicas <= 0 {
		c.Replicas = 2
	}
	var p clusterPorts
	// Free ports are held until all are picked, so that no two of them are the same.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	pick := func(base, i int) (int, error) {
		if base != 0 {
			return base + i, nil
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		held = append(held, l)
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	for i := range c.NATSNodes {
		for _, spec := range []struct {
			dst  *[]int
			base int
		}{{&p.natsClient, c.NATSPort}, {&p.natsRoute, offset(c.NATSPort, 2000)}, {&p.natsMonitor, offset(c.NATSPort, 4000)}} {
			port, err := pick(spec.base, i)
			if err != nil {
				return p, err
			}
			*spec.dst = append(*spec.dst, port)
		}
	}
	for i := range c.Replicas {
		port, err := pick(c.ExporterPort, i)
		if err != nil {
			return p, err
		}
		p.replicas = append(p.replicas, port)
	}
	return p, nil
}

// offset moves a conventional port (4222) to its sibling (6222 for routes, 8222 for
// monitoring, as NATS documents them); 0 stays 0 (free ports).
func offset(port, by int) int {
	if port == 0 {
		return 0
	}
	return port + by
}

// clusterProcesses renders the NATS configurations and returns the NATS servers and the
// exporter replicas, in start order, with the URLs to print.
func (s *Stack) clusterProcesses(c *Cluster) ([]Process, error) {
	p, err := c.ports()
	if err != nil {
		return nil, err
	}
	addr := func(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
	var routes, clients []string
	for i := range c.NATSNodes {
		routes = append(routes, "nats://"+addr(p.natsRoute[i]))
		clients = append(clients, "nats://"+addr(p.natsClient[i]))
	}
	var procs []Process
	for i := range c.NATSNodes {
		name := fmt.Sprintf("nats-%d", i+1)
		dir := s.path("nats", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
		// sync_interval: always fsyncs each write before the server acknowledges it, so an
		// acknowledged event survives a power cut of the whole cluster (docs/cluster.md).
		// max_payload: a request is one message; 8 MB holds the largest batches.
		conf := fmt.Sprintf("server_name: %s\nlisten: %s\nhttp: %s\nmax_payload: 8MB\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\ncluster {\n  name: usagemeter\n  listen: %s\n  routes: [%s]\n}\n",
			name, addr(p.natsClient[i]), addr(p.natsMonitor[i]), filepath.Join(dir, "jetstream"), addr(p.natsRoute[i]), strings.Join(routes, ", "))
		confPath := s.path("config", name+".conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			return nil, fmt.Errorf("writing %s: %w", confPath, err)
		}
		procs = append(procs, Process{Name: name, Path: filepath.Join(s.cfg.ToolsDir, "nats-server"), Args: []string{"-c", confPath},
			// /healthz waits for JetStream's meta leader, which needs the servers started after
			// this one: /varz answers as soon as the server runs. The replicas wait for the stream.
			ReadyURL: "http://" + addr(p.natsMonitor[i]) + "/varz"})
		s.URLs.NATS = append(s.URLs.NATS, clients[i])
	}
	for i := range c.Replicas {
		name := fmt.Sprintf("usage-exporter-%d", i+1)
		url := "http://" + addr(p.replicas[i])
		procs = append(procs, Process{
			Name: name, Path: filepath.Join(s.cfg.BinDir, "usage-exporter"),
			Args: []string{
				"--web.listen-address=" + addr(p.replicas[i]),
				"--config.file=" + s.cfg.Catalogue,
				"--storage.path=" + s.path("data", name),
				"--cluster.nats-url=" + strings.Join(clients, ","),
				fmt.Sprintf("--cluster.replicas=%d", min(c.NATSNodes, 3)),
			},
			ReadyURL: url + "/-/ready",
		})
		s.URLs.Replicas = append(s.URLs.Replicas, url)
	}
	s.URLs.Exporter = s.URLs.Replicas[0]
	return procs, nil
}

// clusterScrapeConfig scrapes every replica twice. Job "usage-exporter" keeps the ledger's
// metrics (usage_*) under one instance label: the replicas hold the same totals, and
// VictoriaMetrics' deduplication (-dedup.minScrapeInterval) keeps one sample per interval, so
// the rules' sums by tenant count each tenant once, as with a single exporter. Job
// "usage-exporter-replica" keeps each replica's own metrics (usage_exporter_*, up) apart.
func clusterScrapeConfig(interval time.Duration, replicas []string, others map[string]string) ([]byte, error) {
	type relabel struct {
		SourceLabels []string `yaml:"source_labels,omitempty"`
		Regex        string   `yaml:"regex,omitempty"`
		Action       string   `yaml:"action,omitempty"`
		TargetLabel  string   `yaml:"target_label,omitempty"`
		Replacement  string   `yaml:"replacement,omitempty"`
	}
	type staticConfig struct {
		Targets []string `yaml:"targets"`
	}
	type job struct {
		JobName              string         `yaml:"job_name"`
		StaticConfigs        []staticConfig `yaml:"static_configs"`
		RelabelConfigs       []relabel      `yaml:"relabel_configs,omitempty"`
		MetricRelabelConfigs []relabel      `yaml:"metric_relabel_configs,omitempty"`
	}
	doc := struct {
		Global struct {
			ScrapeInterval string `yaml:"scrape_interval"`
			ScrapeTimeout  string `yaml:"scrape_timeout"`
		} `yaml:"global"`
		ScrapeConfigs []job `yaml:"scrape_configs"`
	}{}
	doc.Global.ScrapeInterval = interval.String()
	doc.Global.ScrapeTimeout = interval.String()
	doc.ScrapeConfigs = append(doc.ScrapeConfigs,
		job{JobName: "usage-exporter", StaticConfigs: []staticConfig{{Targets: replicas}},
			RelabelConfigs:       []relabel{{TargetLabel: "instance", Replacement: "usage-exporter-cluster"}},
			MetricRelabelConfigs: []relabel{{SourceLabels: []string{"__name__"}, Regex: "usage_exporter_.*|go_.*|process_.*|promhttp_.*", Action: "drop"}}},
		job{JobName: "usage-exporter-replica", StaticConfigs: []staticConfig{{Targets: replicas}},
			MetricRelabelConfigs: []relabel{{SourceLabels: []string{"__name__"}, Regex: "usage_exporter_.*|go_.*|process_.*", Action: "keep"}}},
	)
	for _, name := range []string{"victoria-metrics", "vmalert", "alertmanager"} {
		if a, ok := others[name]; ok {
			doc.ScrapeConfigs = append(doc.ScrapeConfigs, job{JobName: name, StaticConfigs: []staticConfig{{Targets: []string{a}}}})
		}
	}
	return yaml.Marshal(doc)
}

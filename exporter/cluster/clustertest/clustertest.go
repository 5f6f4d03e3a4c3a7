// Package clustertest runs real cluster topologies on loopback for tests and benchmarks: NATS
// JetStream servers (the pinned nats-server binary) and usage-exporter replicas, each its own
// process, so that a fault test can SIGKILL any of them and start it again on the same data.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Process is a program this package started; it can be killed and started again alike.
type Process struct {
	Name string
	Path string
	Args []string
	Env  []string
	Log  string // stdout and stderr are appended here

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start launches the process (again).
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s is already running", p.Name)
	}
	log, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "\n=== %s starting %s %q\n", time.Now().UTC().Format(time.RFC3339Nano), p.Path, p.Args)
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("starting %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// Running reports whether the process was started and not stopped.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Kill sends SIGKILL, as a crash or a power cut would end the process, and waits for it.
func (p *Process) Kill() { p.signal(syscall.SIGKILL, 0) }

// Stop sends SIGTERM and waits for the process to exit, then SIGKILL after timeout.
func (p *Process) Stop(timeout time.Duration) { p.signal(syscall.SIGTERM, timeout) }

func (p *Process) signal(sig syscall.Signal, timeout time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	if timeout > 0 {
		select {
		case <-p.done:
		case <-time.After(timeout):
			_ = p.cmd.Process.Kill()
		}
	}
	<-p.done
	p.cmd = nil
}

// Wait waits for the process to exit by itself, reporting its error.
func (p *Process) Wait() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	<-done
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	if cmd.ProcessState != nil && !cmd.ProcessState.Success() {
		return errors.New(cmd.ProcessState.String())
	}
	return nil
}

// NATS is a JetStream cluster of nats-server processes on loopback.
type NATS struct {
	Servers []*NATSServer
}

// NATSServer is one node of it.
type NATSServer struct {
	*Process
	ServerName string
	Port       int
}

// URL is the server's client URL.
func (s *NATSServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.Port) }

// NATSOptions configure a cluster.
type NATSOptions struct {
	Binary string // nats-server
	Dir    string // each server keeps its store and log under Dir/<name>
	Nodes  int
	// SyncAlways fsyncs every write before the server acknowledges it (sync_interval: always):
	// docs/cluster.md explains why cluster mode wants it.
	SyncAlways bool
}

// StartNATS starts a cluster and waits until every server answers on its client port.
func StartNATS(ctx context.Context, o NATSOptions) (*NATS, error) {
	if o.Nodes <= 0 {
		o.Nodes = 3
	}
	// Every port is held until all are picked, so that no two are the same.
	ports := make([]int, 2*o.Nodes)
	held := make([]net.Listener, 0, len(ports))
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range held {
		l.Close()
	}
	var routes []string
	for i := 0; i < o.Nodes; i++ {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[o.Nodes+i]))
	}
	c := &NATS{}
	for i := 0; i < o.Nodes; i++ {
		name := fmt.Sprintf("nats-%d", i+1)
		dir := filepath.Join(o.Dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		sync := ""
		if o.SyncAlways {
			sync = "  sync_interval: always\n"
		}
		conf := fmt.Sprintf("server_name: %s\nlisten: 127.0.0.1:%d\nmax_payload: 8MB\njetstream {\n  store_dir: %q\n%s}\ncluster {\n  name: usagemeter\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n",
			name, ports[i], filepath.Join(dir, "jetstream"), sync, ports[o.Nodes+i], strings.Join(routes, ", "))
		confPath := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		s := &NATSServer{ServerName: name, Port: ports[i], Process: &Process{Name: name, Path: o.Binary,
			Args: []string{"-c", confPath}, Log: filepath.Join(dir, "nats.log")}}
		if err := s.Start(); err != nil {
			c.Stop()
			return nil, err
		}
		c.Servers = append(c.Servers, s)
	}
	for _, s := range c.Servers {
		if err := WaitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", s.Port)); err != nil {
			c.Stop()
			return nil, fmt.Errorf("%s: %w (log: %s)", s.Name, err, s.Log)
		}
	}
	return c, nil
}

// URLs is the comma-separated client URL list of every server.
func (c *NATS) URLs() string {
	var u []string
	for _, s := range c.Servers {
		u = append(u, s.URL())
	}
	return strings.Join(u, ",")
}

// Stop stops every server.
func (c *NATS) Stop() {
	for _, s := range c.Servers {
		s.Stop(10 * time.Second)
	}
}

// Server returns the server called name.
func (c *NATS) Server(name string) *NATSServer {
	for _, s := range c.Servers {
		if s.ServerName == name {
			return s
		}
	}
	return nil
}

// StreamLeader asks the cluster which server leads the stream.
func (c *NATS) StreamLeader(ctx context.Context, stream string) (string, error) {
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		return "", err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", err
	}
	for {
		s, err := js.Stream(ctx, stream)
		if err == nil {
			var info *jetstream.StreamInfo
			if info, err = s.Info(ctx); err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
				return info.Cluster.Leader, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no leader for stream %s: %w", stream, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Replica is a usage-exporter process in cluster mode.
type Replica struct {
	*Process
	Port    int
	Storage string
}

// URL is the replica's HTTP base URL.
func (r *Replica) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", r.Port) }

// ReplicaOptions configure a replica.
type ReplicaOptions struct {
	// Binary and Env run the exporter: bin/usage-exporter, or a test binary that becomes one.
	Binary string
	Env    []string
	Name   string
	Dir    string // storage and log under Dir/<Name>
	NATS   string
	// Args are extra flags.
	Args []string
}

// NewReplica prepares a replica on a free port; Start starts it.
func NewReplica(o ReplicaOptions) (*Replica, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(o.Dir, o.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	storage := filepath.Join(dir, "data")
	args := append([]string{
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--storage.path=" + storage,
		"--cluster.nats-url=" + o.NATS,
	}, o.Args...)
	return &Replica{Port: port, Storage: storage, Process: &Process{Name: o.Name, Path: o.Binary, Args: args, Env: o.Env,
		Log: filepath.Join(dir, "exporter.log")}}, nil
}

// Exited reports whether a started process has exited by itself.
func (p *Process) Exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitReady waits until the replica answers /-/ready with 200.
func (r *Replica) WaitReady(ctx context.Context) error {
	for {
		if r.Exited() {
			return fmt.Errorf("%s exited (log: %s)", r.Name, r.Log)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL()+"/-/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready (log: %s): %w", r.Name, r.Log, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitTCP waits until addr accepts connections.
func WaitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not accept connections: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

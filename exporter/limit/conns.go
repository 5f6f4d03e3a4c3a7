package limit

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Conns bounds the open connections of every listener it wraps. When a new connection would
// pass the limit, the connection idle the longest (a keep-alive connection waiting for its next
// request) is closed to make room; when none is idle, the new connection is closed at once, so
// a client at the limit fails fast instead of waiting in the kernel's accept queue. Idle
// tracking needs the server's ConnState hook: set http.Server.ConnState to Conns.ConnState.
type Conns struct {
	max int
	m   *Metrics

	mu   sync.Mutex
	open int
	idle map[*conn]time.Time // connections the server reported idle, and since when
}

// NewConns returns a connection limit of max (> 0).
func NewConns(max int, m *Metrics) *Conns {
	c := &Conns{max: max, m: m, idle: map[*conn]time.Time{}}
	m.limits.WithLabelValues(Connections).Set(float64(max))
	m.add(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "usage_exporter_http_connections_open",
		Help: "Open HTTP connections (at most http.max_connections).",
	}, func() float64 { return float64(c.Open()) }))
	return c
}

// Open is the number of open connections.
func (c *Conns) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}

// Listener wraps l.
func (c *Conns) Listener(l net.Listener) net.Listener { return &listener{Listener: l, c: c} }

// ConnState is the http.Server.ConnState hook that tells idle connections apart.
func (c *Conns) ConnState(nc net.Conn, state http.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	cn, ok := nc.(*conn)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if state == http.StateIdle && !cn.closed {
		c.idle[cn] = time.Now()
	} else {
		delete(c.idle, cn)
	}
}

// admit reserves a place for a new connection, closing the longest-idle one if need be.
func (c *Conns) admit() bool {
	for {
		c.mu.Lock()
		if c.open < c.max {
			c.open++
			c.mu.Unlock()
			return true
		}
		var victim *conn
		var since time.Time
		for cn, t := range c.idle {
			if victim == nil || t.Before(since) {
				victim, since = cn, t
			}
		}
		if victim == nil {
			c.mu.Unlock()
			return false
		}
		delete(c.idle, victim)
		c.mu.Unlock()
		c.m.reclaimed.Inc()
		// Closing frees its place (conn.Close); the server's goroutine for it then finds the
		// connection closed while waiting for a request, as with the idle timeout.
		victim.Close()
	}
}

func (c *Conns) release(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cn.closed = true
	delete(c.idle, cn)
	c.open--
}

type listener struct {
	net.Listener
	c *Conns
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.c.admit() {
			return &conn{Conn: nc, c: l.c}, nil
		}
		nc.Close()
		l.c.m.reject(Connections, l.c.max, "remote", nc.RemoteAddr().String())
	}
}

type conn struct {
	net.Conn
	c *Conns

	once   sync.Once
	closed bool // under c.mu
}

func (cn *conn) Close() error {
	err := cn.Conn.Close()
	cn.once.Do(func() { cn.c.release(cn) })
	return err
}

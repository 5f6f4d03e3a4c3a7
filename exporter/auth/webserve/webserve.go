// Package webserve serves the exporter's HTTP server under an exporter-toolkit web config
// (--web.config.file) with one difference from web.ListenAndServe: basic_auth_users protect
// /metrics only. The toolkit applies basic auth to every path, which would stand in front of
// the API's own bearer tokens and API keys (a request cannot carry both in one Authorization
// header). Everything else keeps the toolkit's meaning and code: the same file format and
// strict parsing, web.ConfigToTLSConfig for TLS (re-read for every new connection, so renewed
// certificates are picked up), the same bcrypt check with a cache, extra headers, rate limit.
package webserve

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// MetricsPath is the path basic_auth_users protect.
const MetricsPath = "/metrics"

// ShutdownTimeout bounds how long Serve waits for in-flight requests once ctx is done.
const ShutdownTimeout = 30 * time.Second

// Serve listens on flags' addresses and serves srv until ctx is done, then shuts down
// gracefully (in-flight requests finish). It returns nil after a clean shutdown.
func Serve(ctx context.Context, srv *http.Server, flags *web.FlagConfig, logger *slog.Logger) error {
	if flags == nil || flags.WebListenAddresses == nil || len(*flags.WebListenAddresses) == 0 {
		return web.ErrNoListeners
	}
	if flags.WebSystemdSocket != nil && *flags.WebSystemdSocket {
		return errors.New("systemd socket activation is not supported")
	}
	configFile := ""
	if flags.WebConfigFile != nil {
		configFile = *flags.WebConfigFile
	}
	var listeners []net.Listener
	for _, addr := range *flags.WebListenAddresses {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		listeners = append(listeners, l)
	}
	return ServeListeners(ctx, listeners, srv, configFile, logger)
}

// ServeListeners is Serve on listeners the caller opened (tests, or a caller that must know
// the bound port before serving). It takes ownership of them.
func ServeListeners(ctx context.Context, listeners []net.Listener, srv *http.Server, configFile string, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.Default()
	}
	handler := srv.Handler
	if handler == nil {
		handler = http.DefaultServeMux
	}
	useTLS := false
	if configFile != "" {
		if err := web.Validate(configFile); err != nil {
			closeAll(listeners)
			return fmt.Errorf("web config %s: %w", configFile, err)
		}
		wc := &webConfig{path: configFile}
		c, err := wc.get()
		if err != nil {
			closeAll(listeners)
			return err
		}
		srv.Handler = &guard{next: handler, config: wc, logger: logger, cache: map[[32]byte]bool{}, limiter: limiter(c)}
		if c.TLSConfig.IsEnabled() {
			tc, err := web.ConfigToTLSConfig(&c.TLSConfig)
			if err != nil {
				closeAll(listeners)
				return fmt.Errorf("web config %s: %w", configFile, err)
			}
			useTLS = true
			http2 := c.HTTPConfig.HTTP2
			if !http2 {
				srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
			}
			tc.NextProtos = nextProtos(http2)
			// Re-read for each connection, as the toolkit does, so certificates can be renewed
			// without a restart.
			tc.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
				c, err := wc.get()
				if err != nil {
					return nil, err
				}
				tc, err := web.ConfigToTLSConfig(&c.TLSConfig)
				if err != nil {
					return nil, err
				}
				tc.NextProtos = nextProtos(http2)
				return tc, nil
			}
			srv.TLSConfig = tc
		}
	}

	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		logger.Info("listening", "address", l.Addr().String(), "tls", useTLS)
		go func() {
			var err error
			if useTLS {
				err = srv.ServeTLS(l, "", "")
			} else {
				err = srv.Serve(l)
			}
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errs <- err
		}()
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && first == nil {
		first = fmt.Errorf("shutdown: %w", err)
	}
	return first
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		l.Close()
	}
}

func nextProtos(http2 bool) []string {
	if http2 {
		return []string{"h2", "http/1.1"}
	}
	return []string{"http/1.1"}
}

func limiter(c *web.Config) *rate.Limiter {
	if c.RateLimiterConfig.Interval == 0 {
		return nil
	}
	return rate.NewLimiter(rate.Every(c.RateLimiterConfig.Interval), c.RateLimiterConfig.Burst)
}

// webConfig is the parsed file, re-parsed when its modification time or size changes.
type webConfig struct {
	path string

	mu      sync.Mutex
	c       *web.Config
	modTime time.Time
	size    int64
}

func (w *webConfig) get() (*web.Config, error) {
	info, err := os.Stat(w.path)
	if err != nil {
		return nil, fmt.Errorf("web config: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.c != nil && info.ModTime().Equal(w.modTime) && info.Size() == w.size {
		return w.c, nil
	}
	b, err := os.ReadFile(w.path)
	if err != nil {
		return nil, fmt.Errorf("web config: %w", err)
	}
	// The toolkit's defaults and strict parsing (its getConfig is not exported).
	c := &web.Config{
		TLSConfig:  web.TLSConfig{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13},
		HTTPConfig: web.HTTPConfig{HTTP2: true},
	}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return nil, fmt.Errorf("web config %s: %w", w.path, err)
	}
	c.TLSConfig.SetDirectory(filepath.Dir(w.path))
	w.c, w.modTime, w.size = c, info.ModTime(), info.Size()
	return c, nil
}

// fakeHash is compared against for unknown users so that timing does not reveal which user
// names exist (the toolkit does the same; this is bcrypt("fakepassword")).
const fakeHash = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"

// guard applies the web config to each request.
type guard struct {
	next    http.Handler
	config  *webConfig
	logger  *slog.Logger
	limiter *rate.Limiter

	// bcrypt is slow on purpose; one comparison at a time keeps a flood of guesses from
	// taking every core, and the cache keeps Prometheus' scrapes cheap.
	bcryptMu sync.Mutex
	cacheMu  sync.Mutex
	cache    map[[32]byte]bool
}

const maxCache = 1000

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := g.config.get()
	if err != nil {
		g.logger.Error("web config unreadable", "err", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	if g.limiter != nil && !g.limiter.Allow() {
		http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
		return
	}
	for k, v := range c.HTTPConfig.Header {
		w.Header().Set(k, v)
	}
	if r.URL.Path == MetricsPath && len(c.Users) > 0 && !g.basicAuthOK(r, c) {
		w.Header().Set("WWW-Authenticate", `Basic realm="metrics"`)
		http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
		return
	}
	g.next.ServeHTTP(w, r)
}

func (g *guard) basicAuthOK(r *http.Request, c *web.Config) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	hashed, known := c.Users[user]
	if !known {
		hashed = fakeHash
	}
	h := sha256.New()
	for _, s := range []string{user, string(hashed), pass} {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	var key [32]byte
	h.Sum(key[:0])
	g.cacheMu.Lock()
	res, cached := g.cache[key]
	g.cacheMu.Unlock()
	if !cached {
		g.bcryptMu.Lock()
		res = bcrypt.CompareHashAndPassword([]byte(hashed), []byte(pass)) == nil && known
		g.bcryptMu.Unlock()
		g.cacheMu.Lock()
		if len(g.cache) >= maxCache {
			clear(g.cache)
		}
		g.cache[key] = res
		g.cacheMu.Unlock()
	}
	return res
}

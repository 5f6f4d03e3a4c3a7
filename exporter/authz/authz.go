// Package authz decides requests and quota admissions with OPA. Policies come from the
// embedded set (package policies) or from a directory or bundle given by the operator; they
// are compiled and their queries prepared once per load, then shared by every request. A
// changed policy source is reloaded; a set that fails to load leaves the last good one active.
package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/usagemeter/usagemeter/policies"
)

// DefaultPollInterval is how often Watch looks at the policy source for changes. Stat-ing a few
// files every few seconds costs nothing next to serving requests.
const DefaultPollInterval = 3 * time.Second

// ErrNoDecision means the policy set defined no answer for a query: fail closed.
var ErrNoDecision = errors.New("policy returned no decision")

// Options configure an Engine.
type Options struct {
	// Path is a directory of .rego files (and optional data.json / data.yaml), or a bundle
	// tarball (.tar.gz). Empty: the embedded policies. *_test.rego files are never loaded.
	Path string
	// PollInterval is how often Watch checks Path for changes; 0 means DefaultPollInterval.
	PollInterval time.Duration
	Logger       *slog.Logger
}

// Engine evaluates the authorization and quota policies.
type Engine struct {
	opts    Options
	logger  *slog.Logger
	current atomic.Pointer[policySet]

	mu          sync.Mutex // serializes loads
	fingerprint string     // of the source the current set was loaded from (or failed at)
	lastErr     error
	reloads     atomic.Uint64
	failures    atomic.Uint64
}

// policySet is one compiled generation of policies with its prepared queries.
type policySet struct {
	authz    rego.PreparedEvalQuery
	quota    rego.PreparedEvalQuery
	source   string
	loadedAt time.Time
	// decisions memoises authorization decisions of this set: they are a function of the
	// input alone (the policies read no clock and no outside data), and an ingested batch asks
	// the same question for each of its tenants on every request. A reload brings a new set,
	// hence an empty memo.
	decisions decisionMemo
}

// New loads and compiles the policies. A failure here is fatal: there is no last good set.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	e := &Engine{opts: opts, logger: opts.Logger}
	if err := e.Reload(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// Source names where the active policies came from.
func (e *Engine) Source() string { return e.current.Load().source }

// Status reports when the active set was loaded and the error of the last load attempt (nil
// when the last attempt succeeded).
func (e *Engine) Status() (loadedAt time.Time, lastErr error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.current.Load().loadedAt, e.lastErr
}

// Reload loads the policy source now. On error the previous set stays active.
func (e *Engine) Reload(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	fp, err := fingerprint(e.opts.Path)
	if err != nil {
		return e.failed(fp, err)
	}
	set, err := load(ctx, e.opts.Path)
	if err != nil {
		return e.failed(fp, err)
	}
	e.current.Store(set)
	e.fingerprint, e.lastErr = fp, nil
	e.reloads.Add(1)
	e.logger.Info("policies loaded", "source", set.source)
	return nil
}

func (e *Engine) failed(fp string, err error) error {
	e.fingerprint, e.lastErr = fp, err
	e.failures.Add(1)
	if e.current.Load() != nil {
		e.logger.Error("policies not reloaded; keeping the last good set", "source", e.opts.Path, "err", err)
	}
	return err
}

// Watch reloads the policies whenever their source changes, until ctx is done. With the
// embedded policies there is nothing to watch and it returns at once.
func (e *Engine) Watch(ctx context.Context) {
	if e.opts.Path == "" || e.opts.PollInterval < 0 {
		return
	}
	t := time.NewTicker(e.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.reloadIfChanged(ctx)
		}
	}
}

// reloadIfChanged reloads when the source's fingerprint moved since the last attempt, so a
// broken file is reported once, not at every tick.
func (e *Engine) reloadIfChanged(ctx context.Context) {
	fp, err := fingerprint(e.opts.Path)
	e.mu.Lock()
	same := err == nil && fp == e.fingerprint
	e.mu.Unlock()
	if same {
		return
	}
	_ = e.Reload(ctx) // logged by failed
}

// fingerprint summarizes the names, sizes and modification times of the policy files.
func fingerprint(path string) (string, error) {
	if path == "" {
		return "embedded", nil
	}
	h := sha256.New()
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00", p, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("stat policies %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// load compiles one policy set and prepares both queries on the same compiler.
func load(ctx context.Context, path string) (*policySet, error) {
	var (
		modules = map[string]*ast.Module{}
		data    = map[string]any{}
		source  = "embedded"
	)
	if path == "" {
		srcs, err := policies.Modules()
		if err != nil {
			return nil, err
		}
		for name, src := range srcs {
			m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				return nil, fmt.Errorf("parse embedded policy: %w", err)
			}
			modules[name] = m
		}
	} else {
		source = path
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("policies: %w", err)
		}
		b, err := loader.NewFileLoader().
			WithRegoVersion(ast.RegoV1).
			WithFilter(skipTests).
			AsBundle(path)
		if err != nil {
			return nil, fmt.Errorf("load policies: %w", err)
		}
		if err := addBundle(b, modules); err != nil {
			return nil, err
		}
		if b.Data != nil {
			data = b.Data
		}
	}
	if len(modules) == 0 {
		return nil, fmt.Errorf("policies %s: no .rego modules", source)
	}

	compiler := ast.NewCompiler()
	if compiler.Compile(modules); compiler.Failed() {
		return nil, fmt.Errorf("compile policies %s: %w", source, compiler.Errors)
	}
	for _, q := range []string{policies.AuthzQuery, policies.QuotaQuery} {
		if len(compiler.GetRulesExact(ast.MustParseRef(q))) == 0 {
			return nil, fmt.Errorf("policies %s define no %s", source, q)
		}
	}
	store := inmem.NewFromObject(data)
	prepare := func(q string) (rego.PreparedEvalQuery, error) {
		pq, err := rego.New(rego.Query(q), rego.Compiler(compiler), rego.Store(store)).PrepareForEval(ctx)
		if err != nil {
			return pq, fmt.Errorf("prepare %s: %w", q, err)
		}
		return pq, nil
	}
	az, err := prepare(policies.AuthzQuery)
	if err != nil {
		return nil, err
	}
	qt, err := prepare(policies.QuotaQuery)
	if err != nil {
		return nil, err
	}
	return &policySet{authz: az, quota: qt, source: source, loadedAt: time.Now()}, nil
}

func addBundle(b *bundle.Bundle, modules map[string]*ast.Module) error {
	for _, m := range b.Modules {
		if m.Parsed == nil {
			return fmt.Errorf("policy %s: not parsed", m.Path)
		}
		modules[m.Path] = m.Parsed
	}
	return nil
}

// skipTests is a loader filter: true means skip. Policy tests are never part of the runtime set.
func skipTests(abspath string, info fs.FileInfo, _ int) bool {
	return !info.IsDir() && strings.HasSuffix(info.Name(), "_test.rego")
}

package authz

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/usagemeter/usagemeter/config"
	"github.com/usagemeter/usagemeter/policies"
)

func newEmbedded(t testing.TB) *Engine {
	t.Helper()
	e, err := New(context.Background(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func TestDecideEmbedded(t *testing.T) {
	e := newEmbedded(t)
	if e.Source() != "embedded" {
		t.Errorf("Source = %q", e.Source())
	}
	admin := Principal{Subject: "ann", Kind: "jwt", Roles: []string{"saas_admin"}, Tenants: []string{"acme"}}
	bob := Principal{Subject: "bob", Kind: "jwt", Roles: []string{"tenant_user"}, Tenants: []string{"acme"}}
	key := Principal{Subject: "key:k1", Kind: "api_key", Roles: []string{"ingest"}, Tenants: []string{"acme"}}
	cases := []struct {
		name  string
		in    Input
		allow bool
		// reason is checked when not empty
		reason string
	}{
		{"saas admin own tenant", Input{Principal: admin, Action: "usage.read_users", Tenant: "acme"}, true, "role saas_admin on tenant acme"},
		{"saas admin other tenant", Input{Principal: admin, Action: "usage.read", Tenant: "globex"}, false, `tenant "globex" is not among the principal's tenants`},
		{"saas admin no billing write", Input{Principal: admin, Action: "billing.write", Tenant: "acme"}, false, ""},
		{"tenant user self", Input{Principal: bob, Action: "usage.read", Tenant: "acme", User: "bob"}, true, "own usage"},
		{"tenant user other user", Input{Principal: bob, Action: "usage.read", Tenant: "acme", User: "carol"}, false, ""},
		{"ingest key own tenant", Input{Principal: key, Action: "events.ingest", Tenant: "acme"}, true, ""},
		{"ingest key other tenant", Input{Principal: key, Action: "events.ingest", Tenant: "globex"}, false, ""},
		{"ingest key reads", Input{Principal: key, Action: "usage.read", Tenant: "acme"}, false, ""},
		{"nil roles", Input{Principal: Principal{Subject: "x"}, Action: "usage.read", Tenant: "acme"}, false, "the principal has no roles"},
		{"unknown action", Input{Principal: Principal{Roles: []string{"platform_admin"}}, Action: "nope"}, false, `unknown action "nope"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := e.Decide(context.Background(), c.in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != c.allow {
				t.Errorf("allow = %v (%s), want %v", d.Allow, d.Reason, c.allow)
			}
			if d.Reason == "" || (c.reason != "" && d.Reason != c.reason) {
				t.Errorf("reason = %q, want %q", d.Reason, c.reason)
			}
		})
	}
}

func ptr(n int64) *int64 { return &n }

func TestAdmitEmbedded(t *testing.T) {
	e := newEmbedded(t)
	base := QuotaInput{Tenant: "acme", Meter: "ai_tokens", Plan: "free", Amount: 10, Used: 50, Limit: ptr(100), WarningRatio: 0.8, Enforcement: "hard"}
	with := func(f func(*QuotaInput)) QuotaInput { q := base; f(&q); return q }
	cases := []struct {
		name string
		in   QuotaInput
		want QuotaDecision
	}{
		{"within", base, QuotaDecision{Result: ResultAllow, Remaining: 40, LimitScope: ScopeTenant, Reason: "ai_tokens: 50 + 10 within the limit of 100"}},
		{"near", with(func(q *QuotaInput) { q.Used = 80 }), QuotaDecision{Result: ResultWarn, Remaining: 10, LimitScope: ScopeTenant, Reason: "ai_tokens: 80 + 10 reaches 90% of the limit of 100"}},
		{"hard over", with(func(q *QuotaInput) { q.Used = 95 }), QuotaDecision{Result: ResultDeny, Remaining: 5, LimitScope: ScopeTenant, Reason: "ai_tokens: 95 + 10 exceeds the hard limit of 100"}},
		{"default enforcement is hard", with(func(q *QuotaInput) { q.Used, q.Enforcement = 95, "" }), QuotaDecision{Result: ResultDeny, Remaining: 5, LimitScope: ScopeTenant, Reason: "ai_tokens: 95 + 10 exceeds the hard limit of 100"}},
		{"soft over", with(func(q *QuotaInput) { q.Used, q.Enforcement = 95, "soft" }), QuotaDecision{Result: ResultWarn, Remaining: 0, LimitScope: ScopeTenant, Reason: "ai_tokens: 95 + 10 exceeds the soft limit of 100"}},
		{"unlimited", with(func(q *QuotaInput) { q.Limit = nil }), QuotaDecision{Result: ResultAllow, Unlimited: true, Reason: `no limit on ai_tokens for plan "free"`}},
		{"feature not in plan", with(func(q *QuotaInput) { q.Feature, q.PlanFeatures = "ai_search", []string{"search"} }), QuotaDecision{Result: ResultDeny, Remaining: 50, LimitScope: ScopeTenant, Reason: `feature "ai_search" is not in plan "free"`}},
		{"empty plan features deny all", with(func(q *QuotaInput) { q.Feature, q.PlanFeatures = "search", []string{} }), QuotaDecision{Result: ResultDeny, Remaining: 50, LimitScope: ScopeTenant, Reason: `feature "search" is not in plan "free"`}},
		{"nil plan features allow all", with(func(q *QuotaInput) { q.Feature = "search" }), QuotaDecision{Result: ResultAllow, Remaining: 40, LimitScope: ScopeTenant, Reason: "ai_tokens: 50 + 10 within the limit of 100"}},
		{"negative amount", with(func(q *QuotaInput) { q.Amount = -1 }), QuotaDecision{Result: ResultDeny, Remaining: 50, LimitScope: ScopeTenant, Reason: "amount must be a non-negative integer"}},
		{"large numbers stay exact", with(func(q *QuotaInput) { q.Used, q.Amount, q.Limit = 1<<53+1, 1, ptr(1<<53+10) }), QuotaDecision{Result: ResultWarn, Remaining: 8, LimitScope: ScopeTenant, Reason: "ai_tokens: 9007199254740993 + 1 reaches 99% of the limit of 9007199254741002"}},
		{"billing hold denies", with(func(q *QuotaInput) { q.BillingHold = &BillingHold{Reason: "invoice INV-00000042 is overdue"} }), QuotaDecision{Result: ResultDeny, Remaining: 50, LimitScope: ScopeTenant, Reason: "billing hold: invoice INV-00000042 is overdue"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := e.Admit(context.Background(), c.in)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// writePolicies copies the embedded policies into dir, with the given replacements applied to
// authz.rego.
func writePolicies(t *testing.T, dir string, replace ...string) {
	t.Helper()
	mods, err := policies.Modules()
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range mods {
		if name == "authz.rego" {
			src = strings.NewReplacer(replace...).Replace(src)
		}
		writeFile(t, filepath.Join(dir, name), src)
	}
}

// writeFile writes and moves the modification time forward, so a rewrite within the file
// system's timestamp granularity is still seen as a change.
func writeFile(t *testing.T, path, src string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Duration(len(src)) * time.Second)
	if err := os.Chtimes(path, future, future); err != nil {
		t.Fatal(err)
	}
}

var sreUsage = Input{Principal: Principal{Subject: "s", Roles: []string{"sre"}}, Action: "usage.read", Tenant: "acme"}

func decide(t *testing.T, e *Engine, in Input) Decision {
	t.Helper()
	d, err := e.Decide(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDirectoryReloadKeepsLastGoodSet(t *testing.T) {
	dir := t.TempDir()
	writePolicies(t, dir)
	// A broken policy test beside the policies: tests are never loaded, so it must not matter.
	writeFile(t, filepath.Join(dir, "broken_test.rego"), "package x\nthis is not rego")
	ctx := context.Background()
	e, err := New(ctx, Options{Path: dir, PollInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if e.Source() != dir {
		t.Errorf("Source = %q", e.Source())
	}
	if !decide(t, e, sreUsage).Allow {
		t.Fatal("sre usage.read denied by the copied policies")
	}

	// Unchanged source: no reload.
	e.reloadIfChanged(ctx)
	if n := e.reloads.Load(); n != 1 {
		t.Errorf("reloads = %d after an unchanged poll, want 1", n)
	}

	// Take usage.read away from sre: the change is picked up.
	writePolicies(t, dir, `"sre": {"usage.read", `, `"sre": {`)
	e.reloadIfChanged(ctx)
	if d := decide(t, e, sreUsage); d.Allow {
		t.Fatalf("sre still allowed after the policy change: %s", d.Reason)
	}

	// A broken policy: the reload fails and the last good set stays.
	writeFile(t, filepath.Join(dir, "authz.rego"), "package usagemeter.authz\n\ndecision := {")
	e.reloadIfChanged(ctx)
	if _, lastErr := e.Status(); lastErr == nil {
		t.Fatal("Status reports no error after loading a broken policy")
	}
	if d := decide(t, e, sreUsage); d.Allow {
		t.Fatal("broken reload changed the active set")
	}
	if e.failures.Load() != 1 {
		t.Errorf("failures = %d, want 1", e.failures.Load())
	}
	// The same broken source is not retried at every poll.
	e.reloadIfChanged(ctx)
	if e.failures.Load() != 1 {
		t.Errorf("failures = %d after polling an unchanged broken source, want 1", e.failures.Load())
	}

	// Fixed again.
	writePolicies(t, dir)
	e.reloadIfChanged(ctx)
	if _, lastErr := e.Status(); lastErr != nil {
		t.Fatalf("Status after the fix: %v", lastErr)
	}
	if !decide(t, e, sreUsage).Allow {
		t.Fatal("fixed policies not loaded")
	}
}

func TestWatchPicksUpChanges(t *testing.T) {
	dir := t.TempDir()
	writePolicies(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := New(ctx, Options{Path: dir, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); e.Watch(ctx) }()
	writePolicies(t, dir, `"sre": {"usage.read", `, `"sre": {`)
	// Waits for the change however long it takes (the test binary's timeout bounds it).
	for decide(t, e, sreUsage).Allow {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

func TestBundleTarball(t *testing.T) {
	mods, err := policies.Modules()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bundle.tar.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	add := func(name, body string) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	for name, src := range mods {
		add("/policies/"+name, src)
	}
	// Data travels with a bundle: a policy may read it.
	add("/data.json", `{"usagemeter": {"extra": {"answer": 42}}}`)
	for _, c := range []interface{ Close() error }{tw, gz, f} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(context.Background(), Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if !decide(t, e, sreUsage).Allow {
		t.Fatal("bundle policies deny sre usage.read")
	}
}

func TestLoadRejectsIncompleteSets(t *testing.T) {
	dir := t.TempDir()
	mods, err := policies.Modules()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "authz.rego"), mods["authz.rego"])
	if _, err := New(context.Background(), Options{Path: dir}); err == nil || !strings.Contains(err.Error(), policies.QuotaQuery) {
		t.Errorf("New without the quota policy: err = %v", err)
	}
	if _, err := New(context.Background(), Options{Path: filepath.Join(dir, "missing")}); err == nil {
		t.Error("New with a missing path succeeded")
	}
	empty := t.TempDir()
	if _, err := New(context.Background(), Options{Path: empty}); err == nil {
		t.Error("New with an empty directory succeeded")
	}
}

func TestWrongShapedDecisionIsAnError(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "authz.rego"), "package usagemeter.authz\n\ndecision := {\"allow\": \"yes\"}\n")
	writeFile(t, filepath.Join(dir, "quota.rego"), "package usagemeter.quota\n\ndecision := {\"result\": \"maybe\"} if input.amount > 0\n")
	e, err := New(context.Background(), Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Decide(context.Background(), sreUsage); err == nil {
		t.Error("Decide accepted a non-boolean allow")
	}
	if _, err := e.Admit(context.Background(), QuotaInput{Amount: 1}); err == nil {
		t.Error("Admit accepted result maybe")
	}
	if _, err := e.Admit(context.Background(), QuotaInput{Amount: 0}); !errors.Is(err, ErrNoDecision) {
		t.Errorf("Admit with an undefined decision: err = %v, want ErrNoDecision", err)
	}
}

func TestQuotaInputFor(t *testing.T) {
	e := newEmbedded(t)
	plan := config.Plan{Name: "free", Enforcement: "hard", WarningRatio: 0.8, Limits: map[string]int64{"ai_tokens": 1000}, Features: []string{"search"}}
	cases := []struct {
		meter, feature string
		amount, used   int64
		want           QuotaDecision
	}{
		{"ai_tokens", "search", 100, 500, QuotaDecision{Result: ResultAllow, Remaining: 400, LimitScope: ScopeTenant, Reason: "ai_tokens: 500 + 100 within the limit of 1000"}},
		{"ai_tokens", "", 100, 950, QuotaDecision{Result: ResultDeny, Remaining: 50, LimitScope: ScopeTenant, Reason: "ai_tokens: 950 + 100 exceeds the hard limit of 1000"}},
		{"ai_tokens", "ai_assistant", 1, 0, QuotaDecision{Result: ResultDeny, Remaining: 1000, LimitScope: ScopeTenant, Reason: `feature "ai_assistant" is not in plan "free"`}},
		{"documents", "", 1, 10, QuotaDecision{Result: ResultAllow, Unlimited: true, Reason: `no limit on documents for plan "free"`}},
	}
	for _, c := range cases {
		got, err := e.Admit(context.Background(), QuotaInputFor(plan, "acme", c.meter, c.feature, c.amount, c.used))
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s %q %d+%d: got %+v, want %+v", c.meter, c.feature, c.used, c.amount, got, c.want)
		}
	}
}

func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	writePolicies(t, dir)
	e, err := New(context.Background(), Options{Path: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.CollectAndLint(e); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
	want := `
# HELP usage_exporter_policy_last_reload_successful Whether the last attempt to load the policies succeeded (1) or left the previous set in force (0).
# TYPE usage_exporter_policy_last_reload_successful gauge
usage_exporter_policy_last_reload_successful %d
# HELP usage_exporter_policy_reload_failures_total Policy loads that failed.
# TYPE usage_exporter_policy_reload_failures_total counter
usage_exporter_policy_reload_failures_total %d
`
	names := []string{"usage_exporter_policy_last_reload_successful", "usage_exporter_policy_reload_failures_total"}
	if err := testutil.CollectAndCompare(e, strings.NewReader(fmt.Sprintf(want, 1, 0)), names...); err != nil {
		t.Error(err)
	}
	writeFile(t, filepath.Join(dir, "authz.rego"), "package usagemeter.authz\n\ndecision := {")
	if err := e.Reload(context.Background()); err == nil {
		t.Fatal("broken policy loaded")
	}
	if err := testutil.CollectAndCompare(e, strings.NewReader(fmt.Sprintf(want, 0, 1)), names...); err != nil {
		t.Error(err)
	}
}

// TestMemoDoesNotOutliveAReload: the same input is decided again by new policies.
func TestMemoDoesNotOutliveAReload(t *testing.T) {
	dir := t.TempDir()
	policy := func(allow bool) {
		body := fmt.Sprintf("package usagemeter.authz\n\ndecision := {\"allow\": %v, \"reason\": \"test\"}\n", allow)
		if err := os.WriteFile(filepath.Join(dir, "authz.rego"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		quota := "package usagemeter.quota\n\ndecision := {\"result\": \"allow\", \"remaining\": 0, \"unlimited\": true, \"reason\": \"test\"}\n"
		if err := os.WriteFile(filepath.Join(dir, "quota.rego"), []byte(quota), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	policy(true)
	e, err := New(t.Context(), Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Principal: Principal{Subject: "s", Kind: "token", Roles: []string{"sre"}}, Action: "usage.read", Tenant: "acme"}
	for range 2 { // the second answer comes from the memo
		if d, err := e.Decide(t.Context(), in); err != nil || !d.Allow {
			t.Fatalf("before reload: %+v %v", d, err)
		}
	}
	policy(false)
	if err := e.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d, err := e.Decide(t.Context(), in); err != nil || d.Allow {
		t.Fatalf("after reload the memo answered: %+v %v", d, err)
	}
}

// TestMemoKeyIsUnambiguous: the decision memo's key must tell apart inputs whose fields hold
// the separator bytes a join would use. A user id, a method or a JWT subject is caller-controlled.
func TestMemoKeyIsUnambiguous(t *testing.T) {
	bob := Principal{Subject: "bob", Kind: "jwt", Roles: []string{"tenant_user"}, Tenants: []string{"acme"}}
	pairs := [][2]Input{
		// a field boundary moved: user "bob" + method "GET\x1e" vs user "bob\x1eGET" + method ""
		{{Principal: bob, Action: "usage.read", Tenant: "acme", User: "bob", Method: "GET\x1e", Path: "/v1/usage"},
			{Principal: bob, Action: "usage.read", Tenant: "acme", User: "bob\x1eGET", Method: "", Path: "/v1/usage"}},
		// one role holding the list separator vs two roles
		{{Principal: Principal{Subject: "s", Roles: []string{"sre\x1fplatform_admin"}}, Action: "usage.read"},
			{Principal: Principal{Subject: "s", Roles: []string{"sre", "platform_admin"}}, Action: "usage.read"}},
		// a role moved into the tenant list
		{{Principal: Principal{Subject: "s", Roles: []string{"sre"}, Tenants: []string{"acme"}}},
			{Principal: Principal{Subject: "s", Roles: []string{"sre\x1eacme"}}}},
		// an empty list vs a list of one empty string
		{{Principal: Principal{Subject: "s", Roles: []string{}}}, {Principal: Principal{Subject: "s", Roles: []string{""}}}},
	}
	for i, p := range pairs {
		if p[0].memoKey() == p[1].memoKey() {
			t.Errorf("pair %d: %#v and %#v share the memo key %q", i, p[0], p[1], p[0].memoKey())
		}
	}

	// And through Decide: bob's allowed read of his own usage must not answer a request about
	// another user whose fields join to the same text.
	e := newEmbedded(t)
	ctx := context.Background()
	if d, err := e.Decide(ctx, pairs[0][0]); err != nil || !d.Allow {
		t.Fatalf("bob reading his own usage: %+v, %v", d, err)
	}
	if d, err := e.Decide(ctx, pairs[0][1]); err != nil || d.Allow {
		t.Fatalf("bob reading user %q: %+v, %v; want a denial", pairs[0][1].User, d, err)
	}
}

// TestAdmitScopes: user and feature limits go through the policy with their own usage, and the
// tightest decides (policies/quota_test.rego checks the policy itself in detail).
func TestAdmitScopes(t *testing.T) {
	e := newEmbedded(t)
	plan := config.Plan{Name: "pro", Enforcement: "hard", WarningRatio: 0.8, Limits: map[string]int64{"ai_tokens": 1000}}
	for _, c := range []struct {
		name   string
		scopes []QuotaScope
		want   QuotaDecision
	}{
		{"user at", []QuotaScope{{Scope: ScopeUser, Name: "alice", Used: 40, Limit: 50}},
			QuotaDecision{Result: ResultWarn, Remaining: 0, LimitScope: ScopeUser, Reason: `ai_tokens of user "alice": 40 + 10 reaches 100% of the limit of 50`}},
		{"user above, feature below", []QuotaScope{{Scope: ScopeUser, Name: "alice", Used: 41, Limit: 50}, {Scope: ScopeFeature, Name: "chat", Used: 0, Limit: 20}},
			QuotaDecision{Result: ResultDeny, Remaining: 9, LimitScope: ScopeUser, Reason: `ai_tokens of user "alice": 41 + 10 exceeds the hard limit of 50`}},
		{"feature tighter", []QuotaScope{{Scope: ScopeUser, Name: "alice", Used: 0, Limit: 50}, {Scope: ScopeFeature, Name: "chat", Used: 0, Limit: 11}},
			QuotaDecision{Result: ResultWarn, Remaining: 1, LimitScope: ScopeFeature, Reason: `ai_tokens of feature "chat": 0 + 10 reaches 90% of the limit of 11`}},
		{"tenant tighter", []QuotaScope{{Scope: ScopeUser, Name: "alice", Used: 0, Limit: 5000}},
			QuotaDecision{Result: ResultAllow, Remaining: 490, LimitScope: ScopeTenant, Reason: "ai_tokens: 500 + 10 within the limit of 1000"}},
	} {
		in := QuotaInputFor(plan, "acme", "ai_tokens", "chat", 10, 500)
		in.User, in.Scopes = "alice", c.scopes
		got, err := e.Admit(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
}

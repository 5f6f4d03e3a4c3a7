package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usagemeter/usagemeter/exporter/meter"
)

func TestDefaults(t *testing.T) {
	for _, src := range []string{"", "# nothing but a comment\n"} {
		c, err := Parse([]byte(src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if len(c.Meters) == 0 || c.Ingest.MaxBodyBytes != 16<<20 || c.Ingest.MaxBatchEvents != 10000 || c.Metrics.SeriesLimit != 10000 {
			t.Errorf("%q: defaults not applied: %+v", src, c)
		}
		if p := c.PlanOf("anyone"); p.Name != c.DefaultPlan {
			t.Errorf("unlisted tenant on %q", p.Name)
		}
	}
}

func TestPlansTenantsOverrides(t *testing.T) {
	c, err := Parse([]byte(`
plans:
  - {name: free, limits: {ai_tokens: 100, documents: 10}}
  - {name: pro, enforcement: soft, warning_ratio: 0.9, limits: {ai_tokens: 1000}}
default_plan: free
tenants:
  - {id: acme, plan: pro, limits: {documents: 5}, warning_ratio: 0.5}
  - {id: beta}
`))
	if err != nil {
		t.Fatal(err)
	}
	free, _ := c.Plan("free")
	if free.Enforcement != Hard || free.WarningRatio != 0.8 {
		t.Errorf("plan defaults: %+v", free)
	}
	acme := c.PlanOf("acme")
	if acme.Name != "pro" || acme.Limits["ai_tokens"] != 1000 || acme.Limits["documents"] != 5 || acme.WarningRatio != 0.5 {
		t.Errorf("acme: %+v", acme)
	}
	if pro, _ := c.Plan("pro"); pro.Limits["documents"] != 0 || pro.WarningRatio != 0.9 {
		t.Errorf("an override leaked into the plan: %+v", pro)
	}
	if b := c.PlanOf("beta"); b.Name != "free" {
		t.Errorf("beta without a plan is on %q, want the default", b.Name)
	}
}

func TestErrorsNameFileLineField(t *testing.T) {
	cases := []struct{ src, want string }{
		{"plans:\n  - name: free\n    limits:\n      tokens: 5\n", `:4: plans[0].limits.tokens: "tokens" is not a meter`},
		{"plans:\n  - name: free\n    enforcement: maybe\n", `:3: plans[0].enforcement: "maybe" must be hard or soft`},
		{"plans:\n  - name: free\n    warning_ratio: 1.5\n", `:3: plans[0].warning_ratio: must be in (0, 1]`},
		{"plans:\n  - {name: free}\ntenants:\n  - id: acme\n    plan: gold\n", `:5: tenants[0].plan: plan "gold" is not in the catalogue`},
		{"tenants:\n  - id: 'bad id'\n", `:2: tenants[0].id: "bad id" is not a valid tenant id`},
		{"ingest:\n  max_body_bytes: 0\n", `:2: ingest.max_body_bytes: must be positive`},
		{"ingest:\n  max_body: 1\n", `:2: field max_body not found`},
		{"metrics:\n  per_user_labels: true\n", `metrics.user_label_key_file: per-user labels need a key file`},
		{"meters:\n  - name: x\n    kind: flow\n    aggregation: avg\n    events: [{type: ai.tokens}]\n", `:4: meters[0].aggregation: "avg" must be one of`},
		{"meters:\n  - name: x\n    kind: flow\n    aggregation: sum\n    events:\n      - {type: ai.tokens}\n", `:6: meters[0].events[0].value: sum meters need a value field`},
		{"meters:\n  - name: x\n    kind: stock\n    aggregation: sum\n    events: [{type: ai.tokens, value: input_tokens}]\n    metric: {name: x_total, type: counter}\n", `meters[0].metric.type: a stock sum meter cannot be a counter`},
		{"meters:\n  - name: x\n    kind: flow\n    aggregation: count\n    events: [{type: thing}]\n", `meters[0].events[0].type: event type "thing" is neither a contract type nor namespaced`},
		{"meters:\n  - name: x\n    kind: flow\n    aggregation: count\n    dimensions: [d]\n    events: [{type: ai.tokens, set: {d: \"a\\u0000b\"}}]\n", `meters[0].events[0].set.d: "a\x00b" must not contain control characters`},
		{"meters:\n  - name: x\n    kind: flow\n    aggregation: count\n    dimensions: [" + strings.Repeat("d,", meter.MaxDimensions) + "e]\n    events: [{type: ai.tokens}]\n", `meters[0].dimensions: 33 dimensions; at most 32`},
		{"plans: [", `:1: did not find expected node content`},
	}
	dir := t.TempDir()
	for i, c := range cases {
		f := filepath.Join(dir, "c.yml")
		os.WriteFile(f, []byte(c.src), 0o644)
		_, err := Load(f)
		if err == nil {
			t.Errorf("case %d: accepted:\n%s", i, c.src)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), f) {
			t.Errorf("case %d: %q does not start with the file and contain %q", i, err, c.want)
		}
	}
}

func TestCustomMeters(t *testing.T) {
	c, err := Parse([]byte(`
meters:
  - name: api_calls
    kind: flow
    aggregation: sum
    events: [{type: com.example.api_call, value: calls}]
    dimensions: [endpoint]
    metric: {name: usage_api_calls_total, type: counter, labels: [endpoint]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Meters) != 1 || !c.CustomEventTypes()["com.example.api_call"] {
		t.Errorf("custom meter not loaded: %+v", c.Meters)
	}
}

func TestUserAndFeatureLimits(t *testing.T) {
	c, err := Parse([]byte(`
plans:
  - name: pro
    limits: {ai_tokens: 1000}
    user_limits: {ai_tokens: 100, ai_requests: 50}
    feature_limits:
      chat: {ai_tokens: 500}
      search: {ai_tokens: 300}
tenants:
  - id: acme
    plan: pro
    user_limits: {ai_tokens: 200}
    users:
      alice: {ai_tokens: 400}
    feature_limits:
      chat: {ai_tokens: 600}
  - {id: beta, plan: pro}
`))
	if err != nil {
		t.Fatal(err)
	}
	acme := c.PlanOf("acme")
	for _, tc := range []struct {
		user        string
		limit       int64
		named, ok   bool
		meter       string
		description string
	}{
		{"alice", 400, true, true, "ai_tokens", "named user"},
		{"bob", 200, false, true, "ai_tokens", "tenant default replaces the plan's"},
		{"alice", 50, false, true, "ai_requests", "a named user without this meter gets the default"},
		{"bob", 0, false, false, "documents", "no user limit"},
	} {
		limit, named, ok := acme.UserLimit(tc.meter, tc.user)
		if limit != tc.limit || named != tc.named || ok != tc.ok {
			t.Errorf("%s: UserLimit(%s, %s) = %d %v %v, want %d %v %v", tc.description, tc.meter, tc.user, limit, named, ok, tc.limit, tc.named, tc.ok)
		}
	}
	if l, ok := acme.FeatureLimit("ai_tokens", "chat"); !ok || l != 600 {
		t.Errorf("acme chat = %d %v, want the tenant's 600", l, ok)
	}
	if l, ok := acme.FeatureLimit("ai_tokens", "search"); !ok || l != 300 {
		t.Errorf("acme search = %d %v, want the plan's 300", l, ok)
	}
	if _, ok := acme.FeatureLimit("ai_tokens", "translate"); ok {
		t.Error("a feature without a limit has one")
	}
	beta := c.PlanOf("beta")
	if l, named, ok := beta.UserLimit("ai_tokens", "alice"); l != 100 || named || !ok {
		t.Errorf("beta alice = %d %v %v, want the plan's default 100 (acme's users are acme's)", l, named, ok)
	}
	if l, _ := beta.FeatureLimit("ai_tokens", "chat"); l != 500 {
		t.Errorf("beta chat = %d, want 500", l)
	}
	// The tenant's overrides did not change the catalogue.
	if p, _ := c.Plan("pro"); p.UserLimits["ai_tokens"] != 100 || p.FeatureLimits["chat"]["ai_tokens"] != 500 {
		t.Errorf("the catalogue changed: %+v", p)
	}
}

func TestUserAndFeatureLimitErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"plans:\n  - {name: p, user_limits: {storage_bytes: 1}}\n", `plans[0].user_limits.storage_bytes: meter "storage_bytes" does not keep the user dimension`},
		{"plans:\n  - {name: p, feature_limits: {chat: {documents: 1}}}\n", `plans[0].feature_limits.chat.documents: meter "documents" does not keep the feature dimension`},
		{"plans:\n  - {name: p, user_limits: {ai_tokens: -1}}\n", "plans[0].user_limits.ai_tokens: a limit cannot be negative"},
		{"plans:\n  - {name: p, feature_limits: {chat: {nope: 1}}}\n", `plans[0].feature_limits.chat.nope: "nope" is not a meter`},
		{"plans:\n  - {name: p}\ntenants:\n  - {id: a, users: {\"bad user\": {ai_tokens: 1}}}\n", `tenants[0].users.bad user: "bad user" is not a valid user id`},
		{"plans:\n  - {name: p}\ntenants:\n  - {id: a, users: {bob: {ai_tokens: -5}}}\n", "tenants[0].users.bob.ai_tokens: a limit cannot be negative"},
		{"plans:\n  - {name: p}\ntenants:\n  - {id: a, feature_limits: {\"\": {ai_tokens: 5}}}\n", "tenants[0].feature_limits: a feature name cannot be empty"},
		{"plans:\n  - {name: p, users: {bob: {ai_tokens: 5}}}\n", "field users not found"},
	} {
		_, err := Parse([]byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.src, err, tc.want)
		}
	}
}

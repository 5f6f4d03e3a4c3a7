package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"
)

// scopedCatalogue limits users (a default of 100 for every user, 50 for alice, 5000 for erin)
// and features (chat 80 from the plan, search 171 for acme) next to the tenant's 1000.
const scopedCatalogue = `
plans:
  - name: pro
    enforcement: hard
    warning_ratio: 0.8
    limits: {ai_tokens: 1000}
    user_limits: {ai_tokens: 100}
    feature_limits:
      chat: {ai_tokens: 80}
default_plan: pro
tenants:
  - id: acme
    plan: pro
    users:
      alice: {ai_tokens: 50}
      erin: {ai_tokens: 5000}
    feature_limits:
      search: {ai_tokens: 171}
`

func openScoped(t *testing.T) *httptest.Server {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(file, []byte(scopedCatalogue), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := []string{"127.0.0.1:0"}
	srv, err := Build(context.Background(), Options{Web: &web.FlagConfig{WebListenAddresses: &addrs}, StoragePath: filepath.Join(dir, "data"),
		ConfigFile: file, Log: &promslog.Config{}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ts := httptest.NewServer(srv.Handler)
	t.Cleanup(ts.Close)
	return ts
}

func tokensEvent(id, user, feature string, tokens int) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"s","type":"ai.tokens","time":%q,"data":{"tenant":"acme","user":%q,"feature":%q,"model":"m","input_tokens":%d,"output_tokens":0}}`+"\n",
		id, time.Now().UTC().Format(time.RFC3339), user, feature, tokens)
}

// TestUserAndFeatureQuotas: with alice at 40 of 50, bob at 99 of 100 (29 chat, 70 search),
// carol at 101 of 100, chat at 69 of 80, search at 171 of 171 and the tenant at 240 of 1000,
// every check at, just below and just above each limit answers the exact result, remaining
// and limit scope, and the listing shows the exact usage of each user and feature.
func TestUserAndFeatureQuotas(t *testing.T) {
	ts := openScoped(t)
	body := tokensEvent("1", "alice", "chat", 40) + tokensEvent("2", "bob", "chat", 29) +
		tokensEvent("3", "bob", "search", 70) + tokensEvent("4", "carol", "search", 101)
	code, resp := do(t, ts, "POST", "/v1/events", "", "application/x-ndjson", body)
	if code != 202 {
		t.Fatalf("ingest: %d %s", code, resp)
	}

	type answer struct {
		Result     string `json:"result"`
		Remaining  int64  `json:"remaining"`
		LimitScope string `json:"limit_scope"`
		Used       int64  `json:"used"`
		Limit      int64  `json:"limit"`
		Reason     string `json:"reason"`
	}
	for _, c := range []struct {
		name, user, feature string
		amount              int64
		want                answer
	}{
		// alice: named limit 50, 40 used.
		{"alice one below", "alice", "", 9, answer{"warn", 1, "user", 40, 50, `ai_tokens of user "alice": 40 + 9 reaches 98% of the limit of 50`}},
		{"alice at", "alice", "", 10, answer{"warn", 0, "user", 40, 50, `ai_tokens of user "alice": 40 + 10 reaches 100% of the limit of 50`}},
		{"alice one above", "alice", "", 11, answer{"deny", 10, "user", 40, 50, `ai_tokens of user "alice": 40 + 11 exceeds the hard limit of 50`}},
		// With chat too (69 of 80): alice's limit stays the tighter.
		{"alice chat at", "alice", "chat", 10, answer{"warn", 0, "user", 40, 50, `ai_tokens of user "alice": 40 + 10 reaches 100% of the limit of 50`}},
		// bob: the default limit of every user, 100; 99 used.
		{"bob one below", "bob", "", 0, answer{"warn", 1, "user", 99, 100, `ai_tokens of user "bob": 99 + 0 reaches 99% of the limit of 100`}},
		{"bob at", "bob", "", 1, answer{"warn", 0, "user", 99, 100, `ai_tokens of user "bob": 99 + 1 reaches 100% of the limit of 100`}},
		{"bob one above", "bob", "", 2, answer{"deny", 1, "user", 99, 100, `ai_tokens of user "bob": 99 + 2 exceeds the hard limit of 100`}},
		// carol: already past the default.
		{"carol past", "carol", "", 0, answer{"deny", 0, "user", 101, 100, `ai_tokens of user "carol": 101 + 0 exceeds the hard limit of 100`}},
		// chat: 69 of the plan's 80, whoever uses it.
		{"chat one below", "", "chat", 10, answer{"warn", 1, "feature", 69, 80, `ai_tokens of feature "chat": 69 + 10 reaches 98% of the limit of 80`}},
		{"chat at", "", "chat", 11, answer{"warn", 0, "feature", 69, 80, `ai_tokens of feature "chat": 69 + 11 reaches 100% of the limit of 80`}},
		{"chat one above", "", "chat", 12, answer{"deny", 11, "feature", 69, 80, `ai_tokens of feature "chat": 69 + 12 exceeds the hard limit of 80`}},
		// A new user of chat: the feature is tighter than the user's 100.
		{"dave chat above", "dave", "chat", 12, answer{"deny", 11, "feature", 69, 80, `ai_tokens of feature "chat": 69 + 12 exceeds the hard limit of 80`}},
		// search: exactly at acme's 171 already.
		{"search at", "", "search", 0, answer{"warn", 0, "feature", 171, 171, `ai_tokens of feature "search": 171 + 0 reaches 100% of the limit of 171`}},
		{"search above", "", "search", 1, answer{"deny", 0, "feature", 171, 171, `ai_tokens of feature "search": 171 + 1 exceeds the hard limit of 171`}},
		// erin's own 5000 is looser than the tenant's 1000 (240 used): the tenant decides.
		{"tenant one below", "erin", "", 759, answer{"warn", 1, "tenant", 240, 1000, "ai_tokens: 240 + 759 reaches 99% of the limit of 1000"}},
		{"tenant at", "erin", "", 760, answer{"warn", 0, "tenant", 240, 1000, "ai_tokens: 240 + 760 reaches 100% of the limit of 1000"}},
		{"tenant one above", "erin", "", 761, answer{"deny", 760, "tenant", 240, 1000, "ai_tokens: 240 + 761 exceeds the hard limit of 1000"}},
		// A feature without a limit of its own: the tenant's alone.
		{"feature without a limit", "", "translate", 1, answer{"allow", 759, "tenant", 240, 1000, "ai_tokens: 240 + 1 within the limit of 1000"}},
	} {
		req := fmt.Sprintf(`{"tenant":"acme","meter":"ai_tokens","amount":%d,"user":%q,"feature":%q}`, c.amount, c.user, c.feature)
		code, _, resp := fetch(t, "POST", ts.URL+"/v1/quota/check", req)
		var got answer
		if err := json.Unmarshal([]byte(resp), &got); code != 200 || err != nil {
			t.Fatalf("%s: %d %s", c.name, code, resp)
		}
		if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}

	// A bad user id is the caller's error.
	if code, _, resp := fetch(t, "POST", ts.URL+"/v1/quota/check", `{"tenant":"acme","meter":"ai_tokens","amount":1,"user":"no spaces"}`); code != 400 || !strings.Contains(resp, "user") {
		t.Errorf("bad user: %d %s", code, resp)
	}

	code, _, resp = fetch(t, "GET", ts.URL+"/v1/tenants/acme/quotas?users=true", "")
	if code != 200 {
		t.Fatalf("quotas: %d %s", code, resp)
	}
	type status struct {
		Scope, User, Feature, Meter, State string
		Used, Limit                        int64
	}
	var list struct {
		Quotas        []status `json:"quotas"`
		UserQuotas    []status `json:"user_quotas"`
		FeatureQuotas []status `json:"feature_quotas"`
	}
	if err := json.Unmarshal([]byte(resp), &list); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, group := range [][]status{list.Quotas, list.UserQuotas, list.FeatureQuotas} {
		for _, q := range group {
			got = append(got, fmt.Sprintf("%s %s%s %s %d/%d %s", q.Scope, q.User, q.Feature, q.Meter, q.Used, q.Limit, q.State))
		}
	}
	want := []string{
		"tenant  ai_tokens 240/1000 ok",
		"user alice ai_tokens 40/50 warning",
		"user bob ai_tokens 99/100 warning",
		"user carol ai_tokens 101/100 exceeded",
		"user erin ai_tokens 0/5000 ok",
		"feature chat ai_tokens 69/80 warning",
		"feature search ai_tokens 171/171 warning",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("quotas:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The usage of users and features read for the checks above is kept while the tenant's
	// month total stands still; new usage shows in the very next check. alice uses 5 more for
	// chat (45 of 50, chat 74 of 80); an event of no tokens changes nothing.
	if code, resp := do(t, ts, "POST", "/v1/events", "", "application/x-ndjson", tokensEvent("5", "alice", "chat", 5)+tokensEvent("6", "bob", "chat", 0)); code != 202 {
		t.Fatalf("ingest: %d %s", code, resp)
	}
	for _, c := range []struct {
		user, feature string
		amount        int64
		want          answer
	}{
		{"alice", "", 5, answer{"warn", 0, "user", 45, 50, `ai_tokens of user "alice": 45 + 5 reaches 100% of the limit of 50`}},
		{"alice", "", 6, answer{"deny", 5, "user", 45, 50, `ai_tokens of user "alice": 45 + 6 exceeds the hard limit of 50`}},
		{"", "chat", 7, answer{"deny", 6, "feature", 74, 80, `ai_tokens of feature "chat": 74 + 7 exceeds the hard limit of 80`}},
		{"bob", "", 1, answer{"warn", 0, "user", 99, 100, `ai_tokens of user "bob": 99 + 1 reaches 100% of the limit of 100`}},
	} {
		req := fmt.Sprintf(`{"tenant":"acme","meter":"ai_tokens","amount":%d,"user":%q,"feature":%q}`, c.amount, c.user, c.feature)
		code, _, resp := fetch(t, "POST", ts.URL+"/v1/quota/check", req)
		var got answer
		if err := json.Unmarshal([]byte(resp), &got); code != 200 || err != nil {
			t.Fatalf("%s after more usage: %d %s", req, code, resp)
		}
		if got != c.want {
			t.Errorf("%s after more usage:\n got %+v\nwant %+v", req, got, c.want)
		}
	}
}

// TestUserQuotasArePerUserDetail: per-user quotas are listed only when asked for, and only to a
// principal allowed per-user detail; an operator (sre) reads the tenant's and features' quotas.
func TestUserQuotasArePerUserDetail(t *testing.T) {
	_, ts, c := secured(t)
	if code, body := do(t, ts, "POST", "/v1/events", c.ingestAcme, "application/x-ndjson", event("1", "acme", "alice", 1)); code != 202 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	if code, body := do(t, ts, "GET", "/v1/tenants/acme/quotas?users=true", c.acmeAdmin, "", ""); code != 200 || !strings.Contains(body, `"user_quotas":[]`) {
		t.Errorf("saas_admin with users=true: %d %s", code, body)
	}
	if code, body := do(t, ts, "GET", "/v1/tenants/acme/quotas?users=true", c.sre, "", ""); code != 403 || !strings.Contains(body, "usage.read_users") {
		t.Errorf("sre with users=true: %d %s", code, body)
	}
	if code, body := do(t, ts, "GET", "/v1/tenants/acme/quotas", c.sre, "", ""); code != 200 || strings.Contains(body, "user_quotas") || !strings.Contains(body, `"feature_quotas":[]`) {
		t.Errorf("sre without users: %d %s", code, body)
	}
	if code, _ := do(t, ts, "GET", "/v1/tenants/acme/quotas?users=yes", c.acmeAdmin, "", ""); code != 400 {
		t.Errorf("users=yes: %d, want 400", code)
	}
}

package localstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// DemoRuleName names the notification rule the local stack creates, so that a restart finds
// it rather than adding another.
const DemoRuleName = "demo: 80 % of the AI token quota"

// EnsureDemoNotification makes sure a tenant has the demo rule: an e-mail to `to` when its AI
// tokens reach 80 % of the quota (on the stack, the e-mail lands in mailpit). It reports
// whether it created the rule.
func EnsureDemoNotification(ctx context.Context, exporter, tenant, to string) (bool, error) {
	rules := exporter + "/v1/notifications/rules?tenant=" + url.QueryEscape(tenant)
	var list struct {
		Rules []struct {
			Name string `json:"name"`
		} `json:"rules"`
	}
	if err := call(ctx, http.MethodGet, rules, nil, http.StatusOK, &list); err != nil {
		return false, err
	}
	for _, r := range list.Rules {
		if r.Name == DemoRuleName {
			return false, nil
		}
	}
	body, _ := json.Marshal(map[string]any{
		"meter": "ai_tokens", "name": DemoRuleName,
		"condition": map[string]any{"kind": "quota_percent", "percent": 80},
		"channels":  []any{map[string]any{"type": "email", "to": []string{to}}},
	})
	if err := call(ctx, http.MethodPost, rules, body, http.StatusCreated, nil); err != nil {
		return false, err
	}
	return true, nil
}

func call(ctx context.Context, method, u string, body []byte, want int, into any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, bytes.TrimSpace(b))
	}
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			return fmt.Errorf("%s %s: %w", method, u, err)
		}
	}
	return nil
}
